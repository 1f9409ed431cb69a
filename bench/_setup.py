"""The set-up every end-to-end bench shares: point Django at a throw-away database and a Redis db
of the bench's own, create the database if missing, migrate.

Why one module: six benches carried the same twenty lines, and a change (a new required setting,
a new app's migrations) had to be made six times. Its name starts with ``_`` so ``make bench``
(``bench/[!_]*.py``) does not run it as a bench.
"""

from __future__ import annotations

import os


def setup_django(*, pg: str, db: str, redis_url: str, env: dict[str, str] | None = None,
                 own_celery_urls: bool = False) -> None:
    """``pg``: the PostgreSQL server URL; ``db``: the throw-away database; ``env``: settings this bench
    fixes (e.g. ``SIMULATION_MODE``); ``own_celery_urls``: drop CELERY_BROKER_URL /
    CELERY_RESULT_BACKEND from the environment so Celery follows ``redis_url``."""
    os.environ["DATABASE_URL"] = f"{pg}/{db}"
    os.environ["REDIS_URL"] = redis_url
    if own_celery_urls:
        os.environ.pop("CELERY_BROKER_URL", None)
        os.environ.pop("CELERY_RESULT_BACKEND", None)
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ.update(env or {})
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tradeops.settings")
    import psycopg

    with psycopg.connect(f"{pg}/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [db]).fetchone():
            conn.execute(f'CREATE DATABASE "{db}"')
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
