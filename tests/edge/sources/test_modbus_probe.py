"""`twinedge probe modbus` against a real pymodbus server: ad hoc and from a config file."""

from __future__ import annotations

import argparse
import json
import struct
from pathlib import Path

import pytest

from edge.sources.modbus import probe as modbus_probe
from tests.edge.sources.test_modbus_support import ModbusTestServer, device
from tests.support import free_port


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="twinedge probe modbus")
    modbus_probe.add_arguments(parser)
    return parser.parse_args(list(argv))


def holding() -> list[int]:
    return list(struct.unpack(">2H", struct.pack(">f", -12.5)))[::-1] + [0x4142, 0x4300, 250]  # float32 CDAB


def plc() -> list:  # type: ignore[type-arg]
    return [device(1, holding={0: holding()})]


async def test_ad_hoc_read_shows_words_and_the_decoded_value(capsys: pytest.CaptureFixture[str]):
    async with ModbusTestServer(plc) as server:
        code = await modbus_probe.run(parse(
            "--host", "127.0.0.1", "--port", str(server.port), "--address", "0", "--type", "float32",
            "--order", "CDAB", "--unit-text", "bar",
        ))
    out = capsys.readouterr().out
    assert code == 0
    assert f"Modbus device probe at 127.0.0.1:{server.port} unit 1: 1 read(s)" in out
    assert "holding 0..1" in out and "[0x0000 0xC148]" in out and "= -12.5 bar" in out


async def test_json_output_for_scripts(capsys: pytest.CaptureFixture[str]):
    async with ModbusTestServer(plc) as server:
        code = await modbus_probe.run(parse(
            "--host", "127.0.0.1", "--port", str(server.port), "--address", "4", "--scale", "0.1", "--json",
        ))
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    assert report["values"] == [{
        "name": "value", "table": "holding", "address": 4, "type": "uint16", "order": "ABCD",
        "words": [250], "value": 25.0, "unit": None, "problem": None,
    }]


def write_config(tmp_path: Path, port: int) -> Path:
    path = tmp_path / "edge.toml"
    path.write_text(f"""
[edge]
id = "edge-1"

[[sources]]
kind = "modbus"
name = "press-3"
[sources.tcp]
host = "127.0.0.1"
port = {port}
[[sources.registers]]
name = "force"
address = 0
type = "float32"
order = "CDAB"
[[sources.registers]]
name = "recipe"
address = 2
type = "string"
length = 4
[[sources.registers]]
name = "speed"
address = 4
scale = 0.1
unit = "rpm"
""", encoding="utf-8")
    return path


async def test_config_mode_uses_the_configured_decoding(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    async with ModbusTestServer(plc) as server:
        path = write_config(tmp_path, server.port)
        code = await modbus_probe.run(parse("--config", str(path), "--source", "press-3", "--json"))
        everything = json.loads(capsys.readouterr().out)
        code_one = await modbus_probe.run(parse("--config", str(path), "--source", "press-3", "--register", "speed"))
        one = capsys.readouterr().out
    assert code == 0 and code_one == 0
    assert {v["name"]: v["value"] for v in everything["values"]} == {"force": -12.5, "recipe": "ABC", "speed": 25.0}
    assert everything["requests"] == 1  # the three values are one read, as in the daemon
    assert "speed" in one and "= 25.0 rpm" in one and "force" not in one


async def test_a_refused_read_is_explained_and_exits_1(capsys: pytest.CaptureFixture[str]):
    async with ModbusTestServer(plc) as server:
        code = await modbus_probe.run(parse("--host", "127.0.0.1", "--port", str(server.port), "--address", "900"))
    out = capsys.readouterr().out
    assert code == 1
    assert "FAILED holding 900 (value): the device answered 'illegal data address'" in out


async def test_an_unreachable_device_exits_1(capsys: pytest.CaptureFixture[str]):
    port = free_port()
    code = await modbus_probe.run(parse("--host", "127.0.0.1", "--port", str(port), "--address", "0"))
    assert code == 1
    assert f"Modbus device probe at 127.0.0.1:{port} unit 1 refused the connection" in capsys.readouterr().out


async def test_unknown_source_or_register_is_a_config_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    path = write_config(tmp_path, 502)
    assert await modbus_probe.run(parse("--config", str(path), "--source", "press-4")) == 78
    assert "no modbus source named 'press-4'; modbus sources in this file: 'press-3'" in capsys.readouterr().err
    assert await modbus_probe.run(parse("--config", str(path), "--source", "press-3", "--register", "x")) == 78
    assert "source 'press-3' has no register 'x'; it has: force, recipe, speed" in capsys.readouterr().err


async def test_bad_ad_hoc_arguments_exit_2_with_the_option_named(capsys: pytest.CaptureFixture[str]):
    assert await modbus_probe.run(parse("--host", "h", "--address", "70000")) == 2
    assert "--address: Input should be less than or equal to 65535" in capsys.readouterr().err
    assert await modbus_probe.run(parse("--host", "h", "--address", "1", "--type", "string")) == 2
    assert "type 'string' needs length" in capsys.readouterr().err
    assert await modbus_probe.run(parse("--address", "1")) == 2
