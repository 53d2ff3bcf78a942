"""The daemon's side of the control socket: answers requests by name and streams stored frames to ``tail``.

The protocol is described in ``edge.control``; the client is ``edge.control.client``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge.control import ControlError
from shared.errors import TwinedgeError

if TYPE_CHECKING:
    from shared.frame import TelemetryFrame

__all__ = ["ControlServer"]

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Awaitable[Any]]
_TAIL_BUFFER = 1000
_MAX_REQUEST = 64 * 1024
_REQUEST_TIMEOUT = 10.0  # seconds a client may take to send its request line


class ControlServer:
    """Serves requests by name (``{"cmd": "status"}``) and live frames to ``tail`` clients."""

    def __init__(self, path: Path, mode: int, handlers: dict[str, Handler]) -> None:
        self.path = path
        self.mode = mode
        self.handlers = handlers
        self._tails: set[tuple[asyncio.Queue[TelemetryFrame | None], str | None]] = set()
        self._clients: set[asyncio.StreamWriter] = set()
        self.started = asyncio.Event()

    @property
    def tail_clients(self) -> int:
        """The ``tail`` clients that frames stored from now on reach."""
        return len(self._tails)

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
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()  # a socket left by an earlier run
            server = await asyncio.start_unix_server(self._serve, path=str(self.path), limit=_MAX_REQUEST)
            os.chmod(self.path, self.mode)
        except OSError as exc:
            raise ControlError(
                f"cannot create the control socket {self.path}: {exc.strerror or exc}; "
                "set control.socket (or edge.state_dir) to a directory the service can write"
            ) from None
        self.started.set()
        log.info("control socket at %s", self.path)
        try:
            async with server:
                try:
                    await server.serve_forever()
                finally:
                    self._end_clients()  # the server's exit waits for its connections (Python 3.12+)
        finally:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    def _end_clients(self) -> None:
        """On shutdown: tail clients get the end of their stream, every connection is closed."""
        for queue, _ in self._tails:
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(None)
        for writer in self._clients:
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._clients.add(writer)
        try:
            try:
                async with asyncio.timeout(_REQUEST_TIMEOUT):
                    line = await reader.readline()
                req = json.loads(line)
                if not isinstance(req, dict) or not isinstance(req.get("cmd"), str):
                    raise ValueError("expected {\"cmd\": ...}")
            except ValueError as exc:  # not JSON, or a line over the limit (readline says so with ValueError)
                await self._send(writer, {"ok": False, "error": f"bad request: {exc}"})
                return
            if req["cmd"] == "tail":
                await self._tail(req, writer)
                return
            handler = self.handlers.get(req["cmd"])
            if handler is None:
                await self._send(writer, {"ok": False, "error": f"unknown command {req['cmd']!r}"})
                return
            await self._send(writer, await self._answer(handler, req))
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass  # the client went away, or never said what it wanted
        finally:
            self._clients.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    @staticmethod
    async def _answer(handler: Handler, req: dict[str, Any]) -> dict[str, Any]:
        """The reply to one request: its result, or why there is none (the daemon goes on either way)."""
        try:
            return {"ok": True, "result": await handler(req)}
        except TwinedgeError as exc:  # e.g. the queue file cannot be read: say so to the person asking
            return {"ok": False, "error": str(exc)}
        except (TypeError, ValueError) as exc:
            return {"ok": False, "error": f"bad request: {exc}"}
        except Exception as exc:  # noqa: BLE001 - one request's failure must not go unexplained or reach the loop
            log.exception("control request %r failed", req.get("cmd"))
            return {"ok": False, "error": f"the daemon could not answer ({type(exc).__name__}: {exc}); see its log"}

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
