"""Simulated login sessions: co-auth token, refresh token (``rt``) and per-account trading tokens.

A login creates one session holding a ``co-auth`` token, an ``rt`` refresh token and one
``tradingApiToken`` per trading account of the user. Refresh rotates ``co-auth`` (and ``rt``) and
extends the session's expiry; the trading tokens stay valid for the session's life (the live
refresh answers with an empty body, so clients can only learn new cookies, [doc §2.3](../../docs/match-trader-api.md)).
Pure and synchronous; time is passed in (seconds).
"""

from __future__ import annotations

import secrets
import threading
from collections import deque
from dataclasses import dataclass, field


@dataclass(slots=True)
class Session:
    email: str
    co_auth: str
    rt: str
    trading_tokens: dict[str, str]  # uuid -> token
    expires_at: float
    refreshes: deque = field(default_factory=deque)


class AuthError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class Sessions:
    def __init__(self):
        self._lock = threading.Lock()
        self.by_co_auth: dict[str, Session] = {}
        self.by_rt: dict[str, Session] = {}
        self.by_trading: dict[str, tuple[Session, str]] = {}  # token -> (session, uuid)

    def login(self, email: str, uuids: list[str], ttl: float, now: float) -> Session:
        with self._lock:
            s = Session(email=email, co_auth=_jwtish(), rt=secrets.token_urlsafe(24),
                        trading_tokens={u: secrets.token_urlsafe(24) for u in uuids}, expires_at=now + ttl)
            self.by_co_auth[s.co_auth] = s
            self.by_rt[s.rt] = s
            for u, tok in s.trading_tokens.items():
                self.by_trading[tok] = (s, u)
            return s

    def refresh(self, rt: str | None, co_auth: str | None, ttl: float, limit_per_hour: int, now: float) -> Session:
        with self._lock:
            s = self.by_rt.get(rt or "") or self.by_co_auth.get(co_auth or "")
            if s is None:
                raise AuthError(401, "Invalid refresh token")
            while s.refreshes and s.refreshes[0] <= now - 3600:
                s.refreshes.popleft()
            if limit_per_hour and len(s.refreshes) >= limit_per_hour:
                raise AuthError(429, "Refresh limit exceeded (4/hour)")
            s.refreshes.append(now)
            self.by_co_auth.pop(s.co_auth, None)
            self.by_rt.pop(s.rt, None)
            s.co_auth, s.rt = _jwtish(), secrets.token_urlsafe(24)
            s.expires_at = now + ttl
            self.by_co_auth[s.co_auth] = s
            self.by_rt[s.rt] = s
            return s

    def check(self, uuid: str, trading_token: str | None, co_auth: str | None, strict: bool, now: float) -> Session:
        """The session behind a /mtr-api/{uuid} request, or AuthError(401)."""
        found = self.by_trading.get(trading_token or "")
        if found is None or found[1] != uuid:
            raise AuthError(401, "Invalid trading api token")
        s = found[0]
        if s.expires_at <= now:
            raise AuthError(401, "Token expired")
        if strict and co_auth != s.co_auth:
            raise AuthError(401, "Invalid or missing co-auth cookie")
        return s

    def expire_all(self) -> int:
        """Control API helper: make every session expire now (tests of the refresh path)."""
        with self._lock:
            for s in self.by_co_auth.values():
                s.expires_at = 0.0
            return len(self.by_co_auth)


def _jwtish() -> str:
    """A JWT-looking opaque token (three base64url parts); nothing reads its claims."""
    return ".".join(secrets.token_urlsafe(n) for n in (12, 36, 24))
