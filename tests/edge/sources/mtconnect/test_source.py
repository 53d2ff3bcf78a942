"""The MTConnect source against the simulator's agent: every observation once, gaps counted exactly, alarms
paired, restarts, stalls and disconnects survived."""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

import httpx
import pytest

from edge.sources.mtconnect.config import MTConnectSourceConfig
from edge.sources.mtconnect.source import MTConnectSource
from tests.edge.sources.mtconnect.sourcesupport import (
    HoldingSink,
    agent_series,
    caught_up,
    config,
    frame_series,
    replay_whole,
    running,
)
from twinsim.mtconnect import AgentSettings, MTConnectAgent

DEVICE_IDS = {"OKUMA.123456": "OKUMA", "Mazak": "Mazak"}


def assert_same_observations(agent: MTConnectAgent, sink: HoldingSink) -> None:
    want = agent_series(agent.produced, DEVICE_IDS)
    got = frame_series(sink.frames)
    assert got.keys() == want.keys()
    for key in want:
        assert got[key] == want[key], key
    assert sum(map(len, got.values())) == len(agent.produced)


async def test_a_fast_replay_gives_frames_equal_to_the_agents_observations() -> None:
    async with MTConnectAgent(AgentSettings(speed=math.inf, paused=True)) as agent:
        sink = HoldingSink()
        async with running(MTConnectSource(config(agent), sink)) as source:
            await replay_whole(agent, source, sink)
        assert_same_observations(agent, sink)
        # no two frames of a device share a time; each says the highest sequence it covers
        assert len({(f.device_id, f.ts) for f in sink.frames}) == len(sink.frames)
        assert max(f.metrics["mtconnect.seq"] for f in sink.frames) == agent.buffer.next_sequence - 1
        # the registry as documents, with units; the tool assets fetched
        models = {d.key: d.body for d in sink.documents if d.kind == "mtconnect_device"}
        okuma = {i["id"]: i for i in models["OKUMA.123456"]["items"]}
        assert okuma["LX1actm"]["category"] == "SAMPLE" and okuma["LX1actm"]["units"] == "MILLIMETER"
        assert models["OKUMA.123456"]["device_id"] == "OKUMA"
        assets = [d for d in sink.documents if d.kind == "asset"]
        changed = [r for r in agent.produced if r.item.type == "ASSET_CHANGED" and r.value]
        removed = [r for r in agent.produced if r.item.type == "ASSET_REMOVED" and r.value]
        assert len(assets) == len(changed) + len(removed) and changed
        # an asset fetched after a later removal already says so: at least every removal is a removed one
        assert sum(d.body["removed"] for d in assets) >= len(removed)
        assert assets[0].body["asset_type"] == "CuttingTool" and assets[0].body["xml"].startswith("<CuttingTool")
        assert not sink.events  # no gap, no alarm in this recording


async def test_a_kill_resumes_from_the_committed_position_without_gap_or_duplicate() -> None:
    async with MTConnectAgent(AgentSettings(speed=math.inf, paused=True)) as agent:
        sink = HoldingSink()
        for round_ in range(4):
            async with running(MTConnectSource(config(agent), sink)) as source:
                await sink.until(lambda: source.health.detail["next_sequence"] is not None)
                if round_ == 0:
                    agent.resume()
                else:
                    await sink.until(lambda n=sink.puts: sink.puts > n + 3)
        async with running(MTConnectSource(config(agent), sink)) as source:
            await agent.replay_done.wait()
            await sink.until(caught_up(source, agent), timeout=60)
        assert_same_observations(agent, sink)
        assert not sink.events


@pytest.mark.parametrize("restart", [
    {"resend": True},  # the connection cut, the adapter sends its whole state again
    {"keep_clients": True},  # the stream goes on: the new instance seen in a part's header
], ids=["connection-cut", "seen-in-a-part"])
async def test_an_agent_restart_gives_one_gap_event_and_a_resync_within_two_heartbeats(restart: dict[str, bool]
                                                                                         ) -> None:
    async with MTConnectAgent(AgentSettings(speed=200, instance_id=7, paused=True)) as agent:
        sink = HoldingSink()
        # A heartbeat long enough that a loaded machine's scheduling is not what is measured (a quiet one sees the
        # new instance within 0.3 s): the rule is two heartbeats, whatever their length.
        async with running(MTConnectSource(config(agent, heartbeat=5.0), sink)) as source:
            await sink.until(caught_up(source, agent))
            agent.resume()
            await sink.until(lambda: (source.health.detail["next_sequence"] or 0) > 300)
            agent.restart(**restart)
            async with asyncio.timeout(2 * 5.0):  # two heartbeats
                await sink.until(lambda: source.health.detail["instance_id"] == 8)
            await sink.until(lambda: (source.health.detail["next_sequence"] or 0) > 100)
            agent.pause()
            await sink.until(caught_up(source, agent))
        gaps = [e for e in sink.events if e.kind == "data_gap"]
        assert len(gaps) == 1
        assert gaps[0].details["reason"] == "agent_restarted" and gaps[0].details["instance_id"] == 8
        assert gaps[0].details["to_sequence"] == 1 and gaps[0].details["lost"] is None
        assert json.loads(sink.positions["mtconnect:lathe"])["instance"] == 8
        assert_same_observations(agent, sink)  # both instances, all of each


