"""The CLI's side of the control socket: one request and its reply, or the stream of stored frames.

Plain blocking sockets: a command that asks the daemon one thing should not pay
for starting an event loop. ``request`` and ``stream`` wrap them for async callers.
"""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from edge.control import ControlError

__all__ = ["call", "follow", "request", "stream"]

TIMEOUT = 10.0  # a daemon that accepts and then stays silent this long is not answering
_MAX_REPLY = 64 * 1024 * 1024


def _unreachable(path: Path, exc: OSError) -> ControlError:
    if isinstance(exc, PermissionError):
        return ControlError(f"no permission to use {path}: add your user to the service's group (e.g. twinedge)")
    return ControlError(f"the daemon is not running (no control socket at {path}: {exc.strerror or exc})")


def _request_line(cmd: str, args: dict[str, Any]) -> bytes:
    return json.dumps({"cmd": cmd, **args}).encode() + b"\n"


def _connect(path: Path, timeout: float | None) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(path))
    except OSError as exc:
        sock.close()
        raise _unreachable(path, exc) from None
    return sock


def _lines(sock: socket.socket, path: Path) -> Iterator[bytes]:
    buffer = sock.makefile("rb")
    while True:
        try:
            line = buffer.readline(_MAX_REPLY)
        except TimeoutError:
            raise ControlError(f"the daemon at {path} did not answer within {TIMEOUT:.0f} s") from None
        except OSError as exc:
            raise ControlError(f"the connection to the daemon at {path} failed: {exc.strerror or exc}") from None
        if not line:
            return
        yield line


def _reply(line: bytes | None) -> Any:
    try:
        reply = json.loads(line or b"null")
    except ValueError:
        reply = None
    if not isinstance(reply, dict):
        raise ControlError("the daemon closed the connection without an answer")
    if not reply.get("ok"):
        raise ControlError(str(reply.get("error", "the daemon refused the request")))
    return reply.get("result")


def call(path: Path, cmd: str, **args: Any) -> Any:
    """One request to the running daemon; raises ControlError when it is not reachable or refuses."""
    with _connect(path, TIMEOUT) as sock:
        sock.sendall(_request_line(cmd, args))
        return _reply(next(_lines(sock, path), None))


def follow(path: Path, device: str | None = None) -> Iterator[dict[str, Any]]:
    """Stored frames as the daemon commits them, until the daemon stops."""
    with _connect(path, TIMEOUT) as sock:
        sock.sendall(_request_line("tail", {"device": device}))
        lines = _lines(sock, path)
        _reply(next(lines, None))
        sock.settimeout(None)  # frames come when they come
        for line in lines:
            yield json.loads(line)


async def request(path: Path, cmd: str, **args: Any) -> Any:
    """``call`` for async code (tests, benchmarks)."""
    import asyncio

    try:
        reader, writer = await asyncio.open_unix_connection(str(path), limit=_MAX_REPLY)
    except OSError as exc:
        raise _unreachable(path, exc) from None
    try:
        writer.write(_request_line(cmd, args))
        await writer.drain()
        return _reply(await reader.readline())
    finally:
        writer.close()


async def stream(path: Path, device: str | None = None) -> AsyncIterator[dict[str, Any]]:
    """``follow`` for async code."""
    import asyncio

    try:
        reader, writer = await asyncio.open_unix_connection(str(path), limit=_MAX_REPLY)
    except OSError as exc:
        raise _unreachable(path, exc) from None
    try:
        writer.write(_request_line("tail", {"device": device}))
        await writer.drain()
        _reply(await reader.readline())
        while line := await reader.readline():
            yield json.loads(line)
    finally:
        writer.close()
