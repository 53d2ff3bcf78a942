"""`twinedge check-config` and the sample configs: every sample loads, every mistake is named."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edge.config import load_gateway_config
from edge.sources import SOURCES

ROOT = Path(__file__).parents[2]
EXAMPLES = [*sorted((ROOT / "docs" / "examples").glob("*.toml")), ROOT / "deploy" / "edge.example.toml"]


def twinedge(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge.cli", *args], capture_output=True, text=True, check=False)


def test_there_are_samples_for_every_source_kind() -> None:
    texts = "\n".join(p.read_text() for p in EXAMPLES)
    for kind in SOURCES:
        assert f'kind = "{kind}"' in texts, f"no sample config uses kind {kind!r}"


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_sample_config_loads(path: Path) -> None:
    load_gateway_config(path)


def test_check_config_accepts_a_sample_and_summarises_it() -> None:
    sample = next(p for p in EXAMPLES if p.name == "modbus.toml")
    proc = twinedge("check-config", str(sample))
    assert proc.returncode == 0, proc.stderr
    assert "OK" in proc.stdout and "modbus" in proc.stdout


BAD = {
    "unknown key": ('[edge]\nid = "e1"\nstat_dir = "/x"\n', "edge.stat_dir: unknown key; did you mean 'state_dir'?"),
    "port range": (
        '[edge]\nid = "e1"\n[broker]\nallow_anonymous = true\n'
        'listeners = [{ name = "a", port = 70000 }]\n',
        "broker.listeners[0].port: Input should be less than or equal to 65535 (got 70000)",
    ),
    "no edge id": ('[store]\nbatch_max_frames = 10\n', "edge: required key is missing"),
    "bad edge id": ('[edge]\nid = "my edge"\n', "edge.id: String should match pattern"),
    "duration without unit": ('[edge]\nid = "e1"\n[store]\nbatch_max_delay = 5\n', "give the unit"),
    "tls without files": (
        '[edge]\nid = "e1"\n[broker]\nallow_anonymous = true\n'
        'listeners = [{ name = "tls", port = 8883, tls = true }]\n',
        "a TLS listener needs certfile and keyfile",
    ),
    "broker without auth": ('[edge]\nid = "e1"\n[broker]\nenabled = true\n', "set password_file"),
    "broken toml": ('[edge\nid = "e1"\n', "not valid TOML"),
    "unknown kind": ('[edge]\nid = "e1"\n[[sources]]\nkind = "bacnet"\nname = "x"\n', "unknown 'kind' 'bacnet'"),
    "duplicate names": (
        '[edge]\nid = "e1"\n'
        '[[sources]]\nkind = "opcua"\nname = "a"\nurl = "opc.tcp://127.0.0.1:4840"\n'
        'nodes = [{ name = "t", node_id = "ns=2;s=T" }]\n'
        '[[sources]]\nkind = "opcua"\nname = "a"\nurl = "opc.tcp://127.0.0.1:4841"\n'
        'nodes = [{ name = "t", node_id = "ns=2;s=T" }]\n',
        "two sources are named 'a'",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_check_config_names_each_mistake_and_exits_78(tmp_path: Path, case: str) -> None:
    text, expected = BAD[case]
    path = tmp_path / "edge.toml"
    path.write_text(text)
    proc = twinedge("check-config", str(path))
    assert proc.returncode == 78
    assert expected in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_check_config_json_lists_the_errors(tmp_path: Path) -> None:
    path = tmp_path / "edge.toml"
    path.write_text('[edge]\nid = "e1"\nfoo = 1\n[store]\ndisk_budget = "lots"\n')
    proc = twinedge("check-config", "--json", str(path))
    assert proc.returncode == 78
    report = json.loads(proc.stdout)
    assert report["ok"] is False and len(report["errors"]) == 2


def test_run_with_a_bad_config_exits_78_without_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "edge.toml"
    path.write_text('[edge]\nid = "e1"\n[store]\nwhen_full = "panic"\n')
    proc = twinedge("run", "-c", str(path))
    assert proc.returncode == 78
    assert "store.when_full" in proc.stderr and "Traceback" not in proc.stderr


def test_probe_dispatches_to_the_protocol_help() -> None:
    proc = twinedge("probe", "modbus", "--help")
    assert proc.returncode == 0 and "--address" in proc.stdout


def test_a_taken_broker_port_ends_the_daemon_with_78_and_plain_words(tmp_path: Path) -> None:
    import socket

    from edge.broker.auth import set_password

    passwd = tmp_path / "passwd"
    set_password(passwd, "u", "p-123456")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        path = tmp_path / "edge.toml"
        path.write_text(
            f'[edge]\nid = "e1"\nstate_dir = "{tmp_path / "state"}"\n'
            f'[control]\nsocket = "{tmp_path / "c.sock"}"\n'
            f'[broker]\npassword_file = "{passwd}"\nlisteners = [{{ name = "plant", port = {port} }}]\n'
        )
        proc = twinedge("run", "-c", str(path))
    assert proc.returncode == 78, proc.stderr
    assert "cannot start" in proc.stderr and str(port) in proc.stderr
    assert "Traceback" not in proc.stderr


def _closed_pipe_run(*args: str) -> subprocess.CompletedProcess[str]:
    """Run twinedge with stdout on a pipe whose reader is already gone (as `| head` leaves it)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run([sys.executable, "-m", "edge.cli", *args], stdout=write_end, stderr=subprocess.PIPE,
                              text=True, check=False)
    finally:
        os.close(write_end)


@pytest.mark.parametrize("command", [["check-config", "SAMPLE"], ["check-config", "--json", "SAMPLE"]])
def test_a_closed_pipe_ends_the_command_quietly(command: list[str]) -> None:
    sample = str(next(p for p in EXAMPLES if p.name == "modbus.toml"))
    proc = _closed_pipe_run(*[sample if arg == "SAMPLE" else arg for arg in command])
    assert proc.stderr == ""
    assert proc.returncode == 0


def test_a_control_socket_that_cannot_be_created_stops_start_up_with_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where a directory should be")
    path = tmp_path / "edge.toml"
    path.write_text(
        f'[edge]\nid = "e1"\nstate_dir = "{tmp_path / "state"}"\n[control]\nsocket = "{blocker / "control.sock"}"\n'
    )
    proc = twinedge("run", "-c", str(path))
    assert proc.returncode == 78
    assert "Traceback" not in proc.stderr
    [line] = [x for x in proc.stderr.splitlines() if x.startswith("twinedge:")]
    assert f"cannot create the control socket {blocker / 'control.sock'}" in line


def test_an_unreadable_ca_file_for_the_external_broker_stops_start_up_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "edge.toml"
    path.write_text(
        f'[edge]\nid = "e1"\nstate_dir = "{tmp_path / "state"}"\n[control]\nsocket = "{tmp_path / "c.sock"}"\n'
        f'[mqtt_client]\nhost = "127.0.0.1"\ntls = true\ncafile = "{tmp_path / "missing-ca.pem"}"\n'
    )
    proc = twinedge("run", "-c", str(path))
    assert proc.returncode == 78, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"cannot load mqtt_client.cafile {tmp_path / 'missing-ca.pem'}" in proc.stderr
