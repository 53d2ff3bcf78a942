"""OPC-UA source against a real asyncua server on 127.0.0.1: values, bad nodes, limits, polling, recovery.

One server serves the whole module (start-up costs seconds); it announces low
operation limits, so every test also exercises the chunking. The restart test
brings its own server, which it stops and starts again.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
import pytest_asyncio
from asyncua import ua

from edge.sources import SourceState
from edge.sources.base import Position
from edge.sources.opcua import OpcUaSourceConfig
from edge.sources.opcua.source import OpcUaSource
from shared.batch import Document, EdgeEvent
from shared.frame import TelemetryFrame
from tests.edge.sources.test_opcua_support import (
    BlackholeProxy,
    TestServer,
    failing_by_sensor,
    latest,
    running,
    wait_for_state,
    wait_for_value,
    wait_until,
)
from tests.support import CollectingSink, free_port

pytestmark = pytest.mark.asyncio(loop_scope="module")

MAX_MONITORED = 3
MAX_READ = 4


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server() -> AsyncIterator[TestServer]:
    srv = await TestServer(free_port(), max_monitored_per_call=MAX_MONITORED, max_nodes_per_read=MAX_READ).start()
    yield srv
    await srv.stop()


def make_config(url: str, nodes: dict[str, str], **extra: Any) -> OpcUaSourceConfig:
    return OpcUaSourceConfig.model_validate({
        "kind": "opcua",
        "name": "press-1",
        "url": url,
        "publishing_interval": "50ms",
        "poll_interval": "50ms",
        "reconnect_max_delay": "1s",
        "watchdog_interval": "1s",
        "request_timeout": "2s",
        "nodes": [{"name": name, "node_id": node_id} for name, node_id in nodes.items()],
        **extra,
    })


GOOD = {"temp": "ns=2;s=Press.Temp", "count": "ns=2;s=Press.Count", "running": "ns=2;s=Press.Running",
        "recipe": "nsu=urn:twinedge:test;s=Press.Recipe"}


async def test_subscription_delivers_values_with_source_timestamps(server: TestServer) -> None:
    async with running(make_config(server.url, GOOD)) as (source, sink):
        await wait_until(lambda: latest(sink, "recipe") is not None)  # items come in chunks of MAX_MONITORED
        assert {f.device_id for f in sink.frames} == {"press-1"}
        initial = {name: latest(sink, name) for name in GOOD}
        assert initial == {"temp": 21.5, "count": 7, "running": True, "recipe": "A-17"}
        when = datetime.datetime(2026, 3, 1, 12, 0, 0, tzinfo=datetime.UTC)
        await server.write("Press.Temp", 88.25, source_ts=when)
        await wait_for_value(sink, "temp", 88.25)
        frame = next(f for f in reversed(sink.frames) if f.sensors.get("temp") == 88.25)
        assert frame.ts == when.timestamp()
        assert source.health.state is SourceState.CONNECTED
        await server.write("Press.Temp", 21.5)


async def test_changes_within_one_publishing_cycle_arrive_as_one_frame(server: TestServer) -> None:
    config = make_config(server.url, GOOD, publishing_interval="1s", watchdog_interval="2s")
    async with running(config) as (_source, sink):
        await wait_until(lambda: latest(sink, "recipe") is not None)  # items come in chunks of MAX_MONITORED
        before = len(sink.frames)
        await server.write("Press.Count", 8)
        await server.write("Press.Recipe", "B-2")
        await wait_for_value(sink, "recipe", "B-2")
        await wait_for_value(sink, "count", 8)
        changed = sink.frames[before:]
        assert any(f.sensors == {"count": 8, "recipe": "B-2"} for f in changed), [f.sensors for f in changed]
        await server.write("Press.Count", 7)
        await server.write("Press.Recipe", "A-17")


async def test_bad_node_ids_are_set_aside_and_reported_while_others_flow(server: TestServer) -> None:
    nodes = {**GOOD, "ghost": "ns=2;s=Press.DoesNotExist", "nons": "ns=42;i=1",
             "nouri": "nsu=urn:nowhere;s=X"}
    async with running(make_config(server.url, nodes)) as (source, sink):
        await wait_until(lambda: latest(sink, "recipe") is not None)
        await wait_for_state(source, SourceState.DEGRADED)
        assert set(source.health.detail["failing"]) == {
            "press-1/ns=2;s=Press.DoesNotExist", "press-1/ns=42;i=1", "press-1/nsu=urn:nowhere;s=X"}
        failing = failing_by_sensor(source)
        assert set(failing) == {"ghost", "nons", "nouri"}
        assert "BadNodeIdUnknown" in failing["ghost"]
        assert "urn:nowhere" in failing["nouri"] and "not on the server" in failing["nouri"]
        assert "3 of 7 nodes have no value" in (source.health.reason or "")
        assert set().union(*(f.sensors for f in sink.frames)) == set(GOOD)
        await server.write("Press.Count", 99)
        await wait_for_value(sink, "count", 99)
        await server.write("Press.Count", 7)


@pytest.mark.parametrize("mode", ["subscribe", "poll"])
async def test_values_a_frame_cannot_carry_are_refused_per_node(server: TestServer, mode: str) -> None:
    nodes = {"temp": "ns=2;s=Press.Temp", "nan": "ns=2;s=Press.NaN", "inf": "ns=2;s=Press.Inf",
             "array": "ns=2;s=Press.Array", "struct": "ns=2;s=Press.Struct", "huge": "ns=2;s=Press.Huge"}
    async with running(make_config(server.url, nodes, mode=mode)) as (source, sink):
        await sink.wait_for(1)
        await wait_until(lambda: len(source.health.detail["failing"]) == 5)
        failing = failing_by_sensor(source)
        assert "not a finite number" in failing["nan"]
        assert "not a finite number" in failing["inf"]
        assert "an array of 3 values" in failing["array"]
        assert "a structure" in failing["struct"]
        assert "text of 1000 characters" in failing["huge"]
        assert all(set(f.sensors) == {"temp"} for f in sink.frames)
        assert {origin for origin, _, _ in sink.rejected} >= {"opcua:press-1/nan", "opcua:press-1/huge"}
        assert source.health.state is SourceState.DEGRADED


async def test_polling_reads_every_node_in_chunks_of_max_nodes_per_read(server: TestServer) -> None:
    # one device with more nodes than one Read carries: each value keeps its own SourceTimestamp
    nodes = {f"t{i}": "ns=2;s=Press.Temp" for i in range(10)} | {"ghost": "ns=2;s=Press.Nope"}
    server.sizes.reads.clear()
    async with running(make_config(server.url, nodes, mode="poll")) as (source, sink):
        await sink.wait_for(1)
        assert set(sink.frames[-1].sensors) == {f"t{i}" for i in range(10)}
        assert "BadNodeIdUnknown" in failing_by_sensor(source)["ghost"]
        assert source.health.detail["limits"]["nodes_per_read"] == MAX_READ
        start = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
        for k, value in enumerate((30.5, 31.5)):
            when = start + datetime.timedelta(seconds=k + 1)
            await server.write("Press.Temp", value, source_ts=when)
            await wait_for_value(sink, "t9", value)
            frame = sink.frames[-1]
            assert frame.ts == when.timestamp() and frame.sensors == {f"t{i}": value for i in range(10)}
        ts = [f.ts for f in sink.frames]
        assert ts == sorted(ts) and len(set(ts)) == len(ts), "one device's frames need distinct timestamps"
        assert len(sink.frames) == 3, "an unchanged reading is delivered once, not under every poll's time"
    assert server.sizes.reads and max(server.sizes.reads) <= MAX_READ
    await server.write("Press.Temp", 21.5)


async def test_monitored_items_are_created_in_chunks_of_the_server_limit(server: TestServer) -> None:
    nodes = {f"t{i}": "ns=2;s=Press.Temp" for i in range(10)}
    server.sizes.monitored.clear()
    async with running(make_config(server.url, nodes)) as (source, sink):
        await wait_until(lambda: latest(sink, "t9") is not None)
        assert source.health.detail["limits"]["monitored_items_per_call"] == MAX_MONITORED
    assert sum(server.sizes.monitored) == 10
    assert max(server.sizes.monitored) == MAX_MONITORED


async def test_max_items_per_call_caps_below_the_server_limit(server: TestServer) -> None:
    nodes = {f"t{i}": "ns=2;s=Press.Temp" for i in range(5)}
    server.sizes.monitored.clear()
    async with running(make_config(server.url, nodes, max_items_per_call=2)) as (_source, sink):
        await wait_until(lambda: latest(sink, "t4") is not None)
    assert server.sizes.monitored == [2, 2, 1]


async def test_nodes_can_feed_several_devices(server: TestServer) -> None:
    config = OpcUaSourceConfig.model_validate({
        "kind": "opcua", "name": "line", "url": server.url, "publishing_interval": "50ms",
        "nodes": [{"name": "temp", "node_id": "ns=2;s=Press.Temp", "device_id": "press-1"},
                  {"name": "temp", "node_id": "ns=2;s=Press.Temp", "device_id": "press-2"},
                  {"name": "count", "node_id": "ns=2;s=Press.Count"}],
    })
    async with running(config) as (_source, sink):
        await sink.wait_for(3)
        by_device = {f.device_id: f.sensors for f in sink.frames[:3]}
        assert by_device == {"press-1": {"temp": 21.5}, "press-2": {"temp": 21.5}, "line": {"count": 7}}


class FirstBytes:
    """A bare TCP listener that records what each connection sends first, then closes it:
    first a port that accepts, then a server that accepts and fails."""

    def __init__(self) -> None:
        self.firsts: list[bytes] = []
        self.server: asyncio.Server | None = None

    async def start(self, port: int) -> FirstBytes:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", port)
        return self

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(5):
                self.firsts.append(await reader.read(8))
        except (OSError, TimeoutError):
            self.firsts.append(b"")
        writer.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


async def test_a_refusing_server_is_probed_cheaply_and_connected_as_soon_as_it_accepts() -> None:
    port = free_port()
    config = make_config(f"opc.tcp://127.0.0.1:{port}", GOOD, reconnect_max_delay="30s")
    listener = FirstBytes()
    async with running(config) as (source, _sink):
        await wait_until(lambda: "waiting for it to accept connections" in (source.health.reason or ""))
        assert "refused the connection (is the server running, is the port right?)" in (source.health.reason or "")
        assert source.health.state is SourceState.DISCONNECTED
        assert source.health.errors == 1, "one failed connect; the rest of the outage is watched with TCP probes"
        await listener.start(port)
        try:
            await wait_until(lambda: any(first.startswith(b"HEL") for first in listener.firsts))
            # first a bare probe (nothing sent), then at once the OPC-UA hello: no backoff in between
            assert listener.firsts[0] == b"" and listener.firsts[1].startswith(b"HEL"), listener.firsts
            # a server that accepts and then fails gets the session backoff instead
            await wait_until(lambda: "closed the connection" in (source.health.reason or ""))
            assert source.health.retry_at is not None and source.health.errors >= 2
        finally:
            await listener.stop()


async def test_polling_reads_each_device_in_one_read_where_the_limit_allows(server: TestServer) -> None:
    # two devices of 3 nodes with MaxNodesPerRead 4: reads of 3 and 3, never 4 and 2
    config = OpcUaSourceConfig.model_validate({
        "kind": "opcua", "name": "line", "url": server.url, "mode": "poll", "poll_interval": "50ms",
        "nodes": [{"name": name, "node_id": f"ns=2;s=Press.{node}", "device_id": device}
                  for device in ("press-1", "press-2")
                  for name, node in (("temp", "Temp"), ("count", "Count"), ("running", "Running"))],
    })
    server.sizes.reads.clear()
    async with running(config) as (_source, sink):
        await sink.wait_for(4)
    polls = server.sizes.reads[1:]  # the first Read asks for the server's operation limits
    assert polls and set(polls) == {3}, server.sizes.reads
    assert {f.device_id: set(f.sensors) for f in sink.frames[:2]} == {
        "press-1": {"temp", "count", "running"}, "press-2": {"temp", "count", "running"}}


async def test_subscription_recovers_after_the_server_restarts() -> None:
    srv = await TestServer(free_port()).start()
    try:
        async with running(make_config(srv.url, GOOD)) as (source, sink):
            await sink.wait_for(1)
            await srv.stop()
            await wait_for_state(source, SourceState.DISCONNECTED)
            assert srv.url.rstrip("/") in (source.health.reason or "")
            await srv.start(values={"Press.Temp": 55.5})
            await wait_for_value(sink, "temp", 55.5, within=20)
            await srv.write("Press.Count", 1234)
            await wait_for_value(sink, "count", 1234)
            assert source.health.state is SourceState.CONNECTED
            assert source.health.reconnects == 1
    finally:
        await srv.stop()


class GatedSink(CollectingSink):
    """A sink whose put waits while the gate is closed: a store that fell behind."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.waiting = asyncio.Event()

    async def put(self, frames: Sequence[TelemetryFrame], *, durable: bool = False,
                  events: Sequence[EdgeEvent] = (), documents: Sequence[Document] = (),
                  position: Position | None = None) -> None:
        if not self.gate.is_set():
            self.waiting.set()
            await self.gate.wait()
        await super().put(frames, durable=durable, events=events, documents=documents, position=position)


