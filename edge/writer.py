"""The store writer: gathers frames from every source into batched SQLite transactions.

Sources and the broker call ``put`` (the FrameSink). The queue in front of the
writer is bounded in frames: when the writer falls behind, ``put`` waits, and the
waiting is the backpressure that slows sources down. A caller that asks for
``durable=True`` returns only after its frames' transaction committed, which is
what lets the broker acknowledge a QoS 1 publish only for stored data.

When the queue refuses a batch (policy ``drop_newest`` at the disk budget, or a
disk with no room at all), durable callers get ``QueueFull`` and keep their
frames (an MQTT device is not acknowledged and resends); frames of callers that
did not wait (pollers, QoS 0) are counted as dropped by reason.

With an ``enrich`` step (the inference engine), each batch is scored before its
transaction: the stored frames carry the scores (kept beside the frames and merged
as they are encoded: ``edge.scored``), and the alert events the scores raised or
cleared go into the same transaction. A failing step never holds up the
data: the batch is then stored unscored.

A source may hand edge events, documents and its position in its input with its
frames: they go into the same transaction as the frames (all or nothing). Puts
gathered into one transaction keep their order, so of several positions under
one key the last one handed wins. A source does not know the edge's id: the
writer stamps it on the events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from edge.logthrottle import Throttle
from edge.store import QueueFull, Store, StoreError
from shared.frame import TelemetryFrame

if TYPE_CHECKING:
    from edge.sources.base import Position
    from shared.batch import AlertEvent, Document, EdgeEvent

__all__ = ["StoreWriter"]

log = logging.getLogger(__name__)

CommitHook = Callable[[Sequence[TelemetryFrame]], Awaitable[None]]
AlertHook = Callable[[Sequence["AlertEvent"]], Awaitable[None]]
EventHook = Callable[[Sequence["EdgeEvent"]], Awaitable[None]]
Enrich = Callable[[Sequence[TelemetryFrame]], Awaitable[tuple[Sequence[TelemetryFrame], list["AlertEvent"]]]]
_RETRY_DELAY = 1.0
_DRAIN_TIMEOUT = 5.0
_REJECT_QUEUE = 1000
_LOG_EVERY = 60.0  # a write that keeps failing is logged again at most this often


@dataclass
class _Put:
    """One ``put``: what goes into the transaction, and the caller waiting for it (durable puts)."""

    frames: Sequence[TelemetryFrame]
    waiter: asyncio.Future[None] | None
    events: Sequence[EdgeEvent] = ()
    documents: Sequence[Document] = ()
    position: Position | None = None

    @property
    def size(self) -> int:
        """What it counts against the writer's queue (an events-only put counts too)."""
        return max(1, len(self.frames) + len(self.events) + len(self.documents))


