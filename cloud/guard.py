"""What a request may cost before its route runs: a token checked from the headers, a bounded body, a deadline.

``RequestGuard`` is a plain ASGI middleware in front of routing. For every
HTTP request it

1. answers 401 (no, an unknown or a revoked token, or a console session that
   has ended) or 403 (an edge's token on
   a person's route, a person's on the sync route, or a person's role below
   the one a route with a body asks for) from the headers alone (an edge's
   token may also read model assignments and download model packages:
   ``edge_may_read``),
   before a byte of the body is read, unless the route is public: ``/health``,
   the API docs as ``server.api_docs`` says, ``/metrics`` with
   ``server.metrics_public``, the console's sign-in, pages and assets
   (``cloud.console``: its pages send a person without a session to the
   sign-in, and hold no data);
   without a token, a console session cookie is checked the same way, and a
   change asked for with it needs the session's CSRF token
   (``cloud.auth.principal_of_session``);
2. answers 413 when the declared Content-Length is over the route's limit
   (``route_limit``), and stops with 413 as soon as a streamed body passes it;
3. answers 408 when the body has not arrived in full ``server.body_timeout``
   after the headers.

A refusal made while the route reads the body replaces whatever the route
answers, and the connection is closed (the rest of the body is never read).
A route can end the read itself (``BodyGuard.abort``): a newer sync batch of
the same edge does this to one that stalled. The principal found is left in
the scope, where ``cloud.auth.authenticate`` takes it. WebSocket connections
pass: the live feed checks its token when it accepts one.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from typing import Any

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cloud.auth import (
    NO_CREDENTIALS,
    PRINCIPAL_KEY,
    NotAllowed,
    NotAuthenticated,
    check_role,
    principal_of_session,
    required_role,
    session_cookie,
    token_from,
)
from cloud.body import BodyError, BodyTimeout, BodyTooLarge, check_declared, too_large
from cloud.config import CloudConfig
from cloud.console import LOGIN_LIMIT, console_public
from cloud.errors import error_response
from cloud.storage.base import StorageError
from shared.errors import TwinedgeError
from shared.modelpackage import MAX_PACKAGE

__all__ = ["BodyGuard", "RequestGuard", "body_guard", "edge_may_read", "public_paths", "route_limit"]

GUARD_KEY = "twincloud.body_guard"
SYNC_PREFIX = "/api/v1/sync/"
DOCS_PAGE = ("/docs", "/docs/")
DOCS_ASSETS = "/docs/assets/"
OPENAPI = "/openapi.json"
_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})
MODEL_UPLOAD = "/api/v1/models"
# Besides sync, what an edge's token may read: its model assignments and the packages they name.
_EDGE_READS = (re.compile(r"^/api/v1/edges/[^/]+/models$"),
               re.compile(r"^/api/v1/models/[^/]+/versions/[^/]+/package$"))


def route_limit(config: CloudConfig, method: str, path: str) -> int:
    """The largest body a route takes: the uploads theirs, other JSON routes ``server.max_json_bytes``, else none."""
    if method == "POST" and path == "/api/v1/sync/batches":
        return config.sync.max_body_bytes
    if method == "POST" and path == "/api/v1/physics/assemblies":
        return config.physics.max_upload_bytes
    if method == "POST" and path == MODEL_UPLOAD:
        return MAX_PACKAGE
    if method == "POST" and path == "/login":
        return LOGIN_LIMIT
    return config.server.max_json_bytes if method in _WITH_BODY else 0


def edge_may_read(method: str, path: str) -> bool:
    """Whether an edge's token may make this request outside sync (the route checks which edge, if it matters)."""
    return method in ("GET", "HEAD") and any(p.match(path) for p in _EDGE_READS)


def public_paths(config: CloudConfig, path: str) -> bool:
    """Whether ``path`` is served without a token."""
    if path == "/health":
        return True
    if path == "/metrics":
        return config.server.metrics_public
    docs = config.server.api_docs
    if path in DOCS_PAGE or path.startswith(DOCS_ASSETS):
        return docs in ("public", "token")  # the page and its assets: nothing of this API is in them
    if path == OPENAPI:
        return docs == "public"
    return config.console.enabled and console_public(path)


