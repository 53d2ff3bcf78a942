"""Batches announced through PostgreSQL: each replica hears what the others stored (LISTEN/NOTIFY).

The ingest transaction sends one notification on ``CHANNEL`` per committed
batch (PostgreSQL delivers it only on commit, and never for a rollback): the
storing process's ``origin`` and, per device, the first and last timestamp it
stored. A batch of many devices is split over several notifications to stay
under PostgreSQL's 8,000-byte payload limit.

``BatchFeed`` keeps one dedicated connection (outside the pool) listening, and
reconnects with a capped, jittered backoff when it is lost. After each
(re)connection it hands out ``None``: notifications may have been missed
while it was not listening, and the reader should look for itself.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Sequence

import asyncpg

from shared.frame import TelemetryFrame

__all__ = ["APPLICATION_NAME", "CHANNEL", "BatchFeed", "Spans", "notices", "spans"]

log = logging.getLogger(__name__)

CHANNEL = "twincloud_frames"
APPLICATION_NAME = "twincloud-live-feed"  # the listening connection, as pg_stat_activity shows it
_MAX_PAYLOAD = 7_000  # bytes; PostgreSQL's limit is 8,000
Spans = dict[str, tuple[int, int]]  # device -> (first, last) timestamp stored, in µs


def spans(frames: Sequence[TelemetryFrame], stamps: Sequence[int]) -> Spans:
    out: Spans = {}
    for frame, ts in zip(frames, stamps, strict=True):
        lo, hi = out.get(frame.device_id, (ts, ts))
        out[frame.device_id] = (min(lo, ts), max(hi, ts))
    return out


def notices(origin: str, stored: Spans) -> list[str]:
    """The payloads that announce ``stored``: as few as fit under the payload limit."""
    out: list[str] = []
    chunk: dict[str, list[int]] = {}
    size = 0
    for device, (lo, hi) in sorted(stored.items()):
        entry = len(json.dumps({device: [lo, hi]}))
        if chunk and size + entry > _MAX_PAYLOAD:
            out.append(json.dumps({"origin": origin, "devices": chunk}))
            chunk, size = {}, 0
        chunk[device] = [lo, hi]
        size += entry
    if chunk:
        out.append(json.dumps({"origin": origin, "devices": chunk}))
    return out


def _parse(payload: str) -> tuple[str, Spans] | None:
    try:
        obj = json.loads(payload)
        return str(obj["origin"]), {str(d): (int(v[0]), int(v[1])) for d, v in obj["devices"].items()}
    except (ValueError, KeyError, TypeError, IndexError, AttributeError):
        return None


class BatchFeed:
    """The batches other processes commit, from a LISTEN connection of its own; ``run`` keeps it up."""

    def __init__(self, dsn: str, origin: str, where: str, *, queue_size: int = 1000,
                 backoff_max: float = 10.0, keepalive: float = 10.0) -> None:
        self._dsn = dsn
        self._origin = origin
        self._where = where
        self._queue: asyncio.Queue[Spans | None] = asyncio.Queue(maxsize=queue_size)
        self._backoff_max = backoff_max
        self._keepalive = keepalive
        self._overflowed = False
        self.listening = False

    async def get(self) -> Spans | None:
        """The next batch another process stored; None when some may have been missed (look for yourself)."""
        item = await self._queue.get()
        if item is None:
            self._overflowed = False
        return item

    def _offer(self, item: Spans | None) -> None:
        if self._overflowed:
            return  # a None is queued already: the reader looks at everything once it gets there
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self._overflowed = True
            while not self._queue.empty():  # make room for one None: nothing queued matters after it
                self._queue.get_nowait()
            self._queue.put_nowait(None)

    def _on_notify(self, _con: object, _pid: int, _channel: str, payload: str) -> None:
        parsed = _parse(payload)
        if parsed is None:
            log.debug("live feed: ignored a notification that is not ours: %.80r", payload)
            return
        origin, stored = parsed
        if origin != self._origin:  # this process handed its own frames over when it stored them
            self._offer(stored)

    async def run(self) -> None:
        """Listen until cancelled, reconnecting after a loss; never raises but CancelledError."""
        delay = 0.5
        while True:
            try:
                await self._listen()
                delay = 0.5
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                wait = random.uniform(delay / 2, delay)
                log.warning("live feed: not listening to PostgreSQL at %s (%s); frames other replicas store are "
                            "looked for by polling; connecting again in %.1f s", self._where, exc, wait)
                await asyncio.sleep(wait)
                delay = min(delay * 2, self._backoff_max)

    async def _listen(self) -> None:
        con = await asyncpg.connect(self._dsn, timeout=10, server_settings={"application_name": APPLICATION_NAME})
        lost = asyncio.Event()
        try:
            con.add_termination_listener(lambda _con: lost.set())
            await con.add_listener(CHANNEL, self._on_notify)
            self.listening = True
            self._overflowed = False
            self._offer(None)  # what was stored while nobody listened
            log.info("live feed: listening to PostgreSQL at %s for frames other replicas store", self._where)
            while not lost.is_set():
                try:
                    async with asyncio.timeout(self._keepalive):
                        await lost.wait()
                except TimeoutError:  # a connection can die without a word (a cut network): ask
                    await con.fetchval("SELECT 1", timeout=self._keepalive)
            raise ConnectionError("the connection was closed")
        finally:
            self.listening = False
            con.terminate()
