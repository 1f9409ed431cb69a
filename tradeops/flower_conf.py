"""Flower options file (Procfile: ``--conf=tradeops/flower_conf.py``): Flower logs the same JSON
lines as every other process (tradeops/logging.py) instead of tornado's pretty format.

Tornado reads the option names of this file's namespace, so ``logging`` here is Flower's
``--logging`` option ("none": tornado adds no handler of its own), not the module."""

import os
from logging.config import dictConfig

from tradeops.logging import build_logging_config

dictConfig(build_logging_config(os.environ.get("LOG_LEVEL", "INFO").upper(), os.environ.get("LOG_FORMAT", "json")))

logging = "none"
