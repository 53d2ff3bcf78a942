"""The live feed: frames fan out to WebSocket subscribers of their device as they are stored.

Frames this process stores are handed over at once. Frames another process
stored (several workers or machines behind one database) are picked up by a
poll of the subscribed devices' newest timestamp every ``interval`` seconds,
which runs only while someone is subscribed; what this process already sent
is not sent twice. Across processes the order is the order of discovery, not
strictly of time; a frame older than what the poll has already covered (a
late arrival stored by another process) is not sent live. History queries
are the complete record.

Each subscriber has a bounded queue; a client too slow to keep up misses
frames (counted and told to it) instead of holding memory or slowing ingest.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from cloud.storage.base import Storage, StorageError, us
from shared.frame import TelemetryFrame

__all__ = ["LiveHub", "Subscription"]

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Subscription:
    device_id: str
    queue: asyncio.Queue[TelemetryFrame] = field(default_factory=lambda: asyncio.Queue(maxsize=1000))
    dropped: int = 0


class LiveHub:
    def __init__(self, storage: Storage | None = None, interval: float = 0.5) -> None:
        self._storage = storage
        self._interval = interval
        self._subs: dict[str, set[Subscription]] = {}
        self._polled_through: dict[str, int] = {}  # device -> newest ts (µs) the poll has covered
        self._sent: dict[str, deque[int]] = {}  # device -> timestamps this process handed over lately
        self._sent_set: dict[str, set[int]] = {}
        self._wanted = asyncio.Event()
        self.missed = 0

    def subscribe(self, device_id: str, since_us: int | None) -> Subscription:
        sub = Subscription(device_id)
        self._subs.setdefault(device_id, set()).add(sub)
        self._polled_through[device_id] = max(self._polled_through.get(device_id, 0), since_us or 0)
        self._sent.setdefault(device_id, deque())
        self._sent_set.setdefault(device_id, set())
        self._wanted.set()
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.device_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.device_id]
                for table in (self._polled_through, self._sent, self._sent_set):
                    table.pop(sub.device_id, None)
        if not self._subs:
            self._wanted.clear()

    def publish(self, frames: Iterable[TelemetryFrame]) -> int:
        """Hand frames to their device's subscribers without waiting; returns how many were missed."""
        if not self._subs:
            return 0
        missed = 0
        for frame in frames:
            subs = self._subs.get(frame.device_id)
            if not subs:
                continue
            self._remember(frame.device_id, us(frame.ts))
            for sub in subs:
                try:
                    sub.queue.put_nowait(frame)
                except asyncio.QueueFull:
                    sub.dropped += 1
                    missed += 1
        self.missed += missed
        return missed

    def _remember(self, device: str, ts: int) -> None:
        sent, seen = self._sent[device], self._sent_set[device]
        sent.append(ts)
        seen.add(ts)
        if len(sent) > 20_000:
            seen.discard(sent.popleft())

    async def run(self) -> None:
        """Poll for frames other processes stored, while anyone is subscribed. Runs until cancelled."""
        if self._storage is None:
            return
        while True:
            await self._wanted.wait()
            await asyncio.sleep(self._interval)
            for device in list(self._subs):
                try:
                    await self._catch_up(device)
                except StorageError as exc:
                    log.warning("live feed: cannot read new frames of device %s (%s); trying again", device, exc)

    async def _catch_up(self, device: str) -> None:
        assert self._storage is not None
        row = await self._storage.device(device)
        after = self._polled_through.get(device)
        if row is None or row[1] is None or after is None or row[1] <= after:
            return
        frames = await self._storage.frames_between(device, after, row[1], limit=5000)
        if device not in self._subs:  # the last subscriber left meanwhile
            return
        self._polled_through[device] = max(row[1], self._polled_through[device])
        seen = self._sent_set[device]
        self.publish(f for f in frames if us(f.ts) not in seen)