async def test_falling_behind_a_1024_entry_buffer_counts_exactly_the_lost_sequences() -> None:
    async with MTConnectAgent(AgentSettings(speed=math.inf, buffer_size=1024, paused=True)) as agent:
        sink = HoldingSink()
        async with running(MTConnectSource(config(agent), sink)) as source:
            await sink.until(caught_up(source, agent))
            sink.hold.clear()  # the client stops taking data
            agent.resume()
            await agent.replay_done.wait()
            sink.hold.set()
            await sink.until(caught_up(source, agent), timeout=60)
        gaps = [e for e in sink.events if e.kind == "data_gap"]
        assert len(gaps) == 1
        gap = gaps[0].details
        assert gap["reason"] == "out_of_range"
        assert gap["lost"] == gap["to_sequence"] - gap["from_sequence"] > 1000
        lost = range(gap["from_sequence"], gap["to_sequence"])
        kept = [r for r in agent.produced if r.sequence not in lost]
        assert len(kept) + gap["lost"] == len(agent.produced)
        want = agent_series(kept, DEVICE_IDS)
        got = frame_series(sink.frames)
        assert {k: v for k, v in got.items() if v} == {k: v for k, v in want.items() if v}


SCRIPT = """\
2026-01-01T00:00:00Z|Lsystem|FAULT|2041|1|HIGH|SPINDLE OVERLOAD
2026-01-01T00:00:01Z|Lsystem|WARNING|3001|2||LOW COOLANT
2026-01-01T00:00:02Z|Lsystem|NORMAL|2041|||
2026-01-01T00:00:03Z|servo_cond|FAULT|77|1||SERVO ALARM X
2026-01-01T00:00:04Z|Lsystem|FAULT|4000|1||DOOR OPEN
2026-01-01T00:00:05Z|Lsystem|NORMAL||||
2026-01-01T00:00:06Z|servo_cond|UNAVAILABLE||||
"""


async def test_a_scripted_condition_sequence_gives_matching_alarm_open_and_close_events() -> None:
    async with MTConnectAgent(AgentSettings(speed=math.inf, paused=True)) as agent:
        sink = HoldingSink()
        async with running(MTConnectSource(config(agent), sink)) as source:
            await sink.until(caught_up(source, agent))
            agent.inject(SCRIPT)
            await sink.until(caught_up(source, agent))
        alarms = [(e.kind, e.details["item"], e.details["native_code"]) for e in sink.events]
        assert alarms == [
            ("alarm_opened", "Lsystem", "2041"), ("alarm_opened", "Lsystem", "3001"),
            ("alarm_closed", "Lsystem", "2041"), ("alarm_opened", "servo_cond", "77"),
            ("alarm_opened", "Lsystem", "4000"), ("alarm_closed", "Lsystem", "3001"),
            ("alarm_closed", "Lsystem", "4000"), ("alarm_closed", "servo_cond", "77"),
        ]
        opened = sink.events[0]
        assert opened.level == "operator" and opened.device == "OKUMA" and opened.source == "lathe"
        assert opened.message == "Alarm 2041 on OKUMA (SYSTEM, FAULT): SPINDLE OVERLOAD"
        assert opened.details["severity"] == "FAULT" and opened.details["native_severity"] == "1"
        assert opened.details["qualifier"] == "HIGH"
        assert_same_observations(agent, sink)


