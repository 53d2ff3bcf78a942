"""A TCP proxy on 127.0.0.1 that injects the faults a flaky network and an overloaded cloud cause.

For each new connection it draws one fate:
- ``pass``: relay both ways (and, with ``drop_midway``, cut the connection at a
  random chunk: a request may reach the cloud while its answer never arrives);
- ``500`` / ``503``: answer an HTTP error itself and close;
- ``reset``: close at once, before anything is read.
The draw is seeded, so a failing run can be replayed.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter

from tests.support import free_port


def _answer(status: str, headers: str = "", body: bytes = b"") -> bytes:
    head = f"HTTP/1.1 {status}\r\n{headers}Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    return head.encode() + body


_ANSWERS = {
    "500": _answer("500 Internal Server Error", "Content-Type: application/json\r\n", b'{"detail": "injected"}'),
    "503": _answer("503 Service Unavailable", "Retry-After: 0\r\n"),
}


class FaultProxy:
    def __init__(self, target_port: int, *, seed: int, weights: dict[str, float], drop_midway: float = 0.0) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.rng = random.Random(seed)
        self.weights = weights
        self.drop_midway = drop_midway
        self.fates: Counter[str] = Counter()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    def _fate(self) -> str:
        names = list(self.weights)
        return self.rng.choices(names, weights=[self.weights[n] for n in names])[0]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        fate = self._fate()
        self.fates[fate] += 1
        try:
            if fate in _ANSWERS:
                with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
                    await reader.readuntil(b"\r\n\r\n")  # the request head; its body is ignored
                    writer.write(_ANSWERS[fate])
                    await writer.drain()
            elif fate == "pass":
                await self._relay(reader, writer)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()
            self._tasks.discard(task)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            return  # the cloud is down: the client sees its connection closed
        cut = asyncio.Event()

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, downstream: bool) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await src.read(65536):
                    if downstream and self.drop_midway and self.rng.random() < self.drop_midway:
                        self.fates["cut"] += 1
                        break  # the answer is lost: the cloud may have stored the batch
                    dst.write(data)
                    await dst.drain()
            cut.set()

        tasks = [asyncio.create_task(pump(reader, up_writer, False), name="proxy-up"),
                 asyncio.create_task(pump(up_reader, writer, True), name="proxy-down")]
        try:
            await cut.wait()
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            up_writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await up_writer.wait_closed()
