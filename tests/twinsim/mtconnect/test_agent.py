"""The simulator's MTConnect agent, seen from outside (httpx and the edge's parsers): the replay streamed
completely, strictly increasing timestamps, the buffer's errors, restarts, stalls, disconnects, pause,
conditions and assets."""

from __future__ import annotations

import asyncio
import math
from collections import defaultdict
from collections.abc import AsyncIterator

import httpx
import pytest

from edge.sources.mtconnect.protocol import AgentErrors, Probe, Streams, parse_assets, parse_probe, parse_streams
from tests.twinsim.mtconnect.streaming import expected, observed, read_stream
from twinsim.mtconnect import AgentSettings, MTConnectAgent

FAST = AgentSettings(speed=math.inf, paused=True)
N_ITEMS = 102 + 118  # OKUMA and Mazak, each with ASSET_CHANGED and ASSET_REMOVED added


@pytest.fixture
async def agent() -> AsyncIterator[MTConnectAgent]:
    async with MTConnectAgent(AgentSettings(speed=math.inf, paused=True, instance_id=42)) as a:
        yield a


@pytest.fixture
async def client(agent: MTConnectAgent) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=agent.url, timeout=30) as c:
        yield c


async def _replay_all(agent: MTConnectAgent) -> None:
    agent.resume()
    async with asyncio.timeout(60):
        await agent.replay_done.wait()


def _streams(response: httpx.Response) -> Streams:
    result = parse_streams(response.content)
    assert isinstance(result, Streams), result
    return result


def _errors(response: httpx.Response) -> AgentErrors:
    result = parse_streams(response.content)
    assert isinstance(result, AgentErrors), result
    return result


# --- probe and the full replay ---


async def test_probe_serves_the_okuma_model_with_its_asset_items(agent: MTConnectAgent,
                                                                 client: httpx.AsyncClient) -> None:
    probe = parse_probe((await client.get("/probe")).content)
    assert isinstance(probe, Probe)
    assert probe.header.instance_id == 42 and probe.header.buffer_size == 131072
    assert [(d.name, d.uuid, len(d.items)) for d in probe.devices] == [("OKUMA", "OKUMA.123456", 102),
                                                                        ("Mazak", "Mazak", 118)]
    okuma = {i.id: i for i in probe.devices[0].items}
    assert okuma["OKUMA.123456_asset_chg"].type == "ASSET_CHANGED"
    assert (okuma["LS1speed"].category, okuma["LS1speed"].units) == ("SAMPLE", "REVOLUTION/MINUTE")
    only = parse_probe((await client.get("/OKUMA/probe")).content)
    assert isinstance(only, Probe) and [d.name for d in only.devices] == ["OKUMA"]


async def test_a_fast_replay_streamed_from_sequence_1_gives_every_observation_exactly_once(
        agent: MTConnectAgent, client: httpx.AsyncClient) -> None:
    def done(docs: list[Streams | AgentErrors]) -> bool:
        last = docs[-1]
        return agent.replay_done.is_set() and isinstance(last, Streams) and bool(last.observations) and \
            last.observations[-1].sequence == agent.buffer.last_sequence

    stream = asyncio.create_task(read_stream(client, "/sample", {"from": 1, "interval": 0, "count": 1000}, done))
    await _replay_all(agent)
    async with asyncio.timeout(60):
        docs = await stream
    got = observed(docs)
    assert got == expected(agent.produced)
    assert [seq for _, seq, _, _ in got] == list(range(1, agent.buffer.next_sequence))
    assert len(got) == 25_700  # the recording's observations after duplicates are dropped, with the 220 seeds
    assert all(isinstance(d, Streams) and d.header.instance_id == 42 for d in docs)


async def test_every_observation_of_an_item_has_its_own_later_timestamp(agent: MTConnectAgent) -> None:
    await _replay_all(agent)
    last: dict[str, float] = {}
    previous = 0
    for rec in agent.produced:
        assert rec.timestamp_us >= previous  # never backwards, in sequence order
        previous = rec.timestamp_us
        assert rec.timestamp > last.get(rec.item_id, 0.0), rec
        last[rec.item_id] = rec.timestamp
    lines = defaultdict(set)
    for rec in agent.produced:
        lines[rec.timestamp_us].add(rec.item_id)
    assert sum(len(items) for items in lines.values()) == len(agent.produced)  # no item twice at one time


