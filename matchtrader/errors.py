"""Typed broker errors callers can act on.

=====================  ===========================================================  ===========
error                  when                                                          retry?
=====================  ===========================================================  ===========
AuthenticationError    bad credentials, or still 401 after refresh + re-login        no
RateLimited            HTTP 429 (``retry_after`` seconds from ``Retry-After``)       after wait
BrokerUnavailable      request never reached the broker (connect timeout/refused),   yes
                       or a READ failed in any transport way (5xx, read timeout)
OutcomeUnknown         a WRITE was (possibly) delivered but its answer was lost:      never blind;
                       5xx, read timeout, connection reset after send                 reconcile
OrderRejected          HTTP 200 with ``status != OK`` (business reject)              no
MalformedResponse      the answer could not be understood                             no
InvalidRequest         HTTP 400/404/405: refused as malformed, not executed           no
=====================  ===========================================================  ===========
"""

from __future__ import annotations


class BrokerError(Exception):
    """Base of every error raised by the Match-Trader client."""


class AuthenticationError(BrokerError):
    pass


class TokenRevoked(AuthenticationError):
    """Trader API 401: the account's bearer token was revoked or expired. Never retried: the
    account halts with cause ``token`` until an operator enters a new token."""


class ConfigurationError(BrokerError):
    """The broker refuses us for good in a way only a person can fix (a persistent 403: a
    Cloudflare or User-Agent block). Not a transient outage."""


class ScopeForbidden(BrokerError):
    """Trader API 403: the token lacks the scope. On a write (``write``), the token is read-only:
    the account is monitor-only and never receives an order."""

    def __init__(self, message: str, write: bool = True):
        super().__init__(message)
        self.write = write


class RateLimited(BrokerError):
    def __init__(self, retry_after: float, message: str = "rate limited"):
        super().__init__(f"{message} (retry after {retry_after:.1f}s)")
        self.retry_after = retry_after


class BrokerUnavailable(BrokerError):
    """Retryable: the broker did not act on the request (or it was a read)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class OutcomeUnknown(BrokerError):
    """A write may or may not have executed. Reconcile by reading positions/orders; never resend."""

    def __init__(self, message: str, path: str = "", status: int | None = None):
        super().__init__(message)
        self.path = path
        self.status = status


class OrderRejected(BrokerError):
    def __init__(self, code: str | None, message: str, status: str = "REJECTED"):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


class MalformedResponse(BrokerError):
    pass


class InvalidRequest(BrokerError):
    """HTTP 400/404/405: the broker refused the request as malformed; it was not executed. Not retried."""

    def __init__(self, status: int, message: str):
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


class IdempotencyKeyInvalid(InvalidRequest):
    """Trader API 400 ``idempotency-key-invalid``: a defect on our side (keys are always UUIDs,
    one per intent): logged loudly, the order fails, never retried with another key."""


__all__ = [
    "BrokerError",
    "TokenRevoked",
    "ConfigurationError",
    "ScopeForbidden",
    "IdempotencyKeyInvalid",
    "AuthenticationError",
    "RateLimited",
    "BrokerUnavailable",
    "OutcomeUnknown",
    "OrderRejected",
    "MalformedResponse",
    "InvalidRequest",
]
