"""The MTConnect source: an agent's observations as frames, alarm events and documents, none lost or repeated.

A session: ``/probe`` builds the registry (and is synced as ``mtconnect_device`` documents); on the first
start ``/current`` seeds the state; then ``/sample`` streams from the next sequence (multipart, with
``interval`` and ``heartbeat``), or is polled when streaming does not work. Every stored batch carries the
position (the agent's instance, the next sequence, each device's last frame time, the unavailable keys and
the open alarms) in the same transaction as its data, so a kill resumes exactly where the data ends.
Observations are taken once per (instance, sequence).

An agent restart (a new instanceId: the stream is cut or goes silent for two heartbeats, the next /probe
shows it) gives one ``data_gap`` event (reason ``agent_restarted``; what the old instance recorded after
our position is unknown); the new instance is read from its first sequence, or resynced from ``/current``
when its buffer no longer starts at 1. Falling behind the agent's buffer (OUT_OF_RANGE) gives one
``data_gap`` event with the exact number of sequences lost, and reading resumes at the agent's first one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Sequence
from typing import Any

from edge.sources.base import Backoff, FrameSink, Position, QueueFull, Source, SourceState
from edge.sources.mtconnect.client import AgentClient, AgentUnreachable, StreamUnsupported
from edge.sources.mtconnect.config import MTConnectSourceConfig
from edge.sources.mtconnect.mapping import Mapper, Registry, cut
from edge.sources.mtconnect.protocol import AgentErrors, ProtocolError, Streams
from shared.batch import MAX_DOCUMENT_BYTES, Document, EdgeEvent

__all__ = ["MTConnectSource"]

log = logging.getLogger(__name__)

MAX_POSITION = 60 * 1024
MAX_ASSETS_PER_BATCH = 200
QUICK_END = 1.0  # s: a session that ends without an error sooner than this waits a backoff delay before the next


class AgentRefused(Exception):
    """The agent answered with an error document we cannot act on."""


class _Restarted(Exception):
    """The agent's instance changed under a running session."""


