"""The operator dashboard: equity, signals and orders over time, exposure, feed health, queues.

``charts`` draws SVG from numbers (pure), ``data`` reads aggregates from PostgreSQL and Redis,
``views`` glues them to the templates under ``dashboard/templates/dashboard/`` and serves
``/healthz``; ``health`` holds the system checks shared with ``manage.py healthcheck``.
"""
