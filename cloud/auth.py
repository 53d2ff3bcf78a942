"""Bearer tokens: one per edge, one per person with a role (admin, operator, viewer).

Tokens are 256-bit random strings shown once when created; the database keeps
only their SHA-256 (a slow password hash adds nothing for random tokens of
this length, and every request checks one). A checked token is trusted for
``server.auth_cache_ttl`` seconds, so a revocation takes effect within that
time in every process. The FastAPI dependencies here answer 401 (no or an
unknown token) and 403 (a valid token without the right); ``cloud.guard``
checks the token from the headers before any body is read and leaves the
principal in the request's scope, where ``authenticate`` finds it.

A browser signed in to the console sends no token but a session cookie
(``cloud.sessions``): without an ``Authorization`` header the cookie is
checked instead, with the same roles. A request that changes something
(any method but GET, HEAD and OPTIONS) on a session must also carry the
session's CSRF token in ``X-CSRF-Token``, and, when it says where it comes
from (``Origin``), come from this service's own host; a WebSocket opened on a
session must come from there too.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from fastapi import Depends, Request, WebSocket
from starlette.datastructures import Headers
from starlette.requests import cookie_parser

from cloud.config import ConsoleConfig
from cloud.sessions import CSRF_HEADER, SESSION_COOKIE, SessionKeeper, same
from cloud.storage.base import Principal, Storage
from shared.errors import InputError

__all__ = [
    "PRINCIPAL_KEY",
    "ROLES",
    "Authenticator",
    "EdgeDep",
    "NotAllowed",
    "NotAuthenticated",
    "foreign_origin",
    "hash_token",
    "new_token",
    "principal_of_session",
    "require_edge",
    "require_role",
    "require_viewer_or_edge",
    "token_from",
]

log = logging.getLogger(__name__)
ROLES = ("viewer", "operator", "admin")
_RANK = {role: rank for rank, role in enumerate(ROLES, start=1)}
_PREFIX = {"edge": "twe_", "user": "twu_"}
PRINCIPAL_KEY = "twincloud.principal"  # where cloud.guard leaves the principal it checked


def new_token(kind: Literal["edge", "user"]) -> str:
    return _PREFIX[kind] + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Authenticator:
    """Looks tokens up in the store, with a short cache of positive and negative answers."""

    def __init__(self, storage: Storage, ttl: float, clock: Callable[[], float] = time.monotonic,
                 console: ConsoleConfig | None = None) -> None:
        self._storage = storage
        self._ttl = ttl
        self._clock = clock
        self._cache: dict[str, tuple[Principal | None, float]] = {}
        self.sessions = SessionKeeper(storage, console or ConsoleConfig(), ttl)

    async def principal(self, token: str) -> Principal | None:
        if not 8 <= len(token) <= 256:
            return None
        digest = hash_token(token)
        now = self._clock()
        hit = self._cache.get(digest)
        if hit is not None and hit[1] > now:
            return hit[0]
        found = await self._storage.principal(digest)
        if self._ttl > 0:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = (found, now + self._ttl)
        return found

    def forget(self) -> None:
        """Drop cached answers (after a token was created or revoked through this process)."""
        self._cache.clear()
        self.sessions.forget()


def token_from(headers: dict[str, str] | object, query_token: str | None = None) -> str | None:
    """The bearer token of an ``Authorization`` header, else a ``token`` query parameter (WebSocket)."""
    value = getattr(headers, "get", lambda _k: None)("authorization")
    if value:
        scheme, _, token = value.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
        return None
    return query_token or None


class NotAuthenticated(InputError):
    """No bearer token, or one that is unknown or revoked."""

    def __init__(self, message: str, path: str = "Authorization") -> None:
        super().__init__(message, path)


class NotAllowed(InputError):
    """A valid token that may not do this (a role too low, an edge token on a person's route, ...)."""

    def __init__(self, message: str, path: str = "Authorization") -> None:
        super().__init__(message, path)


_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})
NO_CREDENTIALS = "send 'Authorization: Bearer <token>'"


def session_cookie(headers: Headers) -> str | None:
    """The console session cookie's value, if the request has one."""
    cookie = headers.get("cookie")
    return cookie_parser(cookie).get(SESSION_COOKIE) or None if cookie else None


