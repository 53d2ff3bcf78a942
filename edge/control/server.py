"""The local control socket: how `twinedge status`, `tail` and `queue` talk to the running daemon.

A Unix stream socket (mode 0660 by default, so operators in the service's group
can use it without root) speaking JSON lines: one request line, then one reply
line, or for ``tail`` a line per stored frame until the client goes away.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from shared.errors import TwinedgeError
from shared.frame import TelemetryFrame

__all__ = ["ControlError", "ControlServer", "request", "stream"]

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Awaitable[Any]]
_TAIL_BUFFER = 1000
_MAX_REQUEST = 64 * 1024


class ControlError(TwinedgeError):
    """The daemon's control socket is unreachable or answered with an error."""


class ControlServer:
    """Serves requests by name (``{"cmd": "status"}``) and live frames to ``tail`` clients."""

    def __init__(self, path: Path, mode: int, handlers: dict[str, Handler]) -> None:
        self.path = path
        self.mode = mode
        self.handlers = handlers
        self._tails: set[tuple[asyncio.Queue[TelemetryFrame | None], str | None]] = set()
        self.started = asyncio.Event()

    async def publish(self, frames: Sequence[TelemetryFrame]) -> None:
        """After-commit hook: hand stored frames to tail clients (a slow client skips frames)."""
        for queue, device in self._tails:
            for frame in frames:
                if device is not None and frame.device_id != device:
                    continue
                if queue.full():
                    break
                queue.put_nowait(frame)

    async def run(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # a socket left by an earlier run
        server = await asyncio.start_unix_server(self._serve, path=str(self.path), limit=_MAX_REQUEST)
        os.chmod(self.path, self.mode)
        self.started.set()
        log.info("control socket at %s", self.path)
        try:
            async with server:
                await server.serve_forever()
        finally:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            try:
                req = json.loads(line)
                if not isinstance(req, dict) or not isinstance(req.get("cmd"), str):
                    raise ValueError("expected {\"cmd\": ...}")
            except ValueError as exc:
                await self._send(writer, {"ok": False, "error": f"bad request: {exc}"})
                return
            if req["cmd"] == "tail":
                await self._tail(req, writer)
                return
            handler = self.handlers.get(req["cmd"])
            if handler is None:
                await self._send(writer, {"ok": False, "error": f"unknown command {req['cmd']!r}"})
                return
            await self._send(writer, {"ok": True, "result": await handler(req)})
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # the client went away
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _tail(self, req: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        device = req.get("device") if isinstance(req.get("device"), str) else None
        queue: asyncio.Queue[TelemetryFrame | None] = asyncio.Queue(_TAIL_BUFFER)
        entry = (queue, device)
        self._tails.add(entry)
        try:
            await self._send(writer, {"ok": True, "result": "tailing"})
            while True:
                frame = await queue.get()
                if frame is None:
                    return
                await self._send(writer, frame.to_wire())
        finally:
            self._tails.discard(entry)

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, obj: Any) -> None:
        writer.write(json.dumps(obj, separators=(",", ":")).encode() + b"\n")
        await writer.drain()


def _unreachable(path: Path, exc: OSError) -> ControlError:
    if isinstance(exc, PermissionError):
        return ControlError(f"no permission to use {path}: add your user to the service's group (e.g. twinedge)")
    return ControlError(f"the daemon is not running (no control socket at {path}: {exc.strerror or exc})")


async def request(path: Path, cmd: str, **args: Any) -> Any:
    """One request to the running daemon; raises ControlError when it is not reachable."""
    try:
        reader, writer = await asyncio.open_unix_connection(str(path), limit=64 * 1024 * 1024)
    except OSError as exc:
        raise _unreachable(path, exc) from None
    try:
        writer.write(json.dumps({"cmd": cmd, **args}).encode() + b"\n")
        await writer.drain()
        reply = json.loads(await reader.readline() or b"null")
    finally:
        writer.close()
    if not isinstance(reply, dict) or not reply.get("ok"):
        raise ControlError(reply.get("error", "no answer") if isinstance(reply, dict) else "no answer")
    return reply["result"]


async def stream(path: Path, device: str | None = None) -> AsyncIterator[dict[str, Any]]:
    """Live frames from the daemon as they are stored."""
    try:
        reader, writer = await asyncio.open_unix_connection(str(path))
    except OSError as exc:
        raise _unreachable(path, exc) from None
    try:
        writer.write(json.dumps({"cmd": "tail", "device": device}).encode() + b"\n")
        await writer.drain()
        first = json.loads(await reader.readline() or b"null")
        if not isinstance(first, dict) or not first.get("ok"):
            raise ControlError("the daemon refused to stream frames")
        while line := await reader.readline():
            yield json.loads(line)
    finally:
        writer.close()
