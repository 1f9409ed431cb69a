"""Flower's options file (Procfile: ``celery flower --conf=tradeops/flower_conf.py``); Flower 2.2
executes it at start-up.

* Logs: Flower logs the same JSON lines as every other process (tradeops/logging.py) instead of
  tornado's pretty format. Tornado reads the option names of this file's namespace, so
  ``logging`` here is Flower's ``--logging`` option ("none": tornado adds no handler of its own),
  not the module.
* Auth: Flower's ``/metrics`` and ``/healthcheck`` handlers do not ask for the basic auth that
  guards every other page (they never read ``current_user``): they would give queue names, task
  names and worker counts to anyone who reaches the port. ``require_auth_on_monitor_handlers``
  makes both authenticate first, the same way as the rest of Flower (basic auth from
  FLOWER_BASIC_AUTH, or Flower's OAuth when configured): no credentials, 401.
"""

import os
from logging.config import dictConfig

from tradeops.flower_auth import require_auth_on_monitor_handlers
from tradeops.logging import build_logging_config

dictConfig(build_logging_config(os.environ.get("LOG_LEVEL", "INFO").upper(), os.environ.get("LOG_FORMAT", "json")))
require_auth_on_monitor_handlers()

logging = "none"