@pytest.mark.parametrize("fault", ["stall", "disconnect"])
async def test_stalls_and_disconnects_recover_without_loss(fault: str) -> None:
    # The recording lasts about 5 s at this speed: on a loaded machine the three rounds of stalls and reconnections
    # can take longer, and a round would then wait for data that never comes. Looped, it goes on until paused.
    async with MTConnectAgent(AgentSettings(speed=300, paused=True, loop=True)) as agent:
        sink = HoldingSink()
        async with running(MTConnectSource(config(agent, heartbeat=0.2, timeout=0.5), sink)) as source:
            await sink.until(caught_up(source, agent))
            agent.resume()
            cut = 0
            for round_ in range(3):
                await sink.until(lambda n=sink.puts: sink.puts > n + 5)
                if fault == "stall":
                    agent.stall(1.0)  # silent for five heartbeats
                    await sink.until(lambda r=round_: source.health.reconnects > r, timeout=10)
                else:
                    cut += agent.disconnect_clients()
            assert fault == "stall" or cut >= 1
            agent.pause()
            await sink.until(caught_up(source, agent), timeout=30)
            assert source.health.reconnects >= 1
        assert_same_observations(agent, sink)
        assert not [e for e in sink.events if e.kind == "data_gap"]


async def test_polling_reads_the_same_observations() -> None:
    async with MTConnectAgent(AgentSettings(speed=math.inf, paused=True)) as agent:
        sink = HoldingSink()
        async with running(MTConnectSource(config(agent, mode="poll", poll_interval=0.05), sink)) as source:
            await replay_whole(agent, source, sink)
            assert source.health.detail["mode"] == "poll"
        assert_same_observations(agent, sink)


