"""Structured logging: JSON lines on stdout for every logger (Django, Celery, ours).

Our code logs with ``structlog.get_logger(__name__).info("event_name", key=value)``; stdlib
loggers (Django, Celery) go through the same formatter so one stream carries everything.
A redaction processor drops the values of keys that look like secrets, so a careless
``log.info("login", password=...)`` never reaches the output.
"""

from __future__ import annotations

import logging
import re

import structlog

_SECRET_KEY_RE = re.compile(r"(pass(word)?|secret|token|authorization|cookie|api[_-]?key|co-auth)", re.I)
REDACTED = "[redacted]"


_BEARER_RE = re.compile(r"(Bearer\s+)[^\s'\",}]+", re.I)


def redact_secrets(_logger, _method, event_dict: dict) -> dict:
    for key in list(event_dict):
        if key != "event" and _SECRET_KEY_RE.search(key):
            event_dict[key] = REDACTED
        elif isinstance(event_dict[key], str) and "earer" in event_dict[key]:
            # a bearer token quoted inside a message or an error text (Trader API)
            event_dict[key] = _BEARER_RE.sub(r"\1" + REDACTED, event_dict[key])
    return event_dict


_SHARED_PROCESSORS = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    redact_secrets,
]


def build_logging_config(level: str, fmt: str) -> dict:
    renderer = (
        structlog.dev.ConsoleRenderer(colors=False)
        if fmt == "console"
        else structlog.processors.JSONRenderer(sort_keys=False)
    )
    structlog.configure(
        processors=[
            *_SHARED_PROCESSORS,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    logging.captureWarnings(True)  # warnings become log lines too, not free text on stderr
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "structured": {
                "()": structlog.stdlib.ProcessorFormatter,
                "processors": [
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info,
                    renderer,
                ],
                "foreign_pre_chain": _SHARED_PROCESSORS,
            }
        },
        "handlers": {"stdout": {"class": "logging.StreamHandler", "formatter": "structured"}},
        "root": {"handlers": ["stdout"], "level": level},
        "loggers": {
            "django.db.backends": {"level": "WARNING"},
            "celery": {"level": level},
            "urllib3": {"level": "WARNING"},
            "websocket": {"level": "WARNING"},
            "aiohttp.access": {"level": "WARNING"},
        },
    }


def bind_task_context(task, args, kwargs) -> None:
    """Celery ``task_prerun``: every line a task logs carries its name, id and — for work that
    belongs to a signal (dispatch, the per-account chunks) — ``signal_id``, so one signal's
    fan-out can be followed across the analysis and order workers."""
    structlog.contextvars.clear_contextvars()
    context = {"task": getattr(task, "name", None), "task_id": getattr(getattr(task, "request", None), "id", None)}
    signal_id = (kwargs or {}).get("signal_id")
    if signal_id is None and args:
        try:
            import inspect

            params = list(inspect.signature(task.run).parameters)
            if "signal_id" in params:
                signal_id = args[params.index("signal_id")]
        except (TypeError, ValueError, IndexError):
            signal_id = None
    if signal_id is not None:
        context["signal_id"] = signal_id
    structlog.contextvars.bind_contextvars(**context)


def clear_task_context(**_) -> None:
    structlog.contextvars.clear_contextvars()


def get_logger(name: str | None = None):
    return structlog.get_logger(name)


__all__ = ["build_logging_config", "get_logger", "redact_secrets", "REDACTED", "logging"]
