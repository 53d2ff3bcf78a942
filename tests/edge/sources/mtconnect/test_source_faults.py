"""The MTConnect source against agents that restart in unusual ways or serve what it cannot take: it never
stays stuck, and it neither loses nor repeats what it could read."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

import httpx
import pytest

from edge.sources.base import Position, QueueFull
from edge.sources.mtconnect.mapping import sensor_key
from edge.sources.mtconnect.source import MTConnectSource
from shared.batch import Document, EdgeEvent
from shared.frame import TelemetryFrame
from tests.edge.sources.mtconnect.sourcesupport import (
    HoldingSink,
    caught_up,
    config,
    expected_value,
    frame_series,
    running,
)
from tests.edge.sources.mtconnect.test_source import (
    DEVICE_IDS,
    FakeStream,
    PlainProxy,
    assert_same_observations,
    replayed_through,
)
from twinsim.mtconnect import AgentSettings, MTConnectAgent


async def test_an_agent_whose_sequences_start_again_under_the_same_instance_is_read_again() -> None:
    async with MTConnectAgent(AgentSettings(speed=200, instance_id=7, paused=True)) as agent:
        sink = HoldingSink()
        async with running(MTConnectSource(config(agent, heartbeat=1.0), sink)) as source:
            await sink.until(caught_up(source, agent))
            agent.resume()
            await sink.until(lambda: (source.health.detail["next_sequence"] or 0) > 300)
            agent.pause()
            await sink.until(caught_up(source, agent))
            agent.restart(instance_id=7)  # a restart within the same second: the reference agent's id is its start
            agent.resume()
            await agent.wait_for(lambda: agent.buffer.next_sequence > 200)
            agent.pause()
            await sink.until(lambda: (source.health.detail["next_sequence"] == agent.buffer.next_sequence
                                      and source.health.detail["gaps"] == 1), timeout=20)
        gaps = [e for e in sink.events if e.kind == "data_gap"]
        assert [(g.details["reason"], g.details["lost"], g.details["to_sequence"]) for g in gaps] == [
            ("agent_restarted", None, 1)]
        want: dict[tuple[str, str], list[object]] = {}
        for rec in agent.produced:  # in the order produced: both runs carry the same instance and sequences
            want.setdefault((DEVICE_IDS[rec.item.device_uuid], sensor_key(rec.item_id)), []).append(
                expected_value(rec))
        assert frame_series(sink.frames) == want  # before and after the reset, each observation once


async def test_an_asset_the_edge_cannot_read_is_skipped_with_a_reason_and_reading_goes_on() -> None:
    async with MTConnectAgent(AgentSettings(speed=200, paused=True)) as agent:
        sink = HoldingSink()
        async with running(MTConnectSource(config(agent), sink)) as source:
            await sink.until(caught_up(source, agent))
            deep = "<a>" * 100 + "</a>" * 100  # nested deeper than the edge reads
            agent.inject([f"2026-01-01T00:00:00Z|@ASSET@|T1|CuttingTool|<CuttingTool assetId=\"T1\">{deep}"
                          "</CuttingTool>",
                          '2026-01-01T00:00:01Z|@ASSET@|T2|CuttingTool|<CuttingTool assetId="T2"/>'])
            agent.resume()
            await agent.replay_done.wait()
            await sink.until(caught_up(source, agent), timeout=20)
        assets = {d.key for d in sink.documents if d.kind == "asset"}
        assert "T2" in assets and "T1" not in assets
        named = [r for r in agent.produced if r.item.type in ("ASSET_CHANGED", "ASSET_REMOVED") and r.value == "T1"]
        assert source.health.detail["assets_skipped"] == len(named) >= 1  # changed, then removed by the replay
        assert_same_observations(agent, sink)


class JumpingProxy(PlainProxy):
    """Passes /sample answers with a nextSequence far past the agent's last sequence once (a buggy agent)."""

    jumped = 0

    async def answer(self, target: httpx.URL) -> tuple[int, bytes, bytes]:
        if not target.path.endswith("/sample") or self.jumped:
            return await super().answer(target)
        answer = await self._http.get(target.path, params=dict(target.params))
        body = answer.content
        if b"<Samples>" in body or b"<Events>" in body:
            self.jumped += 1
            body = re.sub(rb'nextSequence="(\d+)"', lambda m: b'nextSequence="%d"' % (int(m[1]) + 10**9), body)
        return answer.status_code, b"text/xml", body


async def test_a_next_sequence_past_the_agents_last_one_is_not_followed() -> None:
    async with MTConnectAgent(AgentSettings(speed=math.inf, paused=True)) as agent:
        proxy = JumpingProxy(agent)
        _, sink = await replayed_through(proxy, agent, mode="poll", poll_interval=0.05, count=500)
        assert proxy.jumped == 1
        assert [e.details for e in sink.events if e.kind == "data_gap"] == []
        assert_same_observations(agent, sink)


def open_alarms(events: list[EdgeEvent]) -> set[tuple[str, str]]:
    """The alarms an operator sees open after these events, by (item, native code)."""
    out: set[tuple[str, str]] = set()
    for e in events:
        key = (e.details.get("item"), e.details.get("native_code") or "")
        if e.kind == "alarm_opened":
            assert key not in out, f"{key} opened twice"
            out.add(key)
        elif e.kind == "alarm_closed":
            assert key in out, f"{key} closed but not open"
            out.discard(key)
    return out