class PlainProxy:
    """An HTTP proxy in front of the agent that does not pass streams: it drops ``interval``, so every /sample
    gets one plain document (what a buffering proxy or an agent without streaming gives)."""

    def __init__(self, agent: MTConnectAgent) -> None:
        self.agent = agent
        self.samples = 0
        self._server: asyncio.Server | None = None
        self._http = httpx.AsyncClient(base_url=agent.url)

    async def __aenter__(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
        await self._http.aclose()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._serve_head((await reader.readuntil(b"\r\n\r\n")).decode(), writer)

    async def _serve_head(self, head: str, writer: asyncio.StreamWriter) -> None:
        try:
            status, content_type, body = await self.answer(httpx.URL(head.split(" ")[1]))
            writer.write(b"HTTP/1.1 %d X\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                         % (status, content_type, len(body)) + body)
            await writer.drain()
        finally:
            writer.close()

    async def fetch(self, target: httpx.URL) -> httpx.Response:
        """The agent's plain answer to ``target`` (a stream's ``interval`` and ``heartbeat`` dropped)."""
        params = {k: v for k, v in target.params.items() if k not in ("interval", "heartbeat")}
        return await self._http.get(target.path, params=params)

    async def answer(self, target: httpx.URL) -> tuple[int, bytes, bytes]:
        """(status, content type, body) of the proxy's answer to ``target``."""
        self.samples += target.path.endswith("/sample")
        answer = await self.fetch(target)
        return answer.status_code, b"text/xml", answer.content


async def replayed_through(proxy: PlainProxy, agent: MTConnectAgent, **settings: Any
                           ) -> tuple[MTConnectSource, HoldingSink]:
    """The whole recording replayed to a source (with ``settings``) that reads the agent through ``proxy``; the
    source, stopped, and what it stored."""
    async with proxy as url:
        sink = HoldingSink()
        source = MTConnectSource(config(agent, url=url, **settings), sink)
        async with running(source):
            await replay_whole(agent, source, sink)
    return source, sink


async def test_a_stream_that_does_not_get_through_falls_back_to_polling() -> None:
    async with MTConnectAgent(AgentSettings(speed=math.inf, paused=True)) as agent:
        proxy = PlainProxy(agent)
        source, sink = await replayed_through(proxy, agent, poll_interval=0.05)
        assert source.health.detail["mode"] == "poll"
        assert proxy.samples > 3
        assert_same_observations(agent, sink)


class OnePartProxy(PlainProxy):
    """A proxy that answers every streamed /sample with one part and then ends the stream."""

    async def answer(self, target: httpx.URL) -> tuple[int, bytes, bytes]:
        if not (target.path.endswith("/sample") and "interval" in target.params):
            return await super().answer(target)
        self.samples += 1
        doc = (await self.fetch(target)).content
        body = b"--b\r\nContent-type: text/xml\r\nContent-length: %d\r\n\r\n%s\r\n--b--\r\n" % (len(doc), doc)
        return 200, b"multipart/x-mixed-replace;boundary=b", body


async def test_an_agent_that_ends_every_stream_at_once_is_asked_again_after_a_delay(
        monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []
    sleep = asyncio.sleep

    async def recorded(delay: float, *args: object) -> None:
        waits.append(delay)
        await sleep(delay, *args)

    monkeypatch.setattr("edge.sources.mtconnect.source.asyncio.sleep", recorded)
    # Every session here ends after one part; on a loaded machine one may take longer than the 1 s that counts as
    # quick, and would then rightly not wait. The rule is what is tested, not the machine's speed.
    monkeypatch.setattr("edge.sources.mtconnect.source.QUICK_END", 3600.0)
    async with MTConnectAgent(AgentSettings(speed=math.inf, paused=True)) as agent:
        proxy = OnePartProxy(agent)
        source, sink = await replayed_through(proxy, agent, count=500)
        assert proxy.samples > 3  # each stream gave one part of 500 and ended
        assert len([w for w in waits if w > 0]) >= proxy.samples - 1  # a pause before each next session
        assert source.health.errors == 0
        assert_same_observations(agent, sink)


async def test_a_web_page_instead_of_an_agent_is_a_plain_reason_not_a_crash() -> None:
    async def page(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 13\r\n\r\n<html></html>")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(page, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    sink = HoldingSink()
    source = MTConnectSource(MTConnectSourceConfig.model_validate({"kind": "mtconnect", "name": "lathe", "url": url}),
                             sink)
    async with running(source):
        async with asyncio.timeout(10):
            while source.health.state.value != "disconnected":  # noqa: ASYNC110 - the health record has no event
                await asyncio.sleep(0.02)
    server.close()
    await server.wait_closed()
    assert source.health.reason == (f"MTConnect agent {url}: not an MTConnect document: root <html> has no namespace "
                                    "(expected urn:mtconnect.org:MTConnect...:1.x or 2.x)")
    assert not sink.frames and not sink.positions


async def test_an_edge_down_longer_than_the_buffer_holds_counts_exactly_what_it_missed() -> None:
    async with MTConnectAgent(AgentSettings(speed=math.inf, buffer_size=1024, paused=True)) as agent:
        sink = HoldingSink()
        async with running(MTConnectSource(config(agent), sink)) as source:
            await sink.until(caught_up(source, agent))
        stopped_at = json.loads(sink.positions["mtconnect:lathe"])["next"]
        agent.resume()  # the edge is down while the agent records far more than its buffer holds
        await agent.replay_done.wait()
        async with running(MTConnectSource(config(agent), sink)) as source:
            await sink.until(caught_up(source, agent), timeout=60)
        [gap] = [e.details for e in sink.events if e.kind == "data_gap"]
        first = agent.buffer.next_sequence - 1024
        assert (gap["reason"], gap["from_sequence"], gap["to_sequence"]) == ("out_of_range", stopped_at, first)
        assert gap["lost"] == first - stopped_at
        kept = [r for r in agent.produced if not stopped_at <= r.sequence < first]
        assert frame_series(sink.frames) == agent_series(kept, DEVICE_IDS)


LAUGHS = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;">'
          b'<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;">]><MTConnectStreams>&lol3;</MTConnectStreams>')


class FakeStream(PlainProxy):
    """The agent's probe and current, and a /sample stream of the test's own making (``stream``)."""

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        if "/sample" not in head.split(" ")[1]:
            await super()._serve_head(head, writer)
            return
        try:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace;boundary=b0\r\n"
                         b"Connection: close\r\n\r\n--b0\r\nContent-type: text/xml\r\n\r\n")
            await self.stream(writer)
        finally:
            writer.close()

    async def stream(self, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError


class HostileStream(FakeStream):
    """A hostile /sample stream: a billion-laughs document in a part."""

    async def stream(self, writer: asyncio.StreamWriter) -> None:
        writer.write(LAUGHS + b"\r\n--b0\r\n")
        await writer.drain()


async def test_a_hostile_stream_is_refused_with_a_reason_and_never_stored() -> None:
    async with MTConnectAgent(AgentSettings(speed=math.inf, paused=True)) as agent:
        async with HostileStream(agent) as url:
            sink = HoldingSink()
            source = MTConnectSource(config(agent, url=url), sink)
            async with running(source):
                async with asyncio.timeout(10):
                    while source.health.errors < 2:  # noqa: ASYNC110 - the health record has no event
                        await asyncio.sleep(0.02)
            assert "declares a DTD or entities" in (source.health.reason or "")
            assert source.health.state.value == "disconnected"
            before = json.loads(sink.positions["mtconnect:lathe"])["next"]
            assert before == agent.buffer.next_sequence  # the seed from /current; nothing of the stream