class BodyGuard:
    """One request's body: how much may arrive, until when, and a way for the route to stop the read."""

    def __init__(self, receive: Receive, limit: int, timeout: float, arrived: float) -> None:
        self._receive = receive
        self.limit = limit
        self._timeout = timeout
        self.arrived = arrived  # the event loop's clock when the request's head came in
        self._deadline = arrived + timeout
        self._timer: asyncio.Timeout | None = None
        self.received = 0
        self.complete = False
        self.refusal: TwinedgeError | None = None

    async def receive(self) -> Message:
        if self.refusal is not None:
            raise self.refusal
        if self.complete:  # the body is in: what follows is the wait for a disconnect, not bounded here
            return await self._receive()
        try:
            async with asyncio.timeout_at(self._deadline) as self._timer:
                message = await self._receive()
        except TimeoutError:
            if self.refusal is None:
                self.refusal = BodyTimeout(
                    f"the body did not arrive within {self._timeout:g} s (server.body_timeout); "
                    f"{self.received:,} bytes came", "body")
            raise self.refusal from None
        finally:
            self._timer = None
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.limit:
                self.refusal = BodyTooLarge(too_large(self.limit), "body")
                raise self.refusal
            self.complete = not message.get("more_body", False)
        return message

    def abort(self, refusal: TwinedgeError) -> bool:
        """End the read with ``refusal`` unless the body is in already; True when it was ended."""
        if self.complete or self.refusal is not None:
            return False
        self.refusal = refusal
        if self._timer is not None:  # the route waits for bytes now: wake it
            self._timer.reschedule(asyncio.get_running_loop().time())
        return True


def _route_role(scope: Scope) -> str | None:
    """The role the route of a request with a body asks for, so that a lesser one is refused before the body
    is read. None when no route asks for one or none is found: the route checks its role itself anyway."""
    return _role_in(scope["app"].router.routes, scope)


def _role_in(routes: Sequence[Any], scope: Scope) -> str | None:
    for route in routes:
        included = getattr(route, "original_router", None)  # FastAPI keeps included routers whole
        if included is not None:
            role = _role_in(included.routes, scope)
            if role is not None:
                return role
            continue
        if route.matches(scope)[0] is Match.FULL:
            return required_role(getattr(route, "dependant", None))
    return None


def body_guard(request: Request) -> BodyGuard | None:
    """The guard of this request's body (None when the app runs without RequestGuard)."""
    guard = request.scope.get(GUARD_KEY)
    return guard if isinstance(guard, BodyGuard) else None


def _declared_size(headers: Headers, limit: int) -> TwinedgeError | None:
    try:
        check_declared(headers.get("content-length"), limit)
    except BodyError as exc:
        return exc
    if limit == 0 and "content-length" not in headers and "transfer-encoding" in headers:
        return BodyTooLarge(too_large(0), "body")
    return None


class RequestGuard:
    """Checks the token and bounds the body of every HTTP request before routing (see the module doc)."""

    def __init__(self, app: ASGIApp, config: CloudConfig) -> None:
        self.app = app
        self.config = config

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        arrived = asyncio.get_running_loop().time()
        headers = Headers(scope=scope)
        limit = route_limit(self.config, scope["method"], scope["path"])
        refusal = await self._admit(scope, headers) or _declared_size(headers, limit)
        if refusal is not None:
            announced = headers.get("content-length", "0").strip() != "0" or "transfer-encoding" in headers
            await self._refuse(scope, receive, send, refusal, close=announced)
            return
        guard = BodyGuard(receive, limit, self.config.server.body_timeout, arrived)
        scope[GUARD_KEY] = guard
        started = False

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if guard.refusal is not None and not started:
                return  # the route's answer to a refused body: ours goes out instead
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, guard.receive, guarded_send)
        except Exception:
            if guard.refusal is None or started:
                raise
        if guard.refusal is not None and not started:
            await self._refuse(scope, receive, send, guard.refusal, close=True)

    async def _admit(self, scope: Scope, headers: Headers) -> TwinedgeError | None:
        """None when the request may go on; else why not (401, 403, or 503 when the database does not answer)."""
        path: str = scope["path"]
        if public_paths(self.config, path):
            return None
        token = token_from(headers)
        auth = scope["app"].state.ctx.auth
        try:
            if token is None and session_cookie(headers) is not None:
                principal = await principal_of_session(auth, headers, scope["method"])
            elif token is None:
                return NotAuthenticated(NO_CREDENTIALS)
            else:
                principal = await auth.principal(token)
        except (StorageError, NotAuthenticated, NotAllowed) as exc:
            return exc
        if principal is None:
            return NotAuthenticated("unknown or revoked token")
        if path.startswith(SYNC_PREFIX) and principal.kind != "edge":
            return NotAllowed("this endpoint takes an edge's token (twincloud edge add NAME)")
        if not path.startswith(SYNC_PREFIX) and principal.kind != "user" and \
                not edge_may_read(scope["method"], path):
            return NotAllowed("an edge token cannot be used here; this needs a person's token")
        if scope["method"] in _WITH_BODY and not path.startswith(SYNC_PREFIX):
            role = _route_role(scope)
            if role is not None:
                try:
                    check_role(principal, role)
                except NotAllowed as exc:
                    return exc
        scope[PRINCIPAL_KEY] = principal
        return None

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, refusal: TwinedgeError,
                      *, close: bool) -> None:
        response = error_response(refusal, self.config.sync.retry_after)
        if close:  # the rest of the body is not wanted: the connection cannot carry another request
            response.headers["Connection"] = "close"
        await response(scope, receive, send)
