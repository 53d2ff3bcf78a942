"""Test seams shared by the suites (and benchmarks): a collecting frame sink and free-port finders."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field

from shared.frame import TelemetryFrame


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_ports(count: int) -> int:
    """The first of ``count`` consecutive TCP ports on 127.0.0.1 that were free a moment ago."""
    for _ in range(50):
        base = free_port()
        if base + count > 65535:
            continue
        socks = []
        try:
            for port in range(base, base + count):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                socks.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise RuntimeError(f"no {count} consecutive free ports found")


@dataclass
class CollectingSink:
    """A FrameSink that keeps what it is given; ``wait_for(n)`` waits for n frames."""

    frames: list[TelemetryFrame] = field(default_factory=list)
    rejected: list[tuple[str, str, bytes | None]] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def put(self, frames: Sequence[TelemetryFrame], *, durable: bool = False) -> None:
        self.frames.extend(frames)
        self._changed.set()

    async def reject(self, origin: str, reason: str, payload: bytes | None = None) -> None:
        self.rejected.append((origin, reason, payload))
        self._changed.set()

    async def wait_for(self, count: int, timeout: float = 10.0, *, rejected: bool = False) -> None:
        async with asyncio.timeout(timeout):
            while (len(self.rejected) if rejected else len(self.frames)) < count:
                self._changed.clear()
                await self._changed.wait()
