"""The live feed: frames fan out to WebSocket subscribers of their device as soon as they are stored.

Each subscriber has a bounded queue; a client too slow to keep up misses
frames (counted and told to it) instead of holding memory or slowing ingest.
The hub is per process: a subscriber sees the frames its own process stored.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from shared.frame import TelemetryFrame

__all__ = ["LiveHub", "Subscription"]

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Subscription:
    device_id: str
    queue: asyncio.Queue[TelemetryFrame] = field(default_factory=lambda: asyncio.Queue(maxsize=1000))
    dropped: int = 0


class LiveHub:
    def __init__(self) -> None:
        self._subs: dict[str, set[Subscription]] = {}

    def subscribe(self, device_id: str) -> Subscription:
        sub = Subscription(device_id)
        self._subs.setdefault(device_id, set()).add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.device_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.device_id]

    @property
    def subscribers(self) -> int:
        return sum(len(s) for s in self._subs.values())

    def publish(self, frames: Iterable[TelemetryFrame]) -> int:
        """Hand frames to their device's subscribers without waiting; returns how many were missed."""
        if not self._subs:
            return 0
        missed = 0
        for frame in frames:
            for sub in self._subs.get(frame.device_id, ()):
                try:
                    sub.queue.put_nowait(frame)
                except asyncio.QueueFull:
                    sub.dropped += 1
                    missed += 1
        return missed