async def test_replayed_timestamps_keep_the_recorded_program_durations(agent: MTConnectAgent) -> None:
    await _replay_all(agent)
    runs, started = [], None
    for rec in agent.produced:
        if rec.item_id == "Lpexecution":
            if rec.value == "ACTIVE" and started is None:
                started = rec.timestamp
            elif rec.value == "PROGRAM_COMPLETED" and started is not None:
                runs.append(round(rec.timestamp - started, 1))
                started = None
    assert runs == [186.7, 605.0, 548.9, 16.8]


async def test_wall_timestamps_still_strictly_increase_on_a_clock_that_stands_still() -> None:
    settings = AgentSettings(speed=math.inf, timestamps="wall", paused=True)
    async with MTConnectAgent(settings, clock=lambda: 1_800_000_000.0) as agent:
        records = agent.inject("2022-08-08T13:51:34Z|S1speed|1\n2022-08-08T13:51:33Z|S1speed|2\n"
                               "2022-08-08T13:51:34Z|S1speed|3")
    assert [(r.value, r.timestamp_us - 1_800_000_000_000_000) for r in records] == [("1", 1), ("2", 2), ("3", 3)]


async def test_pause_holds_the_replay_and_resume_goes_on(agent: MTConnectAgent) -> None:
    for _ in range(50):
        await asyncio.sleep(0)
    assert agent.lines_replayed == 0 and agent.buffer.next_sequence == N_ITEMS + 1
    agent.resume()
    async with asyncio.timeout(10):
        await agent.wait_for(lambda: agent.lines_replayed >= 100)
    agent.pause()
    held = agent.lines_replayed
    for _ in range(50):
        await asyncio.sleep(0)
    assert agent.lines_replayed <= held + 1  # the line in hand, at most


# --- sample, current and their errors ---


async def test_current_at_a_sequence_is_the_state_then(agent: MTConnectAgent, client: httpx.AsyncClient) -> None:
    await _replay_all(agent)
    at = 12_345
    state: dict[str, float | str | None] = {}
    values = [r for r in agent.produced if r.item.category != "CONDITION"]
    for item, seq, _, value in expected(values):
        if seq <= at:
            state[item] = value
    doc = _streams(await client.get("/current", params={"at": at}))
    assert doc.header.next_sequence == at + 1
    got = {o.item_id: o.value for o in doc.observations if o.category != "CONDITION"}
    assert got == state
    now = _streams(await client.get("/current"))
    assert now.header.next_sequence == agent.buffer.next_sequence
    assert {o.item_id for o in now.observations} >= {"Lpexecution", "LS1speed", "Lsystem"}


async def test_a_sample_page_says_where_to_go_on(agent: MTConnectAgent, client: httpx.AsyncClient) -> None:
    await _replay_all(agent)
    doc = _streams(await client.get("/sample", params={"from": 500, "count": 7}))
    assert [o.sequence for o in doc.observations] == list(range(500, 507))
    assert (doc.header.first_sequence, doc.header.next_sequence) == (1, 507)
    assert doc.header.last_sequence == agent.buffer.last_sequence
    mazak = _streams(await client.get("/Mazak/sample", params={"from": 1, "count": 1000}))
    assert {o.device_uuid for o in mazak.observations} == {"Mazak"}
    assert len(mazak.observations) == 118 and all(o.value is None for o in mazak.observations)