async def test_a_slow_sink_slows_the_source_without_losing_the_session(server: TestServer) -> None:
    # keep-alive every 0.2 s: the subscription counts as silent after 0.9 s without publish responses
    config = make_config(server.url, {"count": "ns=2;s=Press.Count"}, watchdog_interval="200ms",
                         request_timeout="500ms")
    sink = GatedSink()
    source = OpcUaSource(config, sink)
    task = asyncio.create_task(source.run(), name="test:opcua-slow-sink")
    try:
        async with asyncio.timeout(10):
            await sink.waiting.wait()
        for value in range(100, 130):  # many changes while the sink is stuck for ~1.5 s
            await server.write("Press.Count", value)
            await asyncio.sleep(0.05)
        assert source.health.state is SourceState.CONNECTED
        sink.gate.set()
        await wait_for_value(sink, "count", 129)
        assert source.health.reconnects == 0 and source.health.state is SourceState.CONNECTED
        assert len(sink.frames) < 30, "changes were coalesced while the sink was stuck, not queued without bound"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await server.write("Press.Count", 7)


@pytest.mark.parametrize("mode", ["subscribe", "poll"])
async def test_a_node_that_appears_later_is_picked_up_on_retry(server: TestServer, mode: str) -> None:
    name = f"Press.Late{mode.capitalize()}"
    nodes = {"temp": "ns=2;s=Press.Temp", "late": f"ns=2;s={name}"}
    async with running(make_config(server.url, nodes, mode=mode, retry_bad_nodes="1s")) as (source, sink):
        await wait_for_state(source, SourceState.DEGRADED)
        assert "BadNodeIdUnknown" in failing_by_sensor(source)["late"]
        assert server.server is not None
        await server.server.nodes.objects.add_variable(ua.NodeId(name, 2), name, ua.Variant(5, ua.VariantType.Int64))
        await wait_for_value(sink, "late", 5)
        await wait_for_state(source, SourceState.CONNECTED)
        assert source.health.detail["failing"] == {}


async def test_a_connection_that_goes_silent_is_noticed_and_rebuilt(server: TestServer) -> None:
    proxy = await BlackholeProxy(server.port).start()
    try:
        config = make_config(f"opc.tcp://127.0.0.1:{proxy.port}", {"count": "ns=2;s=Press.Count"},
                             watchdog_interval="500ms", request_timeout="1s")
        async with running(config) as (source, sink):
            await sink.wait_for(1)
            proxy.swallowing = True
            await wait_for_state(source, SourceState.DISCONNECTED)
            reason = source.health.reason or ""
            assert "stopped answering" in reason or "sent no data or keep-alive" in reason, reason
            proxy.swallowing = False
            await wait_for_state(source, SourceState.CONNECTED, within=20)
            await server.write("Press.Count", 4321)
            await wait_for_value(sink, "count", 4321)
            assert source.health.reconnects == 1
    finally:
        await proxy.stop()
        await server.write("Press.Count", 7)
