"""``twinsim``: the generated edge config loads, bad arguments are refused, and a real process starts and stops."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import tomllib
from pathlib import Path

import pytest
from pymodbus.client import AsyncModbusTcpClient

from edge.config import load_gateway_config
from edge.sources.modbus import ModbusSourceConfig
from edge.sources.opcua import OpcUaSourceConfig
from tests.support import free_port, lines_until_ready, sigterm_and_wait
from tests.twinsim.simsupport import free_ports
from twinsim.cli import main
from twinsim.opcua_server import OPCUA_VARIABLES
from twinsim.registers import COILS, DISCRETE_INPUTS, HOLDING, INPUT

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "docs" / "examples" / "sim-edge.toml"
EXAMPLE_ARGS = ["config", "--machines", "3", "--modbus-port", "5020", "--opcua-port", "4840"]


def config(tmp_path: Path, *args: str) -> Path:
    out = tmp_path / "edge.toml"
    assert main(["config", *args, "-o", str(out)]) == 0
    return out


def test_generated_config_loads_and_reads_every_documented_value(tmp_path: Path) -> None:
    cfg = load_gateway_config(config(tmp_path, "--machines", "3", "--modbus-port", "6000", "--opcua-port", "4999"))
    modbus = [s for s in cfg.sources if isinstance(s, ModbusSourceConfig)]
    opcua = [s for s in cfg.sources if isinstance(s, OpcUaSourceConfig)]
    assert len(modbus) + len(opcua) == len(cfg.sources)
    assert [(s.name, s.tcp and s.tcp.port, s.unit_id) for s in modbus] == [
        ("machine-1", 6000, 1), ("machine-2", 6001, 1), ("machine-3", 6002, 1)]
    documented = {(f.name, f.table, f.address) for f in (*HOLDING, *INPUT, *COILS, *DISCRETE_INPUTS)}
    for source in modbus:
        assert {(r.name, r.table, r.address) for r in source.registers} == documented
        spindle = next(r for r in source.registers if r.name == "spindle_temp")
        uptime = next(r for r in source.registers if r.name == "uptime")
        assert (spindle.type, spindle.order, uptime.type, uptime.order) == ("float32", "ABCD", "uint32", "CDAB")
    assert len(opcua) == 1 and opcua[0].url == "opc.tcp://127.0.0.1:4999"
    nodes = opcua[0].nodes
    assert len(nodes) == 3 * len(OPCUA_VARIABLES)
    assert any(n.node_id == "ns=2;s=Machine3.SpindleTemp" and n.device_id == "machine-3-opcua" for n in nodes)


def test_unit_id_config_puts_every_machine_on_one_port(tmp_path: Path) -> None:
    cfg = load_gateway_config(config(tmp_path, "--machines", "4", "--unit-ids", "--no-opcua"))
    sources = [s for s in cfg.sources if isinstance(s, ModbusSourceConfig)]
    assert [(s.tcp and s.tcp.port, s.unit_id) for s in sources] == [
        (5020, 1), (5020, 2), (5020, 3), (5020, 4)]


def test_benchmark_config_includes_padding_registers_and_items(tmp_path: Path) -> None:
    cfg = load_gateway_config(config(tmp_path, "--machines", "2", "--registers", "100", "--opcua-items", "1200"))
    machine, opcua = cfg.sources[0], cfg.sources[-1]
    assert isinstance(machine, ModbusSourceConfig) and isinstance(opcua, OpcUaSourceConfig)
    assert max(r.address for r in machine.registers if r.table == "holding") == 99
    nodes = opcua.nodes
    assert sum(n.node_id.startswith("ns=2;s=Bench.") for n in nodes) == 1200


def test_committed_example_is_what_twinsim_config_prints(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(EXAMPLE_ARGS) == 0
    assert EXAMPLE.read_text(encoding="utf-8") == capsys.readouterr().out
    load_gateway_config(EXAMPLE)


def test_config_that_cannot_fit_in_a_frame_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "--registers", "600"]) == 2
    assert "at most 512 values per frame" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "--fault", "machine-2:overheat"], "is not <machine>:<fault>@<start>"),
        (["run", "--machines", "2", "--fault", "machine-3:overheat@1s"], "machines are numbered 1..2"),
        (["run", "--fault", "machine-1:dropout=flaky@1s"], "unknown dropout mode 'flaky'"),
        (["run", "--no-modbus", "--no-opcua"], "nothing to serve"),
        (["run", "--no-opcua", "--fault", "opcua:plc_restart@1s"], "needs the OPC-UA server"),
        (["run", "--unit-ids", "--machines", "300"], "unit ids only go up to 247"),
        (["run", "--tick", "100"], "expected a duration such as '100ms'"),
        (["run", "--tick", "1ms"], "between 0.01s and 10s"),
        (["run", "--machines", "0"], "must be 1..1000"),
        (["run", "--registers", "five"], "expected a whole number"),
        (["config", "--poll-interval", "fast"], "expected a duration"),
        (["config", "--no-modbus", "--no-opcua"], "nothing to read"),
        (["launch"], "invalid choice"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_no_command_prints_help() -> None:
    assert main([]) == 2


def test_a_taken_modbus_port_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["run", "--machines", "1", "--no-opcua", "--modbus-port", str(port)]) == 1
    assert f"127.0.0.1:{port}" in capsys.readouterr().err


async def test_process_serves_announces_ready_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    modbus, opcua, ready = free_ports(2), free_port(), tmp_path / "ready.json"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "twinsim", "run", "--machines", "2", "--modbus-port", str(modbus),
        "--opcua-port", str(opcua), "--ready-file", str(ready), "--summary-every", "200ms",
        "--fault", "machine-2:overheat@0s", cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        lines = await lines_until_ready(proc)
        info = json.loads(ready.read_text())
        assert [m["port"] for m in info["modbus"]] == [modbus, modbus + 1]
        assert info["opcua"] == f"opc.tcp://127.0.0.1:{opcua}"
        assert any(f"127.0.0.1:{modbus + 1}" in line for line in lines)
        client = AsyncModbusTcpClient("127.0.0.1", port=modbus + 1, timeout=2, retries=0)
        assert await client.connect()
        number = await client.read_holding_registers(19, count=1, device_id=1)
        client.close()
        assert number.registers == [2]
        async with asyncio.timeout(10):  # the periodic summary names each machine
            while not any(line.lstrip().startswith("machine-2") for line in lines):
                assert proc.stdout is not None
                lines.append((await proc.stdout.readline()).decode().strip())
    finally:
        out, err = await sigterm_and_wait(proc)
    assert proc.returncode == 0, err.decode()
    assert "twinsim stopping (SIGTERM)" in out.decode()
    assert not ready.exists()


def test_example_config_is_valid_toml_with_the_expected_sections() -> None:
    data = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    assert {"edge", "store", "sources"} <= data.keys()
    assert [s["kind"] for s in data["sources"]] == ["modbus"] * 3 + ["opcua"]


def test_docs_list_every_register_and_node() -> None:
    text = (REPO / "docs" / "simulator.md").read_text(encoding="utf-8")
    for f in (*HOLDING, *INPUT, *COILS, *DISCRETE_INPUTS):
        address = f"{f.address}–{f.address + 1}" if f.count == 2 else str(f.address)
        row = f"| {f.table} | {address} | `{f.name}` | {f.type} | {f.order if f.count == 2 else ''} |"
        assert row in text, row
    for var in OPCUA_VARIABLES:
        assert f"| `ns=2;s=Machine1.{var.browse_name}` | {var.type_name} |" in text, var.browse_name


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_stops_cleanly_when_its_output_pipe_has_no_reader(tmp_path: Path, sig: signal.Signals) -> None:
    """`twinsim run | tee log`, then Ctrl-C or a closed terminal: tee is gone before twinsim is told to
    stop, and what twinsim prints then must not keep it from closing its servers."""
    modbus, ready = free_port(), tmp_path / "ready.json"
    read_end, write_end = os.pipe()
    with subprocess.Popen(
        [sys.executable, "-m", "twinsim", "run", "--machines", "1", "--no-opcua", "--modbus-port", str(modbus),
         "--ready-file", str(ready)], cwd=REPO, stdout=write_end, stderr=write_end,
    ) as proc:
        os.close(write_end)
        watchdog = threading.Timer(30, proc.kill)  # a twinsim that never gets ready ends the wait below
        watchdog.start()
        try:
            with os.fdopen(read_end, "rb") as out:
                while b"twinsim ready" not in (line := out.readline()):
                    assert line, "twinsim exited before it was ready"
            watchdog.cancel()
            proc.send_signal(sig)  # the pipe has no reader any more
            assert proc.wait(timeout=20) == 0
        finally:
            watchdog.cancel()
            proc.kill()
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", modbus)) != 0
    assert not ready.exists()
