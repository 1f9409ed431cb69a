"""The client's address, for login throttling and the audit log.

Behind no proxy (``TRUSTED_PROXY_COUNT=0``, the default) it is ``REMOTE_ADDR``: a client-sent
``X-Forwarded-For`` is ignored, since anyone can write one. Behind N reverse proxies that each
append the address they saw to ``X-Forwarded-For`` (nginx ``$proxy_add_x_forwarded_for``, Heroku's
router, a load balancer), the client is the N-th entry from the right: entries further left were
written by the client itself and can be forged (the rule of werkzeug's ProxyFix ``x_for=N``).
django-ipware's ``proxy_count`` counts from the left in strict mode, which lets a forged entry move
every proxied client onto the proxy's address, so this one function replaces it.
"""

from __future__ import annotations

import ipaddress

from django.conf import settings


def client_ip(request) -> str | None:
    remote = request.META.get("REMOTE_ADDR")
    trusted = settings.TRUSTED_PROXY_COUNT
    if trusted <= 0:
        return remote
    hops = [h.strip() for h in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if h.strip()]
    if len(hops) < trusted:
        return remote  # not the chain we were told about: trust only the socket
    candidate = hops[-trusted]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return remote
