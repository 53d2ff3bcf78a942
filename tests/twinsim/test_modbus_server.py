"""The Modbus side: a real pymodbus client reads the documented register map from the real server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pymodbus.client import AsyncModbusTcpClient

from tests.support import free_port
from tests.twinsim.simsupport import free_ports, running
from twinsim.faults import parse_fault_spec
from twinsim.machine import Machine, Reading
from twinsim.modbus_server import ModbusSim
from twinsim.registers import COILS, CORE_HOLDING, DISCRETE_INPUTS, HOLDING, INPUT, RegisterField
from twinsim.runner import SimSettings

DT = AsyncModbusTcpClient.DATATYPE
_TYPES = {"int16": DT.INT16, "uint16": DT.UINT16, "uint32": DT.UINT32, "float32": DT.FLOAT32}

# What each documented register must show, computed from the model's reading independently of the encoder.
EXPECTED: dict[str, Any] = {
    "spindle_temp": lambda r: r.spindle_temp_c,
    "motor_temp": lambda r: r.motor_temp_c,
    "vibration_rms": lambda r: r.vibration_rms_mm_s,
    "motor_current": lambda r: r.motor_current_a,
    "pressure": lambda r: r.pressure_bar,
    "spindle_speed": lambda r: r.spindle_speed_rpm,
    "load": lambda r: r.load_pct,
    "ambient_temp": lambda r: r.ambient_temp_c,
    "status_word": lambda r: r.status_word,
    "cycle_count": lambda r: r.cycle_count,
    "uptime": lambda r: r.uptime_s,
    "alarm_code": lambda r: r.alarm_code,
    "machine_number": lambda r: r.machine,
    "coolant_temp": lambda r: r.coolant_temp_c,
    "coolant_flow": lambda r: r.coolant_flow_l_min,
    "running": lambda r: r.running,
    "fault": lambda r: r.fault,
    "overtemp_alarm": lambda r: r.overtemp_alarm,
    "vibration_alarm": lambda r: r.vibration_alarm,
    "sensor_fault": lambda r: r.sensor_fault,
    "door_closed": lambda r: r.door_closed,
    "estop_ok": lambda r: True,
}


def decode(field: RegisterField, words: list[int]) -> float | int:
    raw = AsyncModbusTcpClient.convert_from_registers(
        words[field.address: field.address + field.count], _TYPES[field.type],
        word_order="big" if field.order == "ABCD" else "little",
    )
    assert isinstance(raw, int | float)
    return raw * field.scale if field.scale != 1.0 else raw


def check_against(reading: Reading, holding: list[int], inputs: list[int], coils: list[bool],
                  discrete: list[bool]) -> None:
    for field in (*HOLDING, *INPUT):
        words = holding if field.table == "holding" else inputs
        got, want = decode(field, words), EXPECTED[field.name](reading)
        tolerance = 0.051 if field.scale == 0.1 else 1e-5 * max(1.0, abs(want))
        assert got == pytest.approx(want, abs=tolerance), field.name
    for field in COILS:
        assert coils[field.address] == EXPECTED[field.name](reading), field.name
    for field in DISCRETE_INPUTS:
        assert discrete[field.address] == EXPECTED[field.name](reading), field.name


def step(machines: list[Machine], sim: ModbusSim, seconds: float) -> None:
    for _ in range(round(seconds / 0.1)):
        for machine in machines:
            machine.step(0.1)
    sim.tick()


@pytest.fixture
async def client_factory() -> AsyncIterator[Any]:
    clients: list[AsyncModbusTcpClient] = []

    async def connect(port: int) -> AsyncModbusTcpClient:
        client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0)
        assert await client.connect()
        clients.append(client)
        return client

    yield connect
    for client in clients:
        client.close()


async def read_all(client: AsyncModbusTcpClient, unit: int, holding: int = CORE_HOLDING) -> tuple[Any, ...]:
    hr = await client.read_holding_registers(0, count=holding, device_id=unit)
    ir = await client.read_input_registers(0, count=len(INPUT), device_id=unit)
    co = await client.read_coils(0, count=len(COILS), device_id=unit)
    di = await client.read_discrete_inputs(0, count=len(DISCRETE_INPUTS), device_id=unit)
    for response in (hr, ir, co, di):
        assert not response.isError(), response
    return hr.registers, ir.registers, co.bits, di.bits


async def test_each_machine_has_its_own_port_with_the_documented_map(client_factory: Any) -> None:
    # cycle_count above 65535 so both of its words matter
    machines = [Machine(1, cycle_count=70_000), Machine(2, cycle_count=3)]
    base = free_ports(2)
    sim = ModbusSim(machines, "127.0.0.1", base)
    await sim.start()
    try:
        assert [(e.machine, e.port, e.unit) for e in sim.endpoints()] == [("machine-1", base, 1),
                                                                           ("machine-2", base + 1, 1)]
        step(machines, sim, 12.0)
        for machine, port in ((machines[0], base), (machines[1], base + 1)):
            client = await client_factory(port)
            check_against(machine.reading(), *await read_all(client, unit=1))
        step(machines, sim, 0.5)  # the registers follow the next tick
        client = await client_factory(base)
        check_against(machines[0].reading(), *await read_all(client, unit=1))
        assert machines[0].reading().cycle_count > 70_000
    finally:
        await sim.stop()


async def test_unit_ids_on_one_port(client_factory: Any) -> None:
    machines = [Machine(n) for n in (1, 2, 3)]
    sim = ModbusSim(machines, "127.0.0.1", free_port(), per_port=False)
    await sim.start()
    try:
        step(machines, sim, 3.0)
        client = await client_factory(sim.port)
        for machine in machines:
            check_against(machine.reading(), *await read_all(client, unit=machine.number))
    finally:
        await sim.stop()


async def test_padding_registers_change_every_tick(client_factory: Any) -> None:
    machines = [Machine(1)]
    sim = ModbusSim(machines, "127.0.0.1", free_port(), registers=120)
    await sim.start()
    try:
        client = await client_factory(sim.port)
        step(machines, sim, 0.1)
        first = (await client.read_holding_registers(0, count=120, device_id=1)).registers
        step(machines, sim, 0.1)
        second = (await client.read_holding_registers(0, count=120, device_id=1)).registers
        assert len(second) == 120
        assert first[CORE_HOLDING:] != second[CORE_HOLDING:]
        beyond = await client.read_holding_registers(100, count=21, device_id=1)
        assert beyond.isError() and beyond.exception_code == 2  # register 120 does not exist
    finally:
        await sim.stop()


async def test_the_map_is_read_only(client_factory: Any) -> None:
    machines = [Machine(1)]
    sim = ModbusSim(machines, "127.0.0.1", free_port())
    await sim.start()
    try:
        client = await client_factory(sim.port)
        written = await client.write_register(0, 1234, device_id=1)
        assert written.isError() and written.exception_code == 2
        coil = await client.write_coil(0, False, device_id=1)
        assert coil.isError() and coil.exception_code == 2
        assert (await client.read_coils(0, count=1, device_id=1)).bits[0] is True
    finally:
        await sim.stop()


async def test_failed_sensor_block_answers_with_an_exception(client_factory: Any) -> None:
    machines = [Machine(1)]
    machines[0].inject(parse_fault_spec("machine-1:dropout=exception@1s"))
    sim = ModbusSim(machines, "127.0.0.1", free_port())
    await sim.start()
    try:
        client = await client_factory(sim.port)
        step(machines, sim, 2.0)
        covering = await client.read_holding_registers(0, count=CORE_HOLDING, device_id=1)
        assert covering.isError() and covering.exception_code == 4  # server device failure
        rest = await client.read_holding_registers(2, count=CORE_HOLDING - 2, device_id=1)
        assert not rest.isError()
        sensor_fault = (await client.read_coils(4, count=1, device_id=1)).bits[0]
        assert sensor_fault is True
    finally:
        await sim.stop()


async def test_offline_unit_answers_gateway_target_failed(client_factory: Any) -> None:
    machines = [Machine(1), Machine(2)]
    machines[1].inject(parse_fault_spec("machine-2:plc_restart@1s+10s"))
    sim = ModbusSim(machines, "127.0.0.1", free_port(), per_port=False)
    await sim.start()
    try:
        client = await client_factory(sim.port)
        step(machines, sim, 2.0)
        down = await client.read_holding_registers(0, count=2, device_id=2)
        assert down.isError() and down.exception_code == 0x0B
        assert not (await client.read_holding_registers(0, count=2, device_id=1)).isError()
    finally:
        await sim.stop()


async def refused(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except ConnectionRefusedError:
        return True
    writer.close()
    await writer.wait_closed()
    return False


async def test_plc_restart_closes_the_port_then_serves_again_with_counters_reset(client_factory: Any) -> None:
    base = free_ports(2)
    fault = parse_fault_spec("machine-2:plc_restart@1s+1s")
    settings = SimSettings(machines=2, modbus_port=base, opcua=False, tick=0.05, faults=(fault,), summary_every=0)
    async with running(settings) as sim:
        machine = sim.machine(2)
        before = await client_factory(base + 1)
        hr = await before.read_holding_registers(0, count=CORE_HOLDING, device_id=1)
        assert not hr.isError()
        async with asyncio.timeout(10):
            await sim.wait_for(lambda: not machine.online)
        assert await refused(base + 1)
        assert not await refused(base)  # the other PLC is unaffected
        async with asyncio.timeout(10):
            await sim.wait_for(lambda: machine.online)
        after = await client_factory(base + 1)
        hr = await after.read_holding_registers(0, count=CORE_HOLDING, device_id=1)
        assert not hr.isError()
        uptime = AsyncModbusTcpClient.convert_from_registers(hr.registers[16:18], DT.UINT32, word_order="little")
        assert isinstance(uptime, int) and uptime <= 1
        assert AsyncModbusTcpClient.convert_from_registers(hr.registers[14:16], DT.UINT32) == 0


async def test_a_taken_port_is_reported_by_number() -> None:
    machines = [Machine(1)]
    first = ModbusSim(machines, "127.0.0.1", free_port())
    await first.start()
    try:
        with pytest.raises(OSError, match=f"127.0.0.1:{first.port}"):
            await ModbusSim(machines, "127.0.0.1", first.port).start()
    finally:
        await first.stop()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"registers": 19}, "registers must be 20..10000"),
        ({"registers": 10_001}, "registers must be 20..10000"),
        ({"port": 65535, "machines": 2}, "do not fit below 65536"),
        ({"per_port": False, "machines": 248}, "unit ids only go up to 247"),
    ],
)
def test_impossible_layouts_are_refused(kwargs: dict[str, Any], message: str) -> None:
    machines = [Machine(n) for n in range(1, kwargs.pop("machines", 1) + 1)]
    with pytest.raises(ValueError, match=message):
        ModbusSim(machines, **kwargs)