class StoreWriter:
    """Implements FrameSink over a Store. Run ``run()`` as one task; it drains on cancel."""

    def __init__(
        self,
        store: Store,
        *,
        max_frames: int,
        max_delay: float,
        queue_frames: int,
        enrich: Enrich | None = None,
        edge_id: str | None = None,
    ) -> None:
        self.store = store
        self.edge_id = edge_id  # stamped on the edge events sources hand (a source does not know the edge's id)
        self.enrich = enrich
        self.max_frames = max_frames
        self.max_delay = max_delay
        self.queue_frames = queue_frames
        self._items: deque[_Put] = deque()
        self._queued = 0
        self._cond = asyncio.Condition()
        self._hooks: list[CommitHook] = []
        self._alert_hooks: list[AlertHook] = []
        self._event_hooks: list[EventHook] = []
        self._enrich_log = Throttle(log, _LOG_EVERY)
        self._last_commit = 0.0
        self.committed_frames = 0
        self.commits = 0
        self.waits = 0  # how often a caller had to wait for room (backpressure engaged)
        self.rejected: dict[str, int] = {}
        self._inflight: list[_Put] | None = None
        self._inflight_alerts: list[AlertEvent] = []
        self._quarantine_log = Throttle(log, _LOG_EVERY)  # on a full disk this would repeat per bad message
        self._rejects: asyncio.Queue[tuple[str, str, bytes | None]] = asyncio.Queue(_REJECT_QUEUE)

    def on_commit(self, hook: CommitHook) -> None:
        """Call ``hook(frames)`` after each commit (republish, live tail, uplink wake-up)."""
        self._hooks.append(hook)

    def on_alerts(self, hook: AlertHook) -> None:
        """Call ``hook(alerts)`` after a commit that stored alert events (MQTT republish)."""
        self._alert_hooks.append(hook)

    def on_events(self, hook: EventHook) -> None:
        """Call ``hook(events)`` after a commit that stored edge events sources handed with their data."""
        self._event_hooks.append(hook)

    @property
    def queued(self) -> int:
        return self._queued

    # --- FrameSink -----------------------------------------------------------

    async def put(self, frames: Sequence[TelemetryFrame], *, durable: bool = False,
                  events: Sequence[EdgeEvent] = (), documents: Sequence[Document] = (),
                  position: Position | None = None) -> None:
        """Queue frames with the events, documents and position that go with them (one transaction); with
        ``durable=True`` return once committed, or raise QueueFull if the queue refused them (none of it stored)."""
        if not frames and not events and not documents and position is None:
            return
        if position is not None and not durable:
            raise ValueError("a position is committed with its data: put it with durable=True")
        waiter: asyncio.Future[None] | None = asyncio.get_running_loop().create_future() if durable else None
        item = _Put(frames, waiter, events, documents, position)
        async with self._cond:
            if self._queued >= self.queue_frames:
                self.waits += 1
                await self._cond.wait_for(lambda: self._queued < self.queue_frames)
            self._items.append(item)
            self._queued += item.size
            self._cond.notify_all()
        if waiter is not None:
            await waiter

    async def position(self, key: str) -> str | None:
        """The last committed position under ``key`` (FrameSink)."""
        return await self.store.position(key)

    async def reject(self, origin: str, reason: str, payload: bytes | None = None) -> None:
        """Count now; the quarantine row is written by ``run_quarantine``.

        The caller (a broker connection, a source) may be cancelled right after this
        returns; handing the row to our own task keeps it from being lost then.
        """
        kind = origin.split(":", 1)[0]
        self.rejected[kind] = self.rejected.get(kind, 0) + 1
        try:
            self._rejects.put_nowait((origin, reason, payload))
        except asyncio.QueueFull:
            # A flood of bad input: keep counting, but do not let it eat memory.
            self.rejected["quarantine_full"] = self.rejected.get("quarantine_full", 0) + 1

    async def run_quarantine(self) -> None:
        """Write refused input to the quarantine table, one row at a time, in arrival order."""
        try:
            while True:
                await self._quarantine_one(await self._rejects.get())
        except asyncio.CancelledError:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_DRAIN_TIMEOUT):
                    while not self._rejects.empty():
                        await self._quarantine_one(self._rejects.get_nowait())
            self._quarantine_log.close()
            raise

    async def _quarantine_one(self, item: tuple[str, str, bytes | None]) -> None:
        origin, reason, payload = item
        try:
            await self.store.quarantine(origin, reason, payload)
        except StoreError as exc:  # counted as rejected already
            self._quarantine_log.log(logging.ERROR, "quarantine", "could not keep refused input from %s in the "
                                     "quarantine: %s", origin, exc)

    # --- the writer task -----------------------------------------------------

    async def run(self) -> None:
        try:
            while True:
                batch = await self._take()
                await self._commit(batch)
        except BaseException as exc:
            if self._inflight is not None:
                # Stopped while the batch was being written: its transaction was rolled back (or, if it
                # had committed, the second write counts it as duplicates). It goes first again, to the
                # shutdown drain or to the writer the supervisor starts after a crash, and its durable
                # callers still wait for it.
                self._items.extendleft(reversed(self._inflight))
                self._queued += sum(item.size for item in self._inflight)
                self._inflight = None
            if isinstance(exc, asyncio.CancelledError):
                await self._drain()
            raise

    async def _take(self) -> list[_Put]:
        async with self._cond:
            await self._cond.wait_for(lambda: bool(self._items))
        # Gather for at most max_delay after the previous commit: few fsyncs at low
        # rates (kind to SD cards), large transactions under load.
        deadline = self._last_commit + self.max_delay
        while self._queued < self.max_frames and (remaining := deadline - time.monotonic()) > 0:
            try:
                async with asyncio.timeout(remaining), self._cond:
                    await self._cond.wait_for(lambda: self._queued >= self.max_frames)
            except TimeoutError:
                break
        async with self._cond:
            batch: list[_Put] = []
            taken = 0
            while self._items and (taken < self.max_frames or not batch):
                item = self._items.popleft()
                batch.append(item)
                taken += item.size
            self._queued -= taken
            self._cond.notify_all()
        return batch

    async def _commit(self, batch: list[_Put]) -> None:
        frames: Sequence[TelemetryFrame] = [f for item in batch for f in item.frames]
        events = [e if self.edge_id in (None, e.edge) else e.model_copy(update={"edge": self.edge_id})
                  for item in batch for e in item.events]
        documents = [d for item in batch for d in item.documents]
        positions = {item.position.key: item.position.value for item in batch if item.position is not None}
        self._inflight = batch
        # Alert events of a batch that scoring produced but no commit stored (the writer crashed in between):
        # scoring the batch again raises them no more, so they are carried to this commit.
        alerts, self._inflight_alerts = self._inflight_alerts, []
        if self.enrich is not None:
            frames, scored = await self._enriched(frames)
            alerts += scored
        self._inflight_alerts = alerts
        failing_since: float | None = None
        last_logged = 0.0
        while True:
            try:
                await self.store.append(frames, alerts=alerts, events=events, documents=documents,
                                        positions=positions)
                break
            except QueueFull as exc:
                self._inflight, self._inflight_alerts = None, []
                await self._refuse(batch, exc)
                await self._publish_alerts(alerts)  # the store keeps alerts when it refuses frames
                return
            except StoreError as exc:
                # The frames stay in memory and sources wait: nothing is dropped here.
                now = time.monotonic()
                if failing_since is None:
                    failing_since = now
                    log.error("%s; retrying every %.0f s (frames wait in memory)", exc, _RETRY_DELAY)
                    last_logged = now
                elif now - last_logged >= _LOG_EVERY:
                    log.error("still cannot write the queue after %.0f s: %s", now - failing_since, exc)
                    last_logged = now
                await asyncio.sleep(_RETRY_DELAY)
        self._inflight, self._inflight_alerts = None, []
        if failing_since is not None:
            log.warning("the queue accepts writes again after %.0f s", time.monotonic() - failing_since)
        self._last_commit = time.monotonic()
        self.commits += 1
        self.committed_frames += len(frames)
        for item in batch:
            if item.waiter is not None and not item.waiter.done():
                item.waiter.set_result(None)
        for hook in self._hooks:
            try:
                await hook(frames)
            except Exception:  # noqa: BLE001 - side paths must never stop the writer; data is durable
                log.exception("after-commit step %s failed; continuing", getattr(hook, "__qualname__", hook))
        await self._publish_alerts(alerts)
        for event_hook in self._event_hooks if events else ():
            try:
                await event_hook(events)
            except Exception:  # noqa: BLE001 - as above: the events are stored
                log.exception("after-commit step %s failed; continuing",
                              getattr(event_hook, "__qualname__", event_hook))

    async def _publish_alerts(self, alerts: list[AlertEvent]) -> None:
        for alert_hook in self._alert_hooks if alerts else ():
            try:
                await alert_hook(alerts)
            except Exception:  # noqa: BLE001 - as above: the alerts are stored
                log.exception("after-commit step %s failed; continuing",
                              getattr(alert_hook, "__qualname__", alert_hook))

    async def _enriched(self, frames: Sequence[TelemetryFrame]) -> tuple[Sequence[TelemetryFrame], list[AlertEvent]]:
        """The batch as scored, or as it came if scoring broke: the data goes on either way."""
        assert self.enrich is not None
        try:
            return await self.enrich(frames)
        except Exception:  # noqa: BLE001 - a bug in scoring must not stop storing; it is logged
            self._enrich_log.log(logging.ERROR, "enrich", "scoring a batch failed; storing it unscored",
                                 exc_info=True)
            return frames, []

    async def _refuse(self, batch: list[_Put], exc: QueueFull) -> None:
        """The queue took none of the batch: durable callers are told (they keep their data), the rest counted."""
        unacked = dropped = events = documents = 0
        for item in batch:
            if item.waiter is None:
                dropped += len(item.frames)
                events += len(item.events)
                documents += len(item.documents)
                continue
            unacked += len(item.frames)
            if not item.waiter.done():
                item.waiter.set_exception(QueueFull(str(exc), reason=exc.reason))
        await self.store.refused(exc.reason, unacked=unacked, dropped=dropped, events_dropped=events,
                                 documents_dropped=documents)

    async def _drain(self) -> None:
        """On shutdown: commit what is already queued, within a bound."""
        if not self._items:
            return
        pending = sum(len(item.frames) for item in self._items)
        log.info("shutting down: committing %d queued frames", pending)
        try:
            async with asyncio.timeout(_DRAIN_TIMEOUT):
                while self._items:
                    batch = list(self._items)
                    self._items.clear()
                    self._queued = 0
                    await self._commit(batch)
        except TimeoutError:
            left = sum(len(item.frames) for item in self._items)
            log.error("shutdown: %d frames were still queued in memory and are lost", left)
