"""Authentication for Flower's monitoring endpoints (loaded by ``tradeops/flower_conf.py``).

Flower 2.2 serves ``/metrics`` (Prometheus) and ``/healthcheck`` without looking at the
credentials (its handlers never touch ``current_user``, which is where its basic auth runs). A
``prepare`` that reads ``current_user`` runs the same check as every other Flower page: a missing
or wrong ``Authorization`` header raises 401 inside Flower's own ``get_current_user``; with OAuth
(``--auth``) and no session cookie, 403.
"""

from __future__ import annotations


def require_auth_on_monitor_handlers() -> None:
    import tornado.web
    from flower.views import monitor

    def prepare(self):
        if not (self.application.options.basic_auth or self.application.options.auth):
            return  # Flower without any auth configured: nothing to enforce (the Procfile refuses that)
        if not self.current_user:
            raise tornado.web.HTTPError(403)

    for handler in (monitor.Metrics, monitor.Healthcheck):
        handler.prepare = prepare
