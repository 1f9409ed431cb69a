"""gunicorn settings for the ``web`` process (Procfile: ``-c python:tradeops.gunicorn_conf``).

- Logs: the same JSON lines as every other process (tradeops/logging.py): gunicorn's own
  messages through the shared formatter, and one structured ``http_request`` line per request
  (method, path without the query string, status, bytes, duration_ms, remote address) instead of
  the Apache-style access line.
- Metrics: the master clears the previous run's multiprocess files before forking, and marks a
  worker's files dead when it exits (tradeops/metrics.py).
"""

from __future__ import annotations

import logging
import logging.config
import os

import structlog
from gunicorn import glogging

from tradeops import metrics_env

metrics_env.configure(["gunicorn"])

from tradeops.logging import build_logging_config  # noqa: E402

LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO").upper()
LOG_FORMAT = os.environ.get("LOG_FORMAT", "json")


class JsonLogger(glogging.Logger):
    """gunicorn's logger, writing through the project's structured formatter."""

    def setup(self, cfg):
        self.cfg = cfg
        self._access_log_enabled = bool(cfg.accesslog)
        logging.config.dictConfig(build_logging_config(LOG_LEVEL, LOG_FORMAT))
        for log in (self.error_log, self.access_log):
            for handler in list(log.handlers):
                log.removeHandler(handler)
            log.propagate = True
        self.error_log.setLevel(self.LOG_LEVELS.get(cfg.loglevel.lower(), logging.INFO))
        self.access_log.setLevel(logging.INFO)

    def access(self, resp, req, environ, request_time):
        if not self.access_log_enabled:
            return
        status = resp.status.split(None, 1)[0] if isinstance(resp.status, str) else resp.status
        try:
            status = int(status)
        except (TypeError, ValueError):
            pass
        structlog.get_logger("gunicorn.access").info(
            "http_request", method=environ.get("REQUEST_METHOD"), path=environ.get("PATH_INFO"), status=status,
            bytes=getattr(resp, "sent", None), duration_ms=round(request_time.total_seconds() * 1000, 2),
            remote_addr=environ.get("REMOTE_ADDR"), user_agent=environ.get("HTTP_USER_AGENT", "")[:200],
        )


logger_class = JsonLogger


def on_starting(server):
    removed = metrics_env.clear_stale()
    server.log.info("metrics_dir_cleared" if removed else "metrics_dir_ready")


def child_exit(server, worker):
    from tradeops.metrics import process_exited

    process_exited(worker.pid)