async def test_from_before_the_buffer_is_out_of_range() -> None:
    async with MTConnectAgent(AgentSettings(speed=math.inf, buffer_size=1024)) as agent:
        async with asyncio.timeout(60):
            await agent.replay_done.wait()
        async with httpx.AsyncClient(base_url=agent.url) as client:
            first = agent.buffer.first_sequence
            assert first == agent.buffer.next_sequence - 1024
            response = await client.get("/sample", params={"from": first - 1})
            assert response.status_code == 400
            assert _errors(response).errors == (("OUT_OF_RANGE", f"'from' must be greater than or equal to {first}"),)
            ok = _streams(await client.get("/sample", params={"from": first, "count": 1024}))
            assert len(ok.observations) == 1024 and ok.header.buffer_size == 1024
            late = _errors(await client.get("/sample", params={"from": agent.buffer.next_sequence + 1}))
            assert late.errors[0][0] == "OUT_OF_RANGE"
            at = _errors(await client.get("/current", params={"at": first - 5}))
            assert at.errors[0][0] == "OUT_OF_RANGE"


@pytest.mark.parametrize(
    ("path", "params", "status", "code"),
    [
        ("/sample", {"count": "abc"}, 400, "INVALID_REQUEST"),
        ("/sample", {"from": "1e3"}, 400, "INVALID_REQUEST"),
        ("/sample", {"count": 131073}, 400, "OUT_OF_RANGE"),
        ("/sample", {"count": 0}, 400, "OUT_OF_RANGE"),
        ("/sample", {"heartbeat": 1, "interval": 0}, 400, "OUT_OF_RANGE"),
        ("/sample", {"form": 1}, 400, "INVALID_REQUEST"),
        ("/current", {"at": 5, "interval": 100}, 400, "INVALID_REQUEST"),
        ("/nothing", {}, 404, "INVALID_URI"),
        ("/Haas/sample", {}, 404, "NO_DEVICE"),
        ("/asset/no-such-tool", {}, 404, "ASSET_NOT_FOUND"),
        ("/sample/extra", {}, 404, "INVALID_URI"),
    ],
)
async def test_bad_requests_get_mtconnect_errors(client: httpx.AsyncClient, path: str, params: dict[str, object],
                                                 status: int, code: str) -> None:
    response = await client.get(path, params=params)  # type: ignore[arg-type]
    assert response.status_code == status
    assert response.headers["content-type"].startswith("text/xml")
    assert _errors(response).errors[0][0] == code


async def test_a_post_is_unsupported(client: httpx.AsyncClient) -> None:
    response = await client.post("/probe")
    assert response.status_code == 405 and _errors(response).errors[0][0] == "UNSUPPORTED"


# --- streaming: heartbeats, falling behind, restart, stall, disconnect ---


async def test_a_stream_without_data_sends_heartbeats(agent: MTConnectAgent, client: httpx.AsyncClient) -> None:
    nxt = agent.buffer.next_sequence
    params: dict[str, int | str] = {"from": nxt, "interval": 0, "heartbeat": 20}
    async with asyncio.timeout(10):
        docs = await read_stream(client, "/sample", params, lambda d: len(d) == 2)
    assert all(isinstance(d, Streams) and d.observations == () and d.header.next_sequence == nxt for d in docs)


async def test_a_stream_that_falls_behind_the_buffer_gets_out_of_range_and_ends() -> None:
    async with MTConnectAgent(AgentSettings(speed=math.inf, buffer_size=1024, paused=True)) as agent, \
            httpx.AsyncClient(base_url=agent.url) as client:
        start = agent.buffer.next_sequence

        def first_part_then_fall_behind(docs: list[Streams | AgentErrors]) -> bool:
            if len(docs) == 1:  # hold the stream (no write goes out) while the replay overruns the buffer
                agent.stall(3600)
                agent.resume()
            return False

        stream = asyncio.create_task(read_stream(client, "/sample", {"from": start - 10, "interval": 0, "count": 5},
                                                 first_part_then_fall_behind))
        async with asyncio.timeout(60):
            await agent.replay_done.wait()
            agent.unstall()
            docs = await stream
        assert isinstance(docs[-1], AgentErrors) and docs[-1].errors[0][0] == "OUT_OF_RANGE"
        assert "no longer in the buffer" in docs[-1].errors[0][1]
        received = observed(docs)
        assert [seq for _, seq, _, _ in received] == list(range(start - 10, start - 10 + len(received)))