async def test_an_alarm_that_cleared_while_the_edge_was_down_longer_than_the_buffer_holds_is_closed() -> None:
    async with MTConnectAgent(AgentSettings(speed=math.inf, buffer_size=1024, paused=True)) as agent:
        sink = HoldingSink()
        async with running(MTConnectSource(config(agent), sink)) as source:
            await sink.until(caught_up(source, agent))
            agent.inject("2026-01-01T00:00:00Z|servo_cond|FAULT|2041|1|HIGH|SERVO OVERLOAD\n"
                         "2026-01-01T00:00:00Z|servo_cond|FAULT|3001|1||SERVO TEMPERATURE")
            await sink.until(caught_up(source, agent))
        agent.inject("2026-01-01T00:00:01Z|servo_cond|NORMAL|2041|||")  # the edge is down while one clears
        agent.resume()
        await agent.replay_done.wait()  # and far more than the buffer holds follows
        async with running(MTConnectSource(config(agent), sink)) as source:
            await sink.until(caught_up(source, agent), timeout=60)
        assert [e.details["reason"] for e in sink.events if e.kind == "data_gap"] == ["out_of_range"]
        active = {(item, code) for item, codes in agent.buffer.current.conditions.items() for code in codes if code}
        assert ("servo_cond", "2041") not in active and ("servo_cond", "3001") in active
        assert open_alarms(sink.events) == active


async def test_an_agent_of_the_1_3_schema_is_read_whole_and_its_out_of_range_counted() -> None:
    async with MTConnectAgent(AgentSettings(speed=math.inf, buffer_size=1024, paused=True, version="1.3")) as agent:
        sink = HoldingSink()
        async with running(MTConnectSource(config(agent), sink)) as source:
            await sink.until(caught_up(source, agent))
        stopped_at = json.loads(sink.positions["mtconnect:lathe"])["next"]
        agent.resume()
        await agent.replay_done.wait()
        async with running(MTConnectSource(config(agent), sink)) as source:
            await sink.until(caught_up(source, agent), timeout=60)
        [gap] = [e.details for e in sink.events if e.kind == "data_gap"]
        assert (gap["reason"], gap["lost"]) == ("out_of_range", agent.buffer.next_sequence - 1024 - stopped_at)


class SlowLoris(FakeStream):
    """A /sample stream that trickles one byte of a part that never ends."""

    async def stream(self, writer: asyncio.StreamWriter) -> None:
        writer.write(b"<MTConnectStreams")
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            while True:
                await writer.drain()
                await asyncio.sleep(0.05)
                writer.write(b" ")


async def test_an_agent_that_trickles_an_answer_without_end_is_given_up_with_a_reason() -> None:
    async with MTConnectAgent(AgentSettings(speed=math.inf, paused=True)) as agent:
        async with SlowLoris(agent) as url:
            sink = HoldingSink()
            source = MTConnectSource(config(agent, url=url, heartbeat=0.2, timeout=0.5), sink)
            async with running(source):
                async with asyncio.timeout(20):
                    while source.health.errors < 1:  # noqa: ASYNC110 - the health record has no event
                        await asyncio.sleep(0.02)
                assert source.health.detail["mode"] == "poll"  # the stream was given up as dead ...
            assert source.health.reason == (f"the MTConnect agent at {url} did not finish its answer to /sample "
                                            "within 1.5 s")  # ... and so is the poll


@dataclass
class FullSink(HoldingSink):
    """A queue that reaches its budget (policy drop_newest) when ``full`` is set: every put is refused."""

    full: bool = False

    async def put(self, frames: Sequence[TelemetryFrame], *, durable: bool = False,
                  events: Sequence[EdgeEvent] = (), documents: Sequence[Document] = (),
                  position: Position | None = None) -> None:
        if self.full:
            raise QueueFull("the queue is at its disk budget", reason="disk_budget_newest")
        await super().put(frames, durable=durable, events=events, documents=documents, position=position)


async def test_a_queue_that_keeps_refusing_is_retried_ever_more_slowly() -> None:
    async with MTConnectAgent(AgentSettings(speed=math.inf, paused=True)) as agent:
        sink = FullSink()
        source = MTConnectSource(config(agent), sink)
        async with running(source):
            await sink.until(caught_up(source, agent))
            seeded = len(sink.frames)
            sink.full = True
            agent.resume()
            async with asyncio.timeout(20):
                while source.health.errors < 4:  # noqa: ASYNC110 - the health record has no event
                    await asyncio.sleep(0.01)
                retry_in = (source.health.retry_at or 0) - time.time()
        assert source.health.state.value == "degraded"
        assert source.health.reason == (f"the queue refuses data from MTConnect agent {agent.url}: the queue is at "
                                        "its disk budget")
        assert retry_in > 0.3  # the fourth wait, not the first again: the agent is not asked five times a second
        assert len(sink.frames) == seeded  # nothing of the stream went in


@pytest.mark.parametrize("mode", ["stream", "poll"])
async def test_an_agent_with_a_buffer_smaller_than_count_is_read_whole(mode: str) -> None:
    async with MTConnectAgent(AgentSettings(speed=300, buffer_size=512, paused=True)) as agent:
        sink = HoldingSink()
        async with running(MTConnectSource(config(agent, mode=mode, count=1000, poll_interval=0.05), sink)) as source:
            await sink.until(caught_up(source, agent))
            agent.resume()
            await agent.wait_for(lambda: agent.buffer.next_sequence > 400)
            agent.pause()
            await sink.until(caught_up(source, agent))
        assert [e.details for e in sink.events if e.kind == "data_gap"] == []
        assert source.health.errors == 0
