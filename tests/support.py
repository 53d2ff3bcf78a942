"""Test seams shared by the suites (and benchmarks): a collecting frame sink and free-port finders."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from edge.sources.base import Position
from shared.batch import Document, EdgeEvent
from shared.frame import TelemetryFrame

# Ports for test servers come from a range below the kernel's ephemeral ports (which outgoing connections
# and bind(0) draw from), split between the pytest-xdist workers: a port one worker picked is never picked
# by another worker, nor taken as the source port of a connection, before the server binds it.
_LOWEST = 10_000
_cursor: int | None = None


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def _worker_range() -> tuple[int, int] | None:
    """This worker's slice of the ports below the ephemeral range, or None when there is no such range."""
    top = min(_ephemeral_start(), 32_768)
    workers = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:]
    index = int(worker) if worker.isdigit() else 0
    size = (top - _LOWEST) // workers
    if size < 1_000:
        return None
    return _LOWEST + index * size, _LOWEST + (index + 1) * size


def _bindable(base: int, count: int) -> bool:
    socks = []
    try:
        for port in range(base, base + count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(sock)
            sock.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        for sock in socks:
            sock.close()


def free_ports(count: int) -> int:
    """The first of ``count`` consecutive TCP ports on 127.0.0.1 that are free, and this worker's alone."""
    global _cursor
    span = _worker_range()
    if span is None:
        return _ephemeral_ports(count)
    low, high = span
    if _cursor is None or not low <= _cursor < high:
        _cursor = low + os.getpid() % max(1, (high - low) // 2)  # two runs at once rarely start together
    for _ in range((high - low) // count):
        base = _cursor
        _cursor = base + count if base + 2 * count <= high else low
        if base + count <= high and _bindable(base, count):
            return base
    raise RuntimeError(f"no {count} consecutive free ports found in {low}-{high}")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free, and this worker's alone."""
    return free_ports(1)


def _ephemeral_ports(count: int) -> int:
    """Where no range lies below the ephemeral ports: ports the kernel found free a moment ago."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            base = int(sock.getsockname()[1])
        if base + count <= 65535 and _bindable(base, count):
            return base
    raise RuntimeError(f"no {count} consecutive free ports found")


@dataclass
class CollectingSink:
    """A FrameSink that keeps what it is given; ``wait_for(n)`` waits for n frames.

    Events, documents and positions handed with frames are kept too (``positions``: the last per key).
    """

    frames: list[TelemetryFrame] = field(default_factory=list)
    rejected: list[tuple[str, str, bytes | None]] = field(default_factory=list)
    events: list[EdgeEvent] = field(default_factory=list)
    documents: list[Document] = field(default_factory=list)
    positions: dict[str, str] = field(default_factory=dict)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def put(self, frames: Sequence[TelemetryFrame], *, durable: bool = False,
                  events: Sequence[EdgeEvent] = (), documents: Sequence[Document] = (),
                  position: Position | None = None) -> None:
        assert position is None or durable, "a position goes with durable=True only"
        self.frames.extend(frames)
        self.events.extend(events)
        self.documents.extend(documents)
        if position is not None:
            self.positions[position.key] = position.value
        self._changed.set()

    async def position(self, key: str) -> str | None:
        return self.positions.get(key)

    async def reject(self, origin: str, reason: str, payload: bytes | None = None) -> None:
        self.rejected.append((origin, reason, payload))
        self._changed.set()

    async def wait_for(self, count: int, timeout: float = 10.0, *, rejected: bool = False) -> None:
        async with asyncio.timeout(timeout):
            while (len(self.rejected) if rejected else len(self.frames)) < count:
                self._changed.clear()
                await self._changed.wait()


async def lines_until_ready(proc: asyncio.subprocess.Process, marker: str = "twinsim ready",
                            timeout: float = 30) -> list[str]:
    """The lines a child process prints on stdout up to and including ``marker``; fails with its stderr when it
    exits before."""
    assert proc.stdout is not None
    lines: list[str] = []
    async with asyncio.timeout(timeout):
        while marker not in lines:
            line = await proc.stdout.readline()
            assert line, f"twinsim exited early: {(await proc.communicate())[1].decode()}"
            lines.append(line.decode().strip())
    return lines


async def sigterm_and_wait(proc: asyncio.subprocess.Process, timeout: float = 20) -> tuple[bytes, bytes]:
    """Stop a child process as a supervisor does (SIGTERM, unless it ended already); its stdout and stderr."""
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
    async with asyncio.timeout(timeout):
        return await proc.communicate()
