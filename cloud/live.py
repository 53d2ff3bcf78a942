"""The live feed: frames fan out to WebSocket subscribers of their device as they are stored.

Frames this process stores are handed over at once. Frames another process
stored (another replica or worker behind one database) arrive two ways:

- PostgreSQL: each committed batch is announced (LISTEN/NOTIFY, see
  ``cloud.storage.notify``) with its devices and the time span it stored; the
  hub reads that span of a subscribed device and sends what it has not sent.
  Late arrivals (frames older than what was sent already) are sent too.
- SQLite, and PostgreSQL while the listening connection is down: a poll of
  the subscribed devices' newest timestamp every ``interval`` seconds, which
  runs only while someone is subscribed. A frame older than what the poll has
  already covered is not sent live then.

What this process already sent is not sent twice. Across processes the order
is the order of discovery, not strictly of time; history queries are the
complete record.

Each subscriber has a bounded queue; a client too slow to keep up misses
frames (counted and told to it) instead of holding memory or slowing ingest.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cloud.storage.base import Storage, StorageError, us
from shared.frame import TelemetryFrame

if TYPE_CHECKING:
    from cloud.storage.notify import BatchFeed

__all__ = ["LiveHub", "Subscription"]

log = logging.getLogger(__name__)
_PAGE = 5000  # frames read at a time


@dataclass(eq=False)
class Subscription:
    device_id: str
    queue: asyncio.Queue[TelemetryFrame] = field(default_factory=lambda: asyncio.Queue(maxsize=1000))
    dropped: int = 0


class LiveHub:
    def __init__(self, storage: Storage | None = None, interval: float = 0.5, feed: BatchFeed | None = None) -> None:
        self._storage = storage
        self._interval = interval
        self._feed = feed
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

    @property
    def listening(self) -> bool:
        """Whether other processes' batches arrive as they commit (else they are polled for)."""
        return self._feed is not None and self._feed.listening

    async def run(self) -> None:
        """Follow what other processes store, while anyone is subscribed. Runs until cancelled."""
        if self._storage is None:
            return
        if self._feed is None:
            await self._poll()
            return
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._feed.run(), name="twincloud-live-listen")
            tg.create_task(self._follow(self._feed), name="twincloud-live-follow")
            tg.create_task(self._poll(), name="twincloud-live-poll")

    async def _poll(self) -> None:
        while True:
            await self._wanted.wait()
            await asyncio.sleep(self._interval)
            if not self.listening:
                await self._catch_up_all()

    async def _catch_up_all(self) -> None:
        for device in list(self._subs):
            try:
                await self._catch_up(device)
            except StorageError as exc:
                log.warning("live feed: cannot read new frames of device %s (%s); trying again", device, exc)

    async def _follow(self, feed: BatchFeed) -> None:
        while True:
            stored = await feed.get()
            if not self._subs:
                continue
            if stored is None:  # notifications may have been missed
                await self._catch_up_all()
                continue
            for device, span in stored.items():
                if device in self._subs:
                    try:
                        await self._send_span(device, span)
                    except StorageError as exc:
                        log.warning("live feed: cannot read the frames of device %s another replica stored (%s)",
                                    device, exc)

    async def _send_span(self, device: str, span: tuple[int, int]) -> None:
        """Send the frames of ``device`` stored in ``span`` that this process has not sent yet."""
        assert self._storage is not None
        after, upto = span[0] - 1, span[1]
        while after < upto:
            frames = await self._storage.frames_between(device, after, upto, limit=_PAGE)
            if device not in self._subs:  # the last subscriber left meanwhile
                return
            self._polled_through[device] = max(upto, self._polled_through[device])
            seen = self._sent_set[device]
            self.publish(f for f in frames if us(f.ts) not in seen)
            if len(frames) < _PAGE:
                return
            after = us(frames[-1].ts)

    async def _catch_up(self, device: str) -> None:
        assert self._storage is not None
        row = await self._storage.device(device)
        after = self._polled_through.get(device)
        if row is None or row[1] is None or after is None or row[1] <= after:
            return
        frames = await self._storage.frames_between(device, after, row[1], limit=_PAGE)
        if device not in self._subs:  # the last subscriber left meanwhile
            return
        self._polled_through[device] = max(row[1], self._polled_through[device])
        seen = self._sent_set[device]
        self.publish(f for f in frames if us(f.ts) not in seen)
