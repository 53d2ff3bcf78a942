"""What an error becomes over HTTP: the one place that maps the project's errors to statuses.

Routes and dependencies raise the project's errors (``shared.errors``, the
auth, body, storage, identity and physics errors); ``install_error_handlers``
turns each into ``{"detail": [{"path": ..., "message": ...}]}`` with the status
of its nearest class in ``STATUS``. Request validation (pydantic) and the
framework's own answers (an unknown route) get the same body shape. The errors
themselves carry what went wrong, never a status code.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from cloud.auth import NotAllowed, NotAuthenticated
from cloud.body import BodyError, BodyTimeout, BodyTooLarge, EncodingRefused
from cloud.identities import NameTaken, SelfDemotion, UnknownIdentity
from cloud.physics.errors import AssemblyNotFoundError, MeshFormatError, MeshTooLargeError
from cloud.process.registry import UnknownProcessModel
from cloud.storage.base import (
    BadQuery,
    DeviceExists,
    NotSupported,
    StorageError,
    StorageUnavailable,
    UnknownDevice,
)
from cloud.storage.derived import BindingExists, UnknownBinding
from cloud.storage.programs import UnknownProgram
from cloud.storage.registry import ModelInUse, UnknownAlert, UnknownModel, UnknownRule
from shared.errors import CodecError, InputError, Problem, TwinedgeError
from shared.validation import validation_problems

__all__ = [
    "STATUS",
    "BadParameter",
    "Busy",
    "Overloaded",
    "Superseded",
    "TooManyAttempts",
    "error_response",
    "install_error_handlers",
    "status_of",
]

log = logging.getLogger(__name__)
DEFAULT_RETRY_AFTER = 2.0


class BadParameter(InputError):
    """A query or path parameter is unusable: a time range, a window, a function or field list."""


class TooManyAttempts(InputError):
    """Too many failed attempts from one client (console sign-in); it may try again after Retry-After."""


class Busy(TwinedgeError):
    """The service cannot take this request now; the client sends it again after Retry-After.

    ``retry_after_s``: when the service knows better than the configured default (the end of a running search).
    """

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Overloaded(Busy):
    """This process is handling as many batches as it takes at once."""


class Superseded(TwinedgeError):
    """A newer request took this one's place (a sync batch of the same edge) before it was done."""


# The nearest class in an error's MRO decides. Input that is readable but wrong is 422.
STATUS: Mapping[type[BaseException], int] = {
    NotAuthenticated: 401,
    NotAllowed: 403,
    BodyError: 400,
    CodecError: 400,
    BadParameter: 400,
    BadQuery: 400,
    BodyTimeout: 408,
    Superseded: 409,
    UnknownDevice: 404,
    UnknownIdentity: 404,
    AssemblyNotFoundError: 404,
    UnknownModel: 404,
    UnknownAlert: 404,
    UnknownRule: 404,
    ModelInUse: 409,
    NameTaken: 409,
    SelfDemotion: 409,
    DeviceExists: 409,
    BindingExists: 409,
    UnknownBinding: 404,
    UnknownProcessModel: 404,
    UnknownProgram: 404,
    NotSupported: 501,
    BodyTooLarge: 413,
    TooManyAttempts: 429,
    MeshTooLargeError: 413,
    EncodingRefused: 415,
    MeshFormatError: 415,
    InputError: 422,
    Busy: 503,
    StorageError: 503,
}


def status_of(exc: BaseException) -> int:
    """The HTTP status for an error: that of its nearest class in STATUS, else 500."""
    for cls in type(exc).__mro__:
        status = STATUS.get(cls)
        if status is not None:
            return status
    return 500


def _body(problems: list[Problem]) -> dict[str, Any]:
    return {"detail": [{"path": p.path, "message": p.message} for p in problems]}


def error_response(exc: TwinedgeError, retry_after: float = DEFAULT_RETRY_AFTER) -> JSONResponse:
    """The answer to an error: its status, every problem, and the headers that status needs."""
    status = status_of(exc)
    headers: dict[str, str] = {}
    wait = str(max(1, round(retry_after)))
    if isinstance(exc, InputError):
        problems = exc.problems
    elif isinstance(exc, StorageUnavailable):
        problems = [Problem("", f"the database is busy or unreachable right now; retry after {wait} s")]
    elif isinstance(exc, StorageError):
        problems = [Problem("", f"the database failed to answer; retry after {wait} s")]
    elif status == 500:
        problems = [Problem("", "internal error; the service log has the details")]
    else:
        problems = [Problem("", str(exc))]
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if status == 408:
        headers["Connection"] = "close"  # the rest of the body is not read: the connection cannot go on
    if status in (429, 503):
        headers["Retry-After"] = wait
    return JSONResponse(_body(problems), status_code=status, headers=headers)


def _retry_after(request: Request) -> float:
    ctx = getattr(request.app.state, "ctx", None)
    return float(ctx.config.sync.retry_after) if ctx is not None else DEFAULT_RETRY_AFTER


async def _project_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, TwinedgeError)
    wait = exc.retry_after_s if isinstance(exc, Busy) and exc.retry_after_s is not None else _retry_after(request)
    response = error_response(exc, wait)
    if response.status_code == 500:
        log.error("%s %s failed: %s", request.method, request.url.path, exc, exc_info=exc)
    elif isinstance(exc, StorageError) and not isinstance(exc, StorageUnavailable):
        log.error("%s %s: the database failed: %s", request.method, request.url.path, exc)
    return response


_WHERE = ("body", "query", "path", "header", "cookie")


async def _invalid_request(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = []
    for err in exc.errors():
        loc = tuple(err.get("loc", ()))
        errors.append({**err, "loc": loc[1:] if len(loc) > 1 and loc[0] in _WHERE else loc})
    return JSONResponse(_body(validation_problems(errors)), status_code=422)


async def _framework_error(request: Request, exc: Exception) -> Response:
    """The framework's own answers (unknown route, wrong method) in the same shape as ours."""
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code in (204, 304):
        return Response(status_code=exc.status_code, headers=exc.headers)
    message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    return JSONResponse(_body([Problem("", message)]), status_code=exc.status_code, headers=exc.headers)


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    """A bug: logged with its traceback for the developers; the client gets a 500 in the usual shape."""
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return JSONResponse(_body([Problem("", "internal error; the service log has the details")]), status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    """Make ``app`` answer every project error, validation error and framework error as described above."""
    app.add_exception_handler(Exception, _unexpected_error)
    app.add_exception_handler(TwinedgeError, _project_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(StarletteHTTPException, _framework_error)
