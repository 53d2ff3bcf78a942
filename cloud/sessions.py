"""Console sessions: a person's token exchanged for a session cookie, kept in the database.

Signing in (``cloud.console``) checks a person's token and opens a session:
the browser gets a random cookie value (HttpOnly, SameSite=Strict, Secure over
https) and the database keeps only its SHA-256, the hash of the token that
opened it, and a per-session anti-CSRF token. Every process and replica finds
the session there. A session ends

- when the person signs out (the row is deleted);
- ``console.session_idle`` after its last use, and ``console.session_max``
  after sign-in, whatever the use;
- when the token that opened it is rotated or revoked (the lookup joins the
  identities on that token).

Like a token, a session found is trusted for ``server.auth_cache_ttl`` seconds
in each process; signing out drops it from this process's memory at once.
A use is written back at most once a minute, so that reading pages does not
mean a database write per request.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable

from cloud.config import ConsoleConfig
from cloud.storage.base import Storage
from cloud.storage.sessions import SessionRecord

__all__ = ["CSRF_HEADER", "SESSION_COOKIE", "SessionKeeper", "same"]

SESSION_COOKIE = "twincloud_session"
CSRF_HEADER = "X-CSRF-Token"
TOUCH_EVERY_US = 60_000_000
_CACHE_MAX = 10_000


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


class SessionKeeper:
    """Opens, finds and ends sessions; a short per-process cache in front of the database."""

    def __init__(self, storage: Storage, config: ConsoleConfig, ttl: float,
                 clock: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._storage = storage
        self._config = config
        self._ttl = ttl
        self._clock = clock
        self._monotonic = monotonic
        self._cache: dict[str, tuple[SessionRecord | None, float]] = {}

    def _now_us(self) -> int:
        return int(self._clock() * 1_000_000)

    async def open(self, token_hash: str) -> tuple[str, str]:
        """A new session for the (checked) token with this hash: the cookie's value and the CSRF token."""
        cookie, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        now = self._now_us()
        # Sign-ins are rare: a good moment to drop the sessions nothing can use any more.
        await self._storage.purge_sessions(now - int(self._config.session_idle * 1e6),
                                           now - int(self._config.session_max * 1e6))
        await self._storage.create_session(_hash(cookie), token_hash, csrf, now)
        return cookie, csrf

    async def find(self, cookie: str) -> SessionRecord | None:
        """The live session of this cookie value, None when there is none (ended, expired, token revoked)."""
        if not 16 <= len(cookie) <= 128:
            return None
        key = _hash(cookie)
        mono = self._monotonic()
        hit = self._cache.get(key)
        now = self._now_us()
        if hit is not None and hit[1] > mono and (hit[0] is None or self._alive(hit[0], now)):
            return hit[0]
        found = await self._storage.session(key, now - int(self._config.session_idle * 1e6),
                                            now - int(self._config.session_max * 1e6))
        if found is not None and now - found.last_seen >= TOUCH_EVERY_US:
            await self._storage.touch_session(key, now, now - TOUCH_EVERY_US)
        if self._ttl > 0:
            if len(self._cache) > _CACHE_MAX:
                self._cache.clear()
            self._cache[key] = (found, mono + self._ttl)
        return found

    def _alive(self, record: SessionRecord, now: int) -> bool:
        """Whether a cached session is still within its absolute limit (the idle one is checked on lookup)."""
        return now - record.created_at < self._config.session_max * 1e6

    async def end(self, cookie: str) -> bool:
        """Sign out: the session is deleted, in the database and in this process's memory."""
        key = _hash(cookie)
        self._cache.pop(key, None)
        return await self._storage.end_session(key)

    def expires(self, record: SessionRecord) -> tuple[float, float]:
        """When the session ends if unused (idle) and at the latest (absolute), epoch seconds."""
        return (record.last_seen / 1e6 + self._config.session_idle, record.created_at / 1e6 + self._config.session_max)

    def forget(self) -> None:
        self._cache.clear()


def same(a: str, b: str) -> bool:
    """Constant-time comparison of two tokens."""
    return secrets.compare_digest(a.encode(), b.encode())