async def open_stream(agent: MTConnectAgent, client: httpx.AsyncClient) -> asyncio.Task[list[Streams | AgentErrors]]:
    """A /sample stream from the agent's next sequence, once its first part arrived; it reads until cut."""
    heard = asyncio.Event()

    def streaming(docs: list[Streams | AgentErrors]) -> bool:
        heard.set()
        return False

    params: dict[str, int | str] = {"interval": 0, "heartbeat": 20, "from": agent.buffer.next_sequence}
    stream = asyncio.create_task(read_stream(client, "/sample", params, streaming))
    async with asyncio.timeout(10):
        await heard.wait()
    return stream


async def test_a_restart_cuts_streams_and_starts_a_new_instance_all_unavailable(
        agent: MTConnectAgent, client: httpx.AsyncClient) -> None:
    agent.resume()
    async with asyncio.timeout(10):
        await agent.wait_for(lambda: agent.lines_replayed >= 2000)
    agent.pause()
    replayed = agent.lines_replayed
    stream = await open_stream(agent, client)
    assert agent.server.clients == 1
    agent.restart()
    with pytest.raises(httpx.HTTPError):
        async with asyncio.timeout(10):
            await stream
    probe = parse_probe((await client.get("/probe")).content)
    assert isinstance(probe, Probe) and probe.header.instance_id == 43
    current = _streams(await client.get("/current"))
    assert current.header.instance_id == 43
    assert (current.header.first_sequence, current.header.next_sequence) == (1, N_ITEMS + 1)
    assert sorted(o.sequence for o in current.observations) == list(range(1, N_ITEMS + 1))
    assert all(o.value is None for o in current.observations)
    agent.resume()
    async with asyncio.timeout(10):
        await agent.wait_for(lambda: agent.lines_replayed > replayed + 10)
    assert agent.produced[-1].instance_id == 43 and agent.produced[-1].sequence > N_ITEMS


async def test_a_stall_holds_every_answer_until_it_ends(agent: MTConnectAgent, client: httpx.AsyncClient) -> None:
    agent.stall(3600)
    request = asyncio.create_task(client.get("/probe"))
    await asyncio.sleep(0.3)  # a negative check: nothing may arrive while stalled
    assert not request.done()
    agent.unstall()
    async with asyncio.timeout(10):
        assert (await request).status_code == 200
    agent.stall(0.05)  # a short stall ends by itself
    async with asyncio.timeout(10):
        assert (await client.get("/current")).status_code == 200


async def test_disconnect_clients_cuts_a_stream(agent: MTConnectAgent, client: httpx.AsyncClient) -> None:
    stream = await open_stream(agent, client)
    assert agent.disconnect_clients() == 1
    with pytest.raises(httpx.HTTPError):
        async with asyncio.timeout(10):
            await stream


# --- conditions and assets ---


async def test_several_alarms_of_one_condition_are_current_at_once(agent: MTConnectAgent,
                                                                   client: httpx.AsyncClient) -> None:
    opened = agent.inject("2022-08-08T13:51:34Z|system|FAULT|2041|3|HIGH|SPINDLE OVERLOAD\n"
                          "2022-08-08T13:51:35Z|system|WARNING|1107|1||LOW LUBRICANT\n"
                          "2022-08-08T13:51:36Z|system|FAULT|2041|3|HIGH|SPINDLE OVERLOAD")  # a repeat: dropped
    assert [(r.value, r.condition and r.condition[1]) for r in opened] == [("FAULT", "2041"), ("WARNING", "1107")]

    async def active() -> list[tuple[str, str | None, str | None]]:
        doc = _streams(await client.get("/current"))
        return sorted((o.condition.level, o.condition.native_code, o.condition.message)
                      for o in doc.observations if o.item_id == "Lsystem" and o.condition)

    assert await active() == [("FAULT", "2041", "SPINDLE OVERLOAD"), ("WARNING", "1107", "LOW LUBRICANT")]
    agent.inject("2022-08-08T13:51:37Z|system|NORMAL|2041|||")
    assert await active() == [("WARNING", "1107", "LOW LUBRICANT")]
    agent.inject("2022-08-08T13:51:38Z|system|NORMAL||||")
    assert await active() == [("NORMAL", None, None)]
    sample = _streams(await client.get("/sample", params={"from": opened[0].sequence}))
    assert [(o.element, o.condition and o.condition.native_code) for o in sample.observations] == [
        ("Fault", "2041"), ("Warning", "1107"), ("Normal", "2041"), ("Normal", None)]


