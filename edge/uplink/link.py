"""The uplink task: sends the durable queue to the cloud and deletes only what the cloud acknowledged.

The planner (``planner``) says which frames go next, the sender (``sender``)
delivers a batch, the limiter (``limiter``) paces the backlog. This module ties
them to the store: it reads batches (the next one while the current one is in
flight), applies acknowledgements and moves what the cloud refuses for good to
the quarantine.

Model alerts waiting in the store go first in every batch, and alone when no
frame waits; they leave the store only through the cloud's
``alerts_acked_through``, or, refused for good one by one, to the quarantine.
Edge events go right behind the alerts, in the same share of the batch (the
planner's alert limit counts both), and are marked synced through the cloud's
``events_acked_through``.

Documents (CNC programs, MTConnect assets and device models) go behind the events and ahead of the frames, at
most ``documents_max`` and ``documents_max_bytes`` per batch (a single larger one goes alone), and leave the store
only through the cloud's ``documents_acked_through``. A document never costs frames their delivery:

- a refused batch that carried documents beside other things is sent again without them; once a batch is
  acknowledged the documents go alone, halved on each refusal down to one, which alone goes to the quarantine;
- a cloud older than this edge refuses any batch with documents (422, ``documents: unknown key``): the documents
  stay queued, the rest goes on without them, and they are tried again every ``DOCUMENTS_HOLD_S`` seconds (a
  WARNING says so once per hold);
- a cloud that takes a batch with documents without acknowledging them keeps them queued (sent again).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import msgpack

from edge.config import UplinkConfig
from edge.store import Store, StoredAlert, StoredEvent, StoredRow, StoreError
from edge.uplink.limiter import BandwidthLimiter
from edge.uplink.planner import BatchPlanner, Read
from edge.uplink.sender import LinkState, QueuedDocument, Sender, SyncRefused, SyncTooLarge, encode_batch
from shared.batch import EdgeHealth, SyncAck
from shared.frame import TelemetryFrame

__all__ = ["Uplink"]

log = logging.getLogger(__name__)
DOCUMENTS_HOLD_S = 600.0  # how long documents wait before a cloud that refused them is asked again


@dataclass(frozen=True, slots=True)
class _Batch:
    """A batch ready to send: its alerts and rows, whether the rows are backlog, the encoded body, the backlog
    split it assumed, and its events."""

    alerts: list[StoredAlert]
    rows: list[StoredRow]
    backlog: bool
    body: bytes
    split: int | None
    events: list[StoredEvent]
    documents: list[QueuedDocument]

    @property
    def urgent(self) -> int:
        """Alerts and events: they go at once, ahead of the frames."""
        return len(self.alerts) + len(self.events)

    @property
    def at_once(self) -> bool:
        """Alerts, events or documents: the batch goes without waiting for more frames or for bandwidth."""
        return bool(self.urgent or self.documents)


class Uplink:
    """One task: ``run()``. ``on_commit`` is the store writer's hook that wakes it."""

    def __init__(
        self,
        config: UplinkConfig,
        store: Store,
        *,
        edge_id: str,
        health: Callable[[], Awaitable[EdgeHealth]],
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.edge_id = edge_id
        self.health = health
        self.transport = transport
        self.link = LinkState()
        self.planner = BatchPlanner(batch_max_frames=config.batch_max_frames,
                                    split_above=2 * config.batch_max_frames)
        self.sender = Sender(config, self.link, on_retry=self.planner.on_retry)
        self.limiter = BandwidthLimiter(config.backlog_bandwidth, time.monotonic())
        self._wake = asyncio.Event()
        self._packer = msgpack.Packer(use_bin_type=True)
        self._last_post = 0.0
        self._unacked_alerts_told = False
        self._unacked_events_told = False
        self._unacked_documents_told = False
        self.documents_limit = config.documents_max  # documents per batch now (halved on refusals)
        # "with": documents ride along; "without": left out until a batch is acknowledged; "alone": the next
        # batch is documents alone. ``_documents_held_until``: a cloud refused them (monotonic time).
        self._documents_mode = "with"
        self._documents_held_until = 0.0

    async def on_commit(self, _frames: Sequence[TelemetryFrame]) -> None:
        self._wake.set()

    def snapshot(self) -> dict[str, Any]:
        return {**self.sender.snapshot(), "backlog_through": self.planner.backlog_through}

    # --- the loop ------------------------------------------------------------

    async def run(self) -> None:
        async with self.sender.client(self.transport) as client:
            log.info("uplink to %s started", self.config.shown_url)
            ahead: _Batch | None = None
            while True:
                if ahead is None or self._worth_waiting(ahead):
                    ahead = await self._prepare()
                self._last_post = time.monotonic()
                if ahead.backlog and not ahead.at_once and not await self._spend(len(ahead.body)):
                    ahead = None
                    continue  # live data arrived while the backlog waited for bandwidth
                ahead = await self._deliver_reading_ahead(client, ahead)

    def _worth_waiting(self, batch: _Batch) -> bool:
        """A short live batch inside ``interval`` of the last post: gather more instead of posting it now."""
        return (len(batch.rows) < self.planner.limit and not batch.backlog and not batch.at_once
                and self._last_post + self.config.interval > time.monotonic())

    async def _prepare(self) -> _Batch:
        alerts, events, docs, rows, backlog = await self._next_batch()
        wait = self._last_post + self.config.interval - time.monotonic()
        if len(rows) < self.planner.limit and not backlog and not alerts and not events and not docs and wait > 0:
            # A trickle of live data: gather for up to `interval` instead of one request per commit.
            # (Alerts, events and documents do not wait.)
            await asyncio.sleep(wait)
            alerts, events, docs, rows, backlog = await self._next_batch()
        return await self._encode(alerts, events, docs, rows, backlog, self.planner.backlog_through)

    async def _encode(self, alerts: list[StoredAlert], events: list[StoredEvent], docs: list[QueuedDocument],
                      rows: list[StoredRow], backlog: bool, split: int | None) -> _Batch:
        health = await self.health()
        body = await asyncio.to_thread(
            encode_batch, self._packer, self.edge_id, rows, health, self.config.compression, alerts, events, docs
        )
        return _Batch(alerts, rows, backlog, body, split, events, docs)

    def _documents_go(self) -> bool:
        return self._documents_mode != "without" and time.monotonic() >= self._documents_held_until

    async def _read_documents(self, after_seq: int = 0) -> list[QueuedDocument]:
        """The oldest documents waiting, within the count and bytes of a batch (at least one)."""
        if not self._documents_go() or not self.store.document_depth:
            return []
        if self.planner.alone is not None and self._documents_mode != "alone":
            return []  # a refused batch is being narrowed down: its parts go without documents
        found = await self.store.read_documents(after_seq=after_seq, limit=self.documents_limit)
        out: list[QueuedDocument] = []
        size = 0
        for doc in found:
            if out and size + len(doc.payload) > self.config.documents_max_bytes:
                break
            out.append(doc)
            size += len(doc.payload)
        return out

    async def _read_alerts(self, after_seq: int = 0) -> list[StoredAlert]:
        if not self.planner.sends_alerts or not self.store.alert_depth:
            return []
        return await self.store.read_alerts(after_seq=after_seq, limit=self.planner.alert_limit)

    async def _read_events(self, alerts: int, after_seq: int = 0) -> list[StoredEvent]:
        """Events behind ``alerts`` alerts, in what is left of the planner's alert limit."""
        room = self.planner.alert_limit - alerts
        if not self.planner.sends_alerts or not self.store.event_depth or room <= 0:
            return []
        return await self.store.read_events(after_seq=after_seq, limit=room)

    async def _read(self, reads: list[Read]) -> tuple[list[StoredRow], bool]:
        """The first non-empty read of ``reads``, and whether it is backlog."""
        if not self.planner.sends_frames:
            return [], False
        for read in reads:
            rows = await self.store.read(after_seq=read.after_seq, through_seq=read.through_seq,
                                         limit=self.planner.limit, max_bytes=self.config.batch_max_bytes)
            if rows:
                return rows, read.backlog
        return [], False

    async def _next_batch(self) -> tuple[list[StoredAlert], list[StoredEvent], list[QueuedDocument],
                                         list[StoredRow], bool]:
        """The next alerts, events, documents and rows to send, waiting for any when the queue is empty."""
        while True:
            self._wake.clear()
            if self._documents_mode == "alone":
                docs = await self._read_documents()
                if docs:
                    return [], [], docs, [], False
                self._documents_mode = "with"
            if self.planner.outage and self.planner.split_due(self.store.depth):
                self.planner.start_backlog(await self.store.newest_seq())
                cap = self.config.backlog_bandwidth
                log.warning(
                    "%d frames are waiting for the cloud; sending new data first and the backlog behind it%s",
                    self.store.depth, f" at up to {cap / 1000:.0f} kB/s" if cap else "",
                )
            alerts = await self._read_alerts()
            events = await self._read_events(len(alerts))
            docs = await self._read_documents()
            rows, backlog = await self._read(self.planner.reads())
            if rows or alerts or events or docs:
                return alerts, events, docs, rows, backlog
            if self._documents_mode == "without" and self.store.document_depth:
                self._documents_mode = "alone"  # nothing else waits: the documents go alone now
                continue
            if self.planner.alone is not None:
                self.planner.nothing_alone()
                continue
            if self.planner.backlog_through is not None:
                log.info("backlog delivered; the uplink is back to sending frames as they come")
                self.planner.backlog_delivered()
                continue
            self.link.set("idle")
            held = self._documents_held_until - time.monotonic()
            if held > 0 and self.store.document_depth:
                with contextlib.suppress(TimeoutError):  # ask the cloud about the documents again then
                    async with asyncio.timeout(held):
                        await self._wake.wait()
                continue
            await self._wake.wait()

    async def _spend(self, size: int) -> bool:
        """Wait for the backlog's bandwidth budget; False when live data should go first."""
        while wait := self.limiter.wait_for(size, time.monotonic()):
            self._wake.clear()
            try:
                async with asyncio.timeout(wait):
                    await self._wake.wait()
                return False
            except TimeoutError:
                continue
        return True

    # --- one batch, and the next one read meanwhile --------------------------

    async def _deliver_reading_ahead(self, client: httpx.AsyncClient, batch: _Batch) -> _Batch | None:
        """Deliver a batch while the next one is read and encoded; the next one if it is still the one to send.

        Batches still go one at a time: this only takes the edge's own work off the time
        each batch spends in flight. The batch read ahead is dropped when anything it
        assumed changed (a retry, a refusal, live data arriving during a backlog).
        """
        task = asyncio.create_task(self._read_ahead(batch), name="uplink-read-ahead")
        try:
            acked = await self._deliver(client, batch)
            ahead = await task
        finally:
            if not task.done():
                task.cancel()
                await asyncio.wait([task])
        if ahead is None or not acked or self.planner.outage or self.planner.backlog_through != ahead.split:
            return None
        if ahead.backlog and self._wake.is_set():
            return None  # frames were committed meanwhile: live data goes before the backlog
        return ahead

    async def _read_ahead(self, sent: _Batch) -> _Batch | None:
        """What ``_next_batch`` will return once ``sent`` is acknowledged (and deleted), or None if unsure."""
        if self.planner.outage or self.planner.alone is not None or self._documents_mode != "with":
            return None
        split = self.planner.backlog_through
        self._wake.clear()
        try:
            alerts = await self._read_alerts(after_seq=sent.alerts[-1].seq if sent.alerts else 0)
            events = await self._read_events(len(alerts), after_seq=sent.events[-1].seq if sent.events else 0)
            docs = await self._read_documents(after_seq=sent.documents[-1].seq if sent.documents else 0)
            skip = (sent.rows[0].seq, sent.rows[-1].seq) if sent.rows else None
            rows, backlog = await self._read(self.planner.reads(skip=skip))
            if rows or alerts or events or docs:
                return await self._encode(alerts, events, docs, rows, backlog, split)
            return None
        except StoreError as exc:
            log.debug("reading the next batch ahead failed (%s); it is read again after this one", exc)
            return None

    async def _deliver(self, client: httpx.AsyncClient, batch: _Batch) -> bool:
        """Send one batch until the cloud answers for it; True when it acknowledged every alert, event and row."""
        alerts, events, rows = batch.alerts, batch.events, batch.rows
        try:
            ack = await self.sender.deliver(client, batch.body)
        except (SyncTooLarge, SyncRefused) as exc:
            if batch.documents:
                await self._documents_refused(batch, exc)
                return False
            if self.planner.on_batch_refused(batch.urgent, len(rows)):
                # Narrow down until the refusal is down to one alert, event or frame: one damaged
                # item must not send its whole batch to the quarantine.
                log.warning("the cloud refused a batch of %d alerts, %d events and %d frames (%s); retrying with %s",
                            len(alerts), len(events), len(rows), exc, self._narrowed(alerts_only=not rows))
                return False
            if alerts:
                await self._quarantine_alert(alerts[0], str(exc))
            elif events:
                await self._quarantine_event(events[0], str(exc))
            else:
                await self._quarantine(rows, str(exc))
            self.planner.on_quarantined(batch.urgent, len(rows))
            return False
        await self._apply(batch, ack)
        frames_done = not rows or (ack.acked_through is not None and ack.acked_through >= rows[-1].seq)
        alerts_done = not alerts or (ack.alerts_acked_through is not None
                                     and ack.alerts_acked_through >= alerts[-1].seq)
        events_done = not events or (ack.events_acked_through is not None
                                     and ack.events_acked_through >= events[-1].seq)
        docs_done = not batch.documents or (ack.documents_acked_through is not None
                                            and ack.documents_acked_through >= batch.documents[-1].seq)
        return frames_done and alerts_done and events_done and docs_done

    async def _documents_refused(self, batch: _Batch, exc: SyncTooLarge | SyncRefused) -> None:
        """A refused batch that carried documents: never lose its frames, alerts and events over them."""
        docs = batch.documents
        if isinstance(exc, SyncRefused) and "documents" in exc.paths:
            self._documents_held_until = time.monotonic() + DOCUMENTS_HOLD_S
            self._documents_mode = "with"
            log.warning("the cloud at %s does not take documents (%s): is it older than this edge? %d documents "
                        "stay queued and are offered again in %.0f min; frames, alerts and events go on without "
                        "them", self.config.shown_url, exc, self.store.document_depth, DOCUMENTS_HOLD_S / 60)
            return
        if batch.urgent or batch.rows:
            self._documents_mode = "without"
            log.warning("the cloud refused a batch of %d alerts, %d events, %d documents and %d frames (%s); "
                        "retrying without the documents, which go alone afterwards", len(batch.alerts),
                        len(batch.events), len(docs), len(batch.rows), exc)
            return
        if len(docs) > 1:
            self.documents_limit = max(1, len(docs) // 2)
            log.warning("the cloud refused a batch of %d documents (%s); retrying with %d at a time", len(docs), exc,
                        self.documents_limit)
            return
        log.error("the cloud refused document seq %d for good (%s); moved to the quarantine", docs[0].seq, exc)
        await self.store.quarantine("cloud-document", str(exc), docs[0].payload)
        await self.store.ack_documents(docs[0].seq)
        self.link.documents_quarantined += 1
        self._documents_mode = "with"

    def _narrowed(self, *, alerts_only: bool) -> str:
        if self.planner.alone == "alerts" or alerts_only:
            return f"alerts and events alone, {self.planner.alert_limit} at a time"
        return f"{self.planner.limit} frames at a time"

    async def _apply(self, batch: _Batch, ack: SyncAck) -> None:
        rows = batch.rows
        by_seq = {row.seq: row for row in rows}
        for rejection in ack.rejected:
            row = by_seq.get(rejection.seq)
            if row is not None:
                await self.store.quarantine(f"cloud:{row.device_id}", rejection.reason, row.payload)
                self.link.quarantined += 1
        if ack.rejected:
            log.warning("the cloud refused %d of %d frames (first: seq %d, %s); they are in the quarantine",
                        len(ack.rejected), len(rows), ack.rejected[0].seq, ack.rejected[0].reason)
        if rows and ack.acked_through is not None:
            delivered = sum(1 for r in rows if r.seq <= ack.acked_through)
            await self.store.ack(ack.acked_through, from_seq=rows[0].seq, sent=delivered)
            self.link.frames_sent += delivered
        await self._apply_alerts(batch.alerts, ack)
        await self._apply_events(batch.events, ack)
        await self._apply_documents(batch.documents, ack)
        self.link.batches += 1
        self.planner.on_batch_acknowledged(batch.urgent, len(rows))

    async def _apply_alerts(self, alerts: list[StoredAlert], ack: SyncAck) -> None:
        """Delete the alerts the cloud stored; alerts it did not acknowledge stay and go again."""
        if not alerts:
            return
        if ack.alerts_acked_through is None:
            if not self._unacked_alerts_told:
                log.warning("the cloud at %s took a batch with %d model alerts but did not acknowledge them; they "
                            "stay queued and are sent again (is the cloud older than this edge?)",
                            self.config.shown_url, len(alerts))
                self._unacked_alerts_told = True
            return
        # Never past what this batch carried: alerts stored meanwhile were not sent yet.
        through = min(ack.alerts_acked_through, alerts[-1].seq)
        await self.store.ack_alerts(through)
        self.link.alerts_sent += sum(1 for a in alerts if a.seq <= through)

    async def _apply_events(self, events: list[StoredEvent], ack: SyncAck) -> None:
        """Mark the events the cloud stored as synced; events it did not acknowledge go again."""
        if not events:
            return
        if ack.events_acked_through is None:
            if not self._unacked_events_told:
                log.warning("the cloud at %s took a batch with %d edge events but did not acknowledge them; they "
                            "stay queued and are sent again (is the cloud older than this edge?)",
                            self.config.shown_url, len(events))
                self._unacked_events_told = True
            return
        through = min(ack.events_acked_through, events[-1].seq)
        await self.store.ack_events(through)
        self.link.events_sent += sum(1 for e in events if e.seq <= through)

    async def _apply_documents(self, docs: list[QueuedDocument], ack: SyncAck) -> None:
        """Delete the documents the cloud stored; documents it did not acknowledge stay and go again."""
        if self._documents_mode == "without":
            self._documents_mode = "alone"  # the rest went through without them: now the documents alone
        elif docs and self._documents_mode == "alone":
            self._documents_mode = "with"
        if not docs:
            return
        if ack.documents_acked_through is None:
            if not self._unacked_documents_told:
                log.warning("the cloud at %s took a batch with %d documents but did not acknowledge them; they stay "
                            "queued and are sent again (is the cloud older than this edge?)",
                            self.config.shown_url, len(docs))
                self._unacked_documents_told = True
            return
        through = min(ack.documents_acked_through, docs[-1].seq)
        await self.store.ack_documents(through)
        self.link.documents_sent += sum(1 for d in docs if d.seq <= through)
        self.documents_limit = min(self.config.documents_max, self.documents_limit * 2)

    async def _quarantine_event(self, event: StoredEvent, reason: str) -> None:
        log.error("the cloud refused edge event seq %d for good (%s); moved to the quarantine", event.seq, reason)
        await self.store.quarantine("cloud-event", reason, event.payload)
        await self.store.ack_events(event.seq)
        self.link.events_quarantined += 1

    async def _quarantine_alert(self, alert: StoredAlert, reason: str) -> None:
        log.error("the cloud refused model alert seq %d of %s for good (%s); moved to the quarantine",
                  alert.seq, alert.device_id, reason)
        await self.store.quarantine(f"cloud-alert:{alert.device_id}", reason, alert.payload)
        await self.store.ack_alerts(alert.seq)
        self.link.alerts_quarantined += 1

    async def _quarantine(self, rows: list[StoredRow], reason: str) -> None:
        log.error("the cloud refused frame seq %d of %s for good (%s); moved to the quarantine",
                  rows[0].seq, rows[0].device_id, reason)
        for row in rows:
            await self.store.quarantine(f"cloud:{row.device_id}", reason, row.payload)
        await self.store.ack(rows[-1].seq, from_seq=rows[0].seq)
        self.link.quarantined += len(rows)
