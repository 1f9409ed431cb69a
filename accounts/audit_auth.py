"""Logins in the audit log: every success, every failure and every lockout, with the client address.

Django sends ``user_logged_in`` / ``user_login_failed``; django-axes (the throttle, see settings)
sends ``user_locked_out``. The attempted username is recorded as given (truncated), the password
never: Django already strips credentials it considers sensitive from the signal, and only
``username`` is read here.
"""

from __future__ import annotations

import structlog
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.dispatch import receiver

log = structlog.get_logger(__name__)


def _client(request) -> dict:
    if request is None:
        return {}
    from axes.helpers import get_client_ip_address

    return {"ip": get_client_ip_address(request), "path": request.path[:200],
            "user_agent": request.META.get("HTTP_USER_AGENT", "")[:200]}


def _record(actor: str, action: str, request, **details) -> None:
    from .models import AuditLog

    AuditLog.record((actor or "?")[:150], action, **_client(request), **details)
    log.info("auth", action=action, actor=actor, **_client(request), **details)


@receiver(user_logged_in, dispatch_uid="audit_login")
def on_login(sender, request, user, **kwargs):
    from .models import AuditLog

    _record(user.get_username(), AuditLog.Action.LOGIN, request)


@receiver(user_login_failed, dispatch_uid="audit_login_failed")
def on_login_failed(sender, credentials, request=None, **kwargs):
    from .models import AuditLog

    _record(str(credentials.get("username", ""))[:150], AuditLog.Action.LOGIN_FAILED, request)


def _connect_lockout():
    from axes.signals import user_locked_out

    @receiver(user_locked_out, dispatch_uid="audit_lockout")
    def on_lockout(sender, request, username, ip_address, **kwargs):
        from .models import AuditLog

        _record(str(username or "")[:150], AuditLog.Action.LOCKOUT, request)


_connect_lockout()