class MTConnectSource(Source):
    kind = "mtconnect"
    config: MTConnectSourceConfig

    def __init__(self, config: MTConnectSourceConfig, sink: FrameSink) -> None:
        super().__init__(config, sink)
        self.client = AgentClient(str(config.url), timeout=config.timeout)
        self._pos: dict[str, Any] | None = None  # the last committed position
        self._registry: Registry | None = None
        self._mapper: Mapper | None = None
        self._registry_sent: int | None = None  # the instance whose registry went out as documents
        self._poll_until = 0.0  # monotonic: poll instead of streaming until then
        self._count = config.count  # observations per request: the config's, within the agent's buffer
        # Reset once an answer of /sample was taken, not when /probe answers: a session that fails after it (a
        # queue refusing data, /sample refused) must not ask the agent again and again at the shortest delay.
        self._backoff = Backoff(initial=0.2, maximum=30.0)
        self.health.detail.update({"instance_id": None, "next_sequence": None, "mode": config.mode, "gaps": 0,
                                   "lost": 0, "assets": 0, "assets_skipped": 0,
                                   "observations": 0})

    @property
    def who(self) -> str:
        return f"MTConnect agent {self.client.url}"

    # --- the loop ----------------------------------------------------------------------------------------

    async def run(self) -> None:
        backoff = self._backoff
        started = False
        try:
            if (text := await self.sink.position(self.config.position_key)) is not None:
                self._pos = _read_position(text)
            while True:
                began = time.monotonic()
                try:
                    await self._session(again=started)
                    started = True
                    if time.monotonic() - began < QUICK_END:  # an agent that ends every stream at once: not in a
                        await asyncio.sleep(backoff.next_delay())  # tight loop of /probe and /sample
                    continue  # the stream ended (the agent closed it): look again
                except AgentUnreachable as exc:
                    reason, state = str(exc), SourceState.DISCONNECTED
                except (ProtocolError, AgentRefused) as exc:
                    reason, state = f"{self.who}: {exc}", SourceState.DISCONNECTED
                except QueueFull as exc:
                    reason, state = f"the queue refuses data from {self.who}: {exc}", SourceState.DEGRADED
                started = True
                self.health.errors += 1
                delay = backoff.next_delay()
                self.health.set_state(state, reason, retry_in=delay)
                await asyncio.sleep(delay)
        finally:
            await self.client.close()

    async def _session(self, *, again: bool) -> None:
        probe = await self.client.probe()
        if isinstance(probe, AgentErrors):
            raise AgentRefused(f"the agent refused /probe: {_errors(probe)}")
        try:
            registry = Registry.build(probe, self.config.device_ids)
        except ValueError as exc:
            raise ProtocolError(str(exc)) from None
        if again:
            self.health.reconnects += 1
        self._registry = registry
        # An agent refuses a count above its buffer (OUT_OF_RANGE): ask for at most what it holds.
        self._count = min(self.config.count, probe.header.buffer_size or self.config.count)
        docs = registry.documents(time.time(), self.name) if self._registry_sent != registry.instance_id else []
        await self._resume(registry, docs)
        self._registry_sent = registry.instance_id
        self.health.detail["instance_id"] = registry.instance_id
        self.health.set_state(SourceState.CONNECTED)
        try:
            if self.config.mode == "poll" or time.monotonic() < self._poll_until:
                await self._poll()
            else:
                await self._stream()
        except _Restarted:
            log.info("%s restarted under a running session; reading it again from /probe", self.who)

    async def _resume(self, registry: Registry, docs: list[Document]) -> None:
        """Where to read from: the position, the new instance after a restart, or /current on a first start."""
        pos = self._pos
        if pos is not None and pos["instance"] == registry.instance_id:
            self._mapper = Mapper(registry, self.name, pos)
            if docs:
                await self._commit([], [], docs, pos["next"])
            return
        current = await self.client.current()
        if isinstance(current, AgentErrors):
            raise AgentRefused(f"the agent refused /current: {_errors(current)}")
        if current.header.instance_id != registry.instance_id:
            raise AgentUnreachable(f"{self.who} restarted while the edge connected; trying again")
        self._mapper = mapper = Mapper(registry, self.name, pos)
        events: list[EdgeEvent] = []
        if pos is not None:
            first = current.header.first_sequence or 1
            events.append(self._gap(None, pos["next"], first, registry.instance_id, "agent_restarted",
                                    f"the MTConnect agent at {self.client.url} restarted (instance {pos['instance']} "
                                    f"is now {registry.instance_id}); what it recorded after sequence "
                                    f"{pos['next'] - 1} of the old instance is lost"))
            if first <= 1:  # the new instance's buffer holds all it recorded: read it whole
                await self._commit([], events, docs, first)
                return
        before = mapper.state()
        events += mapper.reconcile(current.observations)  # alarms that ended or began where nothing was read
        out = mapper.map(sorted(current.observations, key=lambda o: o.sequence))
        try:
            assets = await self._assets(out.assets)
            await self._commit(out.frames, events + out.events, docs + assets, current.header.next_sequence or 1,
                               observations=out.observations)
        except BaseException:
            mapper.restore(before)
            raise

    # --- reading -------------------------------------------------------------------------------------------

    async def _stream(self) -> None:
        assert self._pos is not None
        parts = 0
        try:
            async with self.client.stream(self._pos["next"], self._count, self.config.interval,
                                          self.config.heartbeat) as documents:
                self.health.detail["mode"] = "stream"
                async for doc in documents:
                    parts += 1
                    await self._take(doc)
        except StreamUnsupported as exc:
            self._fall_back(str(exc))
        except AgentUnreachable as exc:
            if parts:
                raise
            # Not a single part, not even a heartbeat, while /probe answered: streaming does not get through.
            self._fall_back(str(exc))

    def _fall_back(self, why: str) -> None:
        log.warning("%s: streaming does not work (%s); polling /sample every %g s, trying the stream again in "
                    "%g s", self.who, why, self.config.poll_interval, self.config.stream_retry)
        self._poll_until = time.monotonic() + self.config.stream_retry

    async def _poll(self) -> None:
        self.health.detail["mode"] = "poll"
        while self.config.mode == "poll" or time.monotonic() < self._poll_until:
            assert self._pos is not None
            doc = await self.client.sample(self._pos["next"], self._count)
            full = await self._take(doc) >= self._count
            if not full:
                await asyncio.sleep(self.config.poll_interval)

    async def _take(self, doc: Streams | AgentErrors) -> int:
        """Store one /sample answer with the position after it; returns how many observations it held."""
        assert self._pos is not None and self._mapper is not None and self._registry is not None
        if isinstance(doc, AgentErrors):
            if any(code == "OUT_OF_RANGE" for code, _ in doc.errors):
                await self._out_of_range(_errors(doc))
                return 0
            raise AgentRefused(f"the agent refused /sample: {_errors(doc)}")
        if doc.header.instance_id != self._registry.instance_id:
            raise _Restarted
        start = self._pos["next"]
        fresh = [o for o in doc.observations if o.sequence >= start]  # taken once per (instance, sequence)
        said = doc.header.next_sequence or 0
        if doc.header.last_sequence is not None and said > doc.header.last_sequence + 1:
            # Past what the agent holds: following it would skip whatever comes next (a buggy agent or proxy).
            log.warning("%s said the next sequence is %d while its last is %d; reading on from its last",
                        self.who, said, doc.header.last_sequence)
            said = doc.header.last_sequence + 1
        nxt = max(start, said, fresh[-1].sequence + 1 if fresh else 0)
        if nxt == start:
            self._backoff.reset()
            return 0  # a heartbeat
        mapper = self._mapper
        before = mapper.state()
        try:
            out = mapper.map(fresh)
            assets = await self._assets(out.assets)
            await self._commit(out.frames, out.events, assets, nxt, observations=out.observations)
        except BaseException:
            mapper.restore(before)
            raise
        self._backoff.reset()
        return len(doc.observations)

    async def _out_of_range(self, said: str) -> None:
        """We fell behind the agent's buffer: one gap event with the exact count lost, the alarms set as /current
        has them; resume at its first."""
        assert self._pos is not None and self._registry is not None and self._mapper is not None
        current = await self.client.current()
        if isinstance(current, AgentErrors):
            raise AgentRefused(f"the agent refused /current: {_errors(current)}")
        if current.header.instance_id != self._registry.instance_id:
            raise _Restarted
        start, first = self._pos["next"], current.header.first_sequence
        end = current.header.next_sequence
        if end is not None and start > end and first is not None:
            # Our position is past the agent's end: it started its sequences again without a new instanceId
            # (restarted within the second its id is taken from). Its buffer is new data: read it from its start.
            instance = self._registry.instance_id
            event = self._gap(None, start, first, instance, "agent_restarted",
                              f"the MTConnect agent at {self.client.url} started its sequences again under the "
                              f"same instance {instance} (the edge was at {start}, the agent is at {end}); what "
                              f"it recorded after sequence {start - 1} before that is lost")
            await self._commit([], [event], [], first)
            return
        if first is None or first <= start:
            raise AgentRefused(f"the agent refused /sample from sequence {start} (its buffer holds {first}.."
                               f"{end}): {said}")
        lost = first - start
        before = self._mapper.state()
        alarms = self._mapper.reconcile(current.observations)  # what changed in the part that is lost
        event = self._gap(lost, start, first, self._registry.instance_id, "out_of_range",
                          f"{lost:,} observations from the MTConnect agent at {self.client.url} were lost: the edge "
                          f"fell behind the agent's buffer of {current.header.buffer_size or '?'} (sequences "
                          f"{start}..{first - 1}); reading resumes at {first}")
        try:
            await self._commit([], [event, *alarms], [], first)
        except BaseException:
            self._mapper.restore(before)
            raise

    # --- storing -------------------------------------------------------------------------------------------

    async def _commit(self, frames: Sequence[Any], events: list[EdgeEvent], documents: list[Document], nxt: int,
                      *, observations: int = 0) -> None:
        assert self._mapper is not None and self._registry is not None
        pos = {"instance": self._registry.instance_id, "next": nxt,
               "uuids": [d.uuid for d in self._registry.devices][:50], **self._mapper.state()}
        text = json.dumps(pos, separators=(",", ":"))
        if len(text) > MAX_POSITION:
            pos["unavailable"] = []  # the quality flags are what can go; the sequence and alarms cannot
            text = json.dumps(pos, separators=(",", ":"))
        await self.sink.put(frames, durable=True, events=events, documents=documents,
                            position=Position(self.config.position_key, text))
        self._pos = pos
        self.health.record_success(len(frames), observations)
        detail = self.health.detail
        detail["next_sequence"] = nxt
        detail["observations"] += observations
        detail["assets"] += len([d for d in documents if d.kind == "asset"])

    async def _assets(self, wanted: list[tuple[str, str, str, float]]) -> list[Document]:
        if not self.config.fetch_assets or not wanted:
            return []
        assert self._registry is not None
        if len(wanted) > MAX_ASSETS_PER_BATCH:
            log.warning("%s changed %d assets at once; the first %d are fetched", self.who, len(wanted),
                        MAX_ASSETS_PER_BATCH)
        docs = []
        for asset_id, uuid, element, ts in wanted[:MAX_ASSETS_PER_BATCH]:
            try:
                found = await self.client.asset(asset_id)
            except ProtocolError as exc:
                # Too large or malformed: asking again would get the same answer and hold up all that follows.
                self.health.detail["assets_skipped"] += 1
                log.warning("%s: asset %s is skipped: %s", self.who, asset_id[:80], exc)
                continue
            removed = element == "AssetRemoved"
            if isinstance(found, AgentErrors) or not found:
                if not removed:
                    log.info("%s no longer has asset %s (%s)", self.who, asset_id, _errors(found) if isinstance(
                        found, AgentErrors) else "empty answer")
                    continue
                body = {"asset_type": "Unknown", "asset_id": asset_id, "device_uuid": uuid, "timestamp": "",
                        "xml": "", "removed": True}
            else:
                a = found[0]
                xml = a.xml
                if len(xml.encode()) > MAX_DOCUMENT_BYTES - 8 * 1024:
                    log.warning("asset %s from %s is %d bytes; it is kept without its XML", asset_id, self.who,
                                len(xml.encode()))
                    xml = ""
                body = {"asset_type": a.asset_type or "Unknown", "asset_id": a.asset_id, "device_uuid":
                        a.device_uuid or uuid, "timestamp": a.timestamp, "xml": xml, "removed": a.removed or removed}
            docs.append(Document(ts=ts, kind="asset", key=asset_id[:256], device=self._registry.device_ids.get(uuid),
                                 source=self.name, body=body))
        return docs

    def _gap(self, lost: int | None, start: int, to: int, instance: int, reason: str, message: str) -> EdgeEvent:
        assert self._registry is not None
        self.health.detail["gaps"] += 1
        self.health.detail["lost"] += lost or 0
        log.warning("%s", message)
        device = next(iter(self._registry.device_ids.values()), None)
        return EdgeEvent(ts=time.time(), level="operator", kind="data_gap", edge="edge", device=device,
                         source=self.name, message=cut(message, 500),
                         details={"lost": lost, "from_sequence": start, "to_sequence": to, "instance_id": instance,
                                  "reason": reason})


def _errors(doc: AgentErrors) -> str:
    return "; ".join(f"{code}: {cut(text, 200)}" for code, text in doc.errors[:3])


def _read_position(text: str) -> dict[str, Any] | None:
    try:
        pos = json.loads(text)
        if isinstance(pos, dict) and isinstance(pos.get("instance"), int) and isinstance(pos.get("next"), int):
            return pos
    except ValueError:
        pass
    log.warning("the stored MTConnect position is unreadable; starting from the agent's current state")
    return None
