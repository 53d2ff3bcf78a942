"""Signing in and out of the console: a person's token exchanged for a session cookie (``cloud.sessions``).

``POST /login`` takes the form of the sign-in page
(``application/x-www-form-urlencoded``: ``token``, ``next``) and answers 303
to the page asked for, with the cookie set; or JSON ``{"token": ...}``, which
gets the session's name, role and CSRF token. A refused token gets the page
again with a plain sentence (401), or a JSON error. Failed attempts are
counted per client address and process: past ``console.login_attempts`` in a
minute the answer is 429 with Retry-After, whatever the token. A sign-in
whose ``Origin`` is another site is refused (403): another site's page must
not sign a browser in as someone else.

``POST /logout`` ends the session in the database; ``GET /api/v1/session``
tells the page who is signed in, until when, and the CSRF token it sends
with every change.
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from pydantic import BaseModel, Field

from cloud.auth import NotAllowed, NotAuthenticated, Viewer, foreign_origin, hash_token, session_cookie
from cloud.body import BodyError, EncodingRefused, read_body
from cloud.console import LOGIN_LIMIT
from cloud.console.pages import login_page, safe_next
from cloud.context import Ctx
from cloud.errors import TooManyAttempts, error_response
from cloud.sessions import SESSION_COOKIE
from shared.errors import InputError, TwinedgeError

__all__ = ["LoginLimiter", "router"]

log = logging.getLogger(__name__)
router = APIRouter()
WINDOW_S = 60.0
_ADDRESSES_MAX = 10_000


class LoginLimiter:
    """Failed sign-ins per client address over the last minute, in this process."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._failures: dict[str, deque[float]] = {}

    def wait(self, address: str, now: float) -> float:
        """Seconds until ``address`` may try again; 0 when it may now."""
        failures = self._failures.get(address)
        if failures is None:
            return 0.0
        while failures and failures[0] <= now - WINDOW_S:
            failures.popleft()
        if len(failures) < self.limit:
            return 0.0
        return failures[0] + WINDOW_S - now

    def failed(self, address: str, now: float) -> None:
        if len(self._failures) > _ADDRESSES_MAX:
            self._failures.clear()
        self._failures.setdefault(address, deque()).append(now)


class SessionOut(BaseModel):
    name: str
    role: str
    csrf: str | None = Field(description="send it as X-CSRF-Token with every change; null with a bearer token")
    idle_expires_at: float | None = Field(description="the session ends then unless used, epoch seconds")
    expires_at: float | None = Field(description="the session ends then at the latest, epoch seconds")


def _limiter(request: Request) -> LoginLimiter:
    state = request.app.state
    if not hasattr(state, "login_limiter"):
        state.login_limiter = LoginLimiter(state.ctx.config.console.login_attempts)
    limiter: LoginLimiter = state.login_limiter
    return limiter


def _wants_json(request: Request) -> bool:
    """Whether the answer goes to a script (JSON) rather than to the sign-in page's form (HTML)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return kind == "application/json" or request.headers.get("accept", "").startswith("application/json")


async def _read_form(request: Request) -> tuple[str, str]:
    """The token and where to go next, from the form or a JSON body; BodyError and friends when unreadable."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body, _ = await read_body(request, LOGIN_LIMIT, LOGIN_LIMIT)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BodyError("the sign-in body is not UTF-8 text", "body") from None
    if kind == "application/x-www-form-urlencoded":
        fields = parse_qs(text, max_num_fields=8)
        return (fields.get("token") or [""])[0].strip(), (fields.get("next") or ["/"])[0]
    if kind == "application/json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BodyError(f"not JSON: {exc.msg} at line {exc.lineno}", "body") from None
        if not isinstance(data, dict) or not isinstance(data.get("token", ""), str):
            raise InputError('send {"token": "<your token>"}', "token")
        return str(data.get("token", "")).strip(), str(data.get("next", "/"))
    raise EncodingRefused(f"sign in with the form (application/x-www-form-urlencoded) or JSON; got "
                          f"{kind[:60] or 'no Content-Type'}", "Content-Type")


