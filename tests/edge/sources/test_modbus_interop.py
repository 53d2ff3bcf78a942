"""Decoding checked against an independent Modbus implementation: Debian's ``mbpoll``.

mbpoll writes int16, int32 and float32 values into a real pymodbus server in its
own encodings (little-endian word order by default, big-endian with ``-B``);
the source reads back exactly those numbers with the matching register map.
The other way round, values the source's encoder put into registers are read
by mbpoll and must print as the same numbers.
"""

from __future__ import annotations

import asyncio
import re
import shutil

import pytest

from edge.sources.modbus.map import RegisterConfig, encode_value
from tests.edge.sources.test_modbus_support import ModbusTestServer, Running, device, make, tcp_source, write_registers
from tests.support import CollectingSink

MBPOLL = shutil.which("mbpoll")
pytestmark = pytest.mark.skipif(
    MBPOLL is None, reason="mbpoll is not installed (Debian package 'mbpoll'; the setup script installs it)"
)


async def mbpoll(port: int, *args: str) -> str:
    assert MBPOLL is not None
    proc = await asyncio.create_subprocess_exec(
        MBPOLL, "-m", "tcp", "-p", str(port), "-a", "1", "-0", "-o", "2", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    async with asyncio.timeout(20):
        out, _ = await proc.communicate()
    text = out.decode()
    assert proc.returncode == 0, text
    return text


async def mbpoll_write(port: int, table: str, address: int, *values: str, big_endian: bool = False) -> None:
    flags = ["-B"] if big_endian else []
    await mbpoll(port, "-t", table, *flags, "-r", str(address), "127.0.0.1", "--", *values)


MAP = [
    {"name": "i16_pos", "address": 0, "type": "int16"},
    {"name": "i16_neg", "address": 1, "type": "int16"},
    {"name": "u16", "address": 2, "type": "uint16"},
    {"name": "i32_le_a", "address": 10, "type": "int32", "order": "CDAB"},
    {"name": "i32_le_b", "address": 12, "type": "int32", "order": "CDAB"},
    {"name": "i32_be", "address": 20, "type": "int32", "order": "ABCD"},
    {"name": "f32_le_a", "address": 30, "type": "float32", "order": "CDAB"},
    {"name": "f32_le_b", "address": 32, "type": "float32", "order": "CDAB"},
    {"name": "f32_be_a", "address": 40, "type": "float32", "order": "ABCD"},
    {"name": "f32_be_b", "address": 42, "type": "float32", "order": "ABCD"},
]


async def test_values_written_by_mbpoll_read_back_exactly():
    async with ModbusTestServer(lambda: [device(1, holding={0: [0] * 50})]) as server:
        # mbpoll's 16-bit table takes unsigned words; 64302 is -1234 as a signed 16-bit number.
        await mbpoll_write(server.port, "4", 0, "1234", "64302", "64302")
        await mbpoll_write(server.port, "4:int", 10, "-123456789", "2000000000")
        await mbpoll_write(server.port, "4:int", 20, "-123456789", big_endian=True)
        await mbpoll_write(server.port, "4:float", 30, "3.25", "-1500.5")
        await mbpoll_write(server.port, "4:float", 40, "0.15625", "-2.5e-3", big_endian=True)
        sink = CollectingSink()
        async with Running(make(tcp_source("interop", server.port, MAP), sink)):
            await sink.wait_for(1)
    values = sink.frames[0].sensors
    assert values["i16_pos"] == 1234
    assert values["i16_neg"] == -1234
    assert values["u16"] == 64302
    assert values["i32_le_a"] == -123456789
    assert values["i32_le_b"] == 2_000_000_000
    assert values["i32_be"] == -123456789
    assert values["f32_le_a"] == 3.25
    assert values["f32_le_b"] == -1500.5
    assert values["f32_be_a"] == 0.15625
    assert values["f32_be_b"] == pytest.approx(-2.5e-3, rel=1e-7)  # float32 rounding of 0.0025


def _read_values(output: str) -> dict[int, str]:
    return {int(m.group(1)): m.group(2) for m in re.finditer(r"^\[(\d+)\]:\s+(.+?)\s*$", output, re.MULTILINE)}


async def test_values_encoded_by_the_register_map_read_correctly_in_mbpoll():
    def words(type_: str, order: str, value: float) -> list[int]:
        return encode_value(RegisterConfig(name="x", address=0, type=type_, order=order), value)  # type: ignore[arg-type]

    async with ModbusTestServer(lambda: [device(1, holding={0: [0] * 50})]) as server:
        await write_registers(server.port, 0, words("int16", "ABCD", -321))
        await write_registers(server.port, 10, words("int32", "CDAB", -7654321) + words("int32", "CDAB", 99))
        await write_registers(server.port, 20, words("int32", "ABCD", 1_234_567_890))
        await write_registers(server.port, 30, words("float32", "CDAB", -42.75))
        await write_registers(server.port, 40, words("float32", "ABCD", 6.5))
        int16 = _read_values(await mbpoll(server.port, "-t", "4", "-r", "0", "-c", "1", "-1", "127.0.0.1"))
        int32_le = _read_values(await mbpoll(server.port, "-t", "4:int", "-r", "10", "-c", "2", "-1", "127.0.0.1"))
        int32_be = _read_values(
            await mbpoll(server.port, "-t", "4:int", "-B", "-r", "20", "-c", "1", "-1", "127.0.0.1")
        )
        f32_le = _read_values(await mbpoll(server.port, "-t", "4:float", "-r", "30", "-c", "1", "-1", "127.0.0.1"))
        f32_be = _read_values(
            await mbpoll(server.port, "-t", "4:float", "-B", "-r", "40", "-c", "1", "-1", "127.0.0.1")
        )
    assert int16[0] == "65215 (-321)"
    assert int32_le == {10: "-7654321", 12: "99"}
    assert int32_be == {20: "1234567890"}
    assert float(f32_le[30]) == -42.75
    assert float(f32_be[40]) == 6.5
