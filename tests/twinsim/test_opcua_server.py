"""The OPC-UA side: a real asyncua client finds the machines' nodes, values, statuses and subscriptions."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from asyncua import Client, ua

from tests.support import free_port
from tests.twinsim.simsupport import running
from twinsim.faults import parse_fault_spec
from twinsim.machine import Machine
from twinsim.opcua_server import NAMESPACE_URI, OPCUA_VARIABLES, OpcUaSim, node_id
from twinsim.runner import SimSettings


async def step(machines: list[Machine], sim: OpcUaSim, seconds: float) -> None:
    for _ in range(round(seconds / 0.1)):
        for machine in machines:
            machine.step(0.1)
    await sim.tick()


@pytest.fixture
async def served() -> AsyncIterator[tuple[list[Machine], OpcUaSim, Client]]:
    machines = [Machine(1, cycle_count=5), Machine(2)]
    machines[0].inject(parse_fault_spec("machine-1:dropout=exception@20s+2s"))
    machines[1].inject(parse_fault_spec("machine-2:plc_restart@20s+2s"))
    sim = OpcUaSim(machines, "127.0.0.1", free_port(), items=5)
    await sim.start()
    client = Client(sim.endpoint, timeout=5)
    try:
        await client.connect()
        yield machines, sim, client
    finally:
        await client.disconnect()
        await sim.stop()


class Read:
    """A DataValue as read by a client: its status code and (for good values) its variant."""

    def __init__(self, dv: ua.DataValue) -> None:
        assert dv.StatusCode is not None and dv.Value is not None
        self.status: ua.StatusCode = dv.StatusCode
        self.variant: ua.Variant = dv.Value
        self.value: Any = dv.Value.Value
        self.source_timestamp = dv.SourceTimestamp


async def read(client: Client, nid: str) -> Read:
    return Read(await client.get_node(nid).read_data_value(raise_on_bad_status=False))


async def test_machines_are_objects_with_typed_variables_holding_the_model_values(served: Any) -> None:
    machines, sim, client = served
    assert await client.get_namespace_index(NAMESPACE_URI) == 2
    await step(machines, sim, 10.0)
    objects = {(await child.read_browse_name()).Name for child in await client.nodes.objects.get_children()}
    assert {"Machine1", "Machine2", "Bench"} <= objects
    for machine in machines:
        reading = machine.reading()
        for var in OPCUA_VARIABLES:
            dv = await read(client, node_id(machine, var.browse_name))
            assert dv.status.is_good(), var.browse_name
            assert dv.variant.VariantType == var.variant, var.browse_name
            assert dv.value == var.value(reading), var.browse_name
            assert dv.source_timestamp is not None
    assert (await read(client, "ns=2;s=Machine1.CycleCount")).value >= 5
    assert (await read(client, "ns=2;s=Machine1.Running")).value is True


async def test_bench_items_change_every_tick(served: Any) -> None:
    machines, sim, client = served
    nodes = [client.get_node(f"ns=2;s=Bench.Item{i:04d}") for i in range(5)]
    first = [await n.read_value() for n in nodes]
    await step(machines, sim, 0.1)
    second = [await n.read_value() for n in nodes]
    assert all(b != a for a, b in zip(first, second, strict=True))
    assert len(set(second)) == 5
    missing = await read(client, "ns=2;s=Bench.Item0005")
    assert missing.status.value == ua.StatusCodes.BadNodeIdUnknown


async def test_failed_sensor_and_restarting_plc_show_bad_status_then_recover(served: Any) -> None:
    machines, sim, client = served
    await step(machines, sim, 20.5)
    temp = await read(client, "ns=2;s=Machine1.SpindleTemp")
    assert temp.status.value == ua.StatusCodes.BadSensorFailure
    assert (await read(client, "ns=2;s=Machine1.SensorFault")).value is True
    assert (await read(client, "ns=2;s=Machine1.MotorTemp")).status.is_good()
    for var in OPCUA_VARIABLES:
        dv = await read(client, node_id(2, var.browse_name))
        assert dv.status.value == ua.StatusCodes.BadNoCommunication, var.browse_name
    await step(machines, sim, 3.0)
    temp = await read(client, "ns=2;s=Machine1.SpindleTemp")
    assert temp.status.is_good() and temp.value == machines[0].reading().spindle_temp_c
    count = await read(client, "ns=2;s=Machine2.CycleCount")
    assert count.status.is_good() and count.value == 0  # counters restart with the PLC
    assert (await read(client, "ns=2;s=Machine2.Uptime")).value <= 1


class _Changes:
    def __init__(self) -> None:
        self.values: asyncio.Queue[float] = asyncio.Queue()

    def datachange_notification(self, node: Any, val: float, data: Any) -> None:
        self.values.put_nowait(val)


async def test_subscriptions_receive_the_published_values(served: Any) -> None:
    machines, sim, client = served
    changes = _Changes()
    subscription = await client.create_subscription(50, changes)
    await subscription.subscribe_data_change(client.get_node("ns=2;s=Machine1.MotorTemp"))
    async with asyncio.timeout(5):
        await changes.values.get()  # the initial value
    await step(machines, sim, 1.0)
    want = machines[0].reading().motor_temp_c
    async with asyncio.timeout(5):
        while (await changes.values.get()) != want:
            pass
    await subscription.delete()


async def test_a_taken_port_is_reported_by_number() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        sim = OpcUaSim([Machine(1)], "127.0.0.1", port)
        with pytest.raises(OSError, match=f"127.0.0.1:{port}"):
            await sim.start()
        assert not sim.running


async def test_opcua_restart_fault_stops_the_server_then_serves_again() -> None:
    port = free_port()
    fault = parse_fault_spec("opcua:plc_restart@0.2s+0.5s")
    settings = SimSettings(machines=1, opcua_port=port, modbus=False, tick=0.05, faults=(fault,), summary_every=0)
    async with running(settings) as sim:
        assert sim.opcua is not None
        opcua = sim.opcua
        async with asyncio.timeout(10):
            await sim.wait_for(lambda: not opcua.running)
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", port)
        async with asyncio.timeout(20):
            await sim.wait_for(lambda: opcua.running)
        async with Client(opcua.endpoint, timeout=5) as client:
            assert (await read(client, "ns=2;s=Machine1.Running")).value is True