def _refused(request: Request, as_json: bool, error: TwinedgeError, next_page: str,
             retry_after: float = 1.0) -> Response:
    """A refusal as the page shows it (the form again, with the sentence) or as JSON."""
    response = error_response(error, retry_after)
    if as_json:
        return response
    message = error.problems[0].message if isinstance(error, InputError) else str(error)
    message = message[:1].upper() + message[1:] + ("" if message.endswith(".") else ".")  # a sentence on a page
    page = HTMLResponse(login_page(request, message, next_page), status_code=response.status_code)
    if "Retry-After" in response.headers:
        page.headers["Retry-After"] = response.headers["Retry-After"]
    return page


@router.post("/login", include_in_schema=False)
async def sign_in(request: Request, ctx: Ctx) -> Response:
    as_json = _wants_json(request)
    address = request.client.host if request.client else "unknown"
    limiter = _limiter(request)
    wait = limiter.wait(address, time.monotonic())
    if wait > 0:
        return _refused(request, as_json, TooManyAttempts(
            f"too many failed sign-ins from {address}; try again in {max(1, round(wait))} s", "token"),
            "/", wait)
    foreign = foreign_origin(request.headers)
    if foreign is not None:  # another site's page would sign this browser in as someone else (login CSRF)
        return _refused(request, as_json, NotAllowed(
            f"a sign-in from another site's page ({foreign}) is refused; sign in on this service's own page",
            "Origin"), "/")
    try:
        token, next_page = await _read_form(request)
    except InputError as exc:
        return _refused(request, as_json, exc, "/")
    next_page = safe_next(next_page)
    if not token:
        return _refused(request, as_json, InputError("type your token", "token"), next_page)
    principal = await ctx.auth.principal(token)
    if principal is None:
        limiter.failed(address, time.monotonic())
        log.info("console sign-in refused from %s: unknown or revoked token", address)
        return _refused(request, as_json, NotAuthenticated(
            "that token was not accepted: it is unknown, or it has been rotated or revoked", "token"), next_page)
    if principal.kind != "user":
        return _refused(request, as_json, NotAllowed(
            "an edge's token cannot sign in to the console; use a person's token (twincloud user add)", "token"),
            next_page)
    cookie, csrf = await ctx.auth.sessions.open(hash_token(token))
    log.info("%s (%s) signed in to the console from %s", principal.name, principal.role, address)
    response: Response
    if as_json:
        response = JSONResponse({"name": principal.name, "role": principal.role, "csrf": csrf})
    else:
        response = RedirectResponse(next_page, status_code=303)
    response.set_cookie(SESSION_COOKIE, cookie, max_age=int(ctx.config.console.session_max), path="/",
                        httponly=True, samesite="strict", secure=_secure(request, ctx.config.console.secure_cookie))
    response.headers["Cache-Control"] = "no-store"
    return response


def _secure(request: Request, mode: str) -> bool:
    return mode == "always" or (mode == "auto" and request.url.scheme == "https")


@router.post("/logout", status_code=204, include_in_schema=False)
async def sign_out(request: Request, who: Viewer, ctx: Ctx) -> Response:
    """End this browser's session (the cookie is checked, with its CSRF token, by cloud.guard)."""
    cookie = session_cookie(request.headers)
    if cookie is not None and await ctx.auth.sessions.end(cookie):
        log.info("%s signed out of the console", who.name)
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict",
                           secure=_secure(request, ctx.config.console.secure_cookie))
    return response


@router.get("/api/v1/session", response_model=SessionOut, tags=["console"], responses={
    401: {"description": "no token or session, or one that has ended"},
    403: {"description": "an edge's token"}})
async def this_session(request: Request, who: Viewer, ctx: Ctx) -> dict[str, Any]:
    """Who is signed in, until when, and the CSRF token the console's pages send with every change."""
    cookie = session_cookie(request.headers) if "authorization" not in request.headers else None
    record = await ctx.auth.sessions.find(cookie) if cookie else None
    if record is None:
        return {"name": who.name, "role": who.role, "csrf": None, "idle_expires_at": None, "expires_at": None}
    idle, absolute = ctx.auth.sessions.expires(record)
    return {"name": who.name, "role": who.role, "csrf": record.csrf, "idle_expires_at": min(idle, absolute),
            "expires_at": absolute}