async def test_assets_are_served_and_announced(agent: MTConnectAgent, client: httpx.AsyncClient) -> None:
    await _replay_all(agent)
    assets = parse_assets((await client.get("/assets")).content)
    assert isinstance(assets, tuple) and len(assets) == agent.assets.count > 0
    assert all(not a.removed and a.device_uuid == "OKUMA.123456" for a in assets)
    tool = parse_assets((await client.get("/asset/123456.2201")).content)
    assert isinstance(tool, tuple) and tool[0].asset_type == "CuttingTool" and not tool[0].removed
    assert "<ProgramToolNumber>2201</ProgramToolNumber>" in tool[0].xml
    (removal,) = agent.inject("2022-08-08T14:30:00Z|@REMOVE_ASSET@|123456.2201")
    assert (removal.item.type, removal.value) == ("ASSET_REMOVED", "123456.2201")
    left = parse_assets((await client.get("/assets")).content)
    assert isinstance(left, tuple) and len(left) == len(assets) - 1
    everything = parse_assets((await client.get("/assets", params={"removed": "true", "count": 1024})).content)
    assert isinstance(everything, tuple)
    assert [a.asset_id for a in everything if a.removed] == ["123456.2201"]
    changed = [r for r in agent.produced if r.item.type == "ASSET_CHANGED" and r.value is not None]
    assert len(changed) == 118 and changed[0].asset_type == "CuttingTool"
    raw = (await client.get("/sample", params={"from": changed[-1].sequence, "count": 1})).text
    assert 'assetType="CuttingTool"' in raw and f">{changed[-1].value}</AssetChanged>" in raw


async def test_a_restart_with_resend_gets_the_state_back_at_once(agent: MTConnectAgent,
                                                                 client: httpx.AsyncClient) -> None:
    agent.resume()
    async with asyncio.timeout(10):
        await agent.wait_for(lambda: agent.lines_replayed >= 3000)
    agent.pause()
    before = {o.item_id: o.value for o in _streams(await client.get("/current")).observations
              if o.category != "CONDITION"}
    agent.restart(instance_id=1000, resend=True)
    async with httpx.AsyncClient(base_url=agent.url) as fresh:  # the restart cut the old keep-alive connection
        after = _streams(await fresh.get("/current"))
        assert after.header.instance_id == 1000 and after.header.first_sequence == 1
        assert {o.item_id: o.value for o in after.observations if o.category != "CONDITION"} == before
        resent = _streams(await fresh.get("/sample", params={"from": N_ITEMS + 1, "count": 1000})).observations
    assert len(resent) == sum(v is not None for v in before.values()) + 10  # + the 10 NORMAL conditions
    assert len({o.timestamp for o in resent}) == 1  # one line, as an adapter sends it on reconnecting


async def test_a_device_stream_gets_heartbeats_while_another_device_changes() -> None:
    # the replay feeds OKUMA without end; a client of the idle Mazak must still hear from the agent
    async with MTConnectAgent(AgentSettings(speed=math.inf, loop=True)) as looping, \
            httpx.AsyncClient(base_url=looping.url, timeout=30) as client:
        nxt = looping.buffer.next_sequence
        params: dict[str, int | str] = {"from": nxt, "interval": 0, "heartbeat": 20}
        async with asyncio.timeout(10):
            docs = await read_stream(client, "/Mazak/sample", params, lambda d: len(d) == 2)
        assert looping.buffer.next_sequence > nxt + 100  # OKUMA changed all along
        assert all(isinstance(d, Streams) and d.observations == () for d in docs)