def foreign_origin(headers: Headers) -> str | None:
    """The ``Origin`` a request says it comes from, when that is not this service's own host."""
    origin = headers.get("origin")
    if origin is None:
        return None
    return None if urlsplit(origin).netloc == headers.get("host", "") else origin[:100]


async def principal_of_session(auth: Authenticator, headers: Headers, method: str | None) -> Principal:
    """The person a console session cookie stands for. ``method``: the HTTP method (None for a WebSocket,
    which must come from this host's own pages). 401 when the session has ended; 403 when a change comes
    without the session's CSRF token or from another site's page."""
    cookie = session_cookie(headers)
    record = await auth.sessions.find(cookie) if cookie else None
    if record is None:
        raise NotAuthenticated("your console session has ended (signed out, expired or its token revoked); "
                               "sign in again at /login", "cookie")
    if method is None or method not in _SAFE:
        foreign = foreign_origin(headers)
        if foreign is not None:
            raise NotAllowed(f"a request from another site's page ({foreign}) cannot use a console session",
                             "Origin")
    if method is not None and method not in _SAFE:
        sent = headers.get(CSRF_HEADER)
        if not sent or not same(sent, record.csrf):
            raise NotAllowed(f"a change made with a console session needs the session's {CSRF_HEADER} header "
                             "(the console's pages send it)", CSRF_HEADER)
    return record.principal


async def authenticate(conn: Request | WebSocket) -> Principal:
    """The caller's identity; 401 when the token is missing, unknown or revoked (see the module doc)."""
    checked = conn.scope.get(PRINCIPAL_KEY)
    if isinstance(checked, Principal):  # by cloud.guard, from the headers, before the body was read
        return checked
    query = conn.query_params.get("token") if isinstance(conn, WebSocket) else None
    token = token_from(conn.headers, query)
    if token is None:
        if session_cookie(conn.headers) is not None:
            method = None if isinstance(conn, WebSocket) else conn.method
            return await principal_of_session(conn.app.state.ctx.auth, conn.headers, method)
        raise NotAuthenticated(NO_CREDENTIALS)
    principal = await conn.app.state.ctx.auth.principal(token)
    if principal is None:
        raise NotAuthenticated("unknown or revoked token")
    return principal


def check_role(principal: Principal, role: str) -> None:
    if principal.kind != "user":
        raise NotAllowed(f"an edge token cannot be used here; this needs a person's token with role {role}")
    if _RANK.get(principal.role, 0) < _RANK[role]:
        raise NotAllowed(f"role {principal.role} may not do this; it needs {role} or above")


def require_role(role: str) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency: a person's token with ``role`` or a higher one."""
    if role not in _RANK:
        raise ValueError(f"unknown role {role!r}")

    async def dependency(request: Request) -> Principal:
        principal = await authenticate(request)
        check_role(principal, role)
        return principal

    dependency.__name__ = f"require_{role}"
    dependency.required_role = role  # type: ignore[attr-defined]  # read by cloud.guard before the body
    return dependency


def required_role(dependant: Any) -> str | None:
    """The role a FastAPI route's dependencies ask for (``require_role``), found without running them."""
    for dep in getattr(dependant, "dependencies", ()):
        role = getattr(dep.call, "required_role", None) or required_role(dep)
        if role is not None:
            return role
    return None


async def require_edge(request: Request) -> Principal:
    """A dependency: an edge's token."""
    principal = await authenticate(request)
    if principal.kind != "edge":
        raise NotAllowed("this endpoint takes an edge's token (twincloud edge add NAME)")
    return principal


async def require_viewer_or_edge(request: Request) -> Principal:
    """A dependency: a person's token with viewer or above, or any edge's token (the route decides what that
    edge may read; ``cloud.guard`` lets edge tokens through only to the routes it lists)."""
    principal = await authenticate(request)
    if principal.kind != "edge":
        check_role(principal, "viewer")
    return principal


EdgeDep = Annotated[Principal, Depends(require_edge)]
ViewerOrEdge = Annotated[Principal, Depends(require_viewer_or_edge)]
Viewer = Annotated[Principal, Depends(require_role("viewer"))]
Operator = Annotated[Principal, Depends(require_role("operator"))]
Admin = Annotated[Principal, Depends(require_role("admin"))]
