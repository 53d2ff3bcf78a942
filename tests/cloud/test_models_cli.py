"""``twincloud model``, ``alerts``, ``drift`` and ``events`` on a real SQLite database: a canary, the fleet,
a roll back."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path

import pytest

from cloud.cli import main
from cloud.config import load_cloud_config
from cloud.storage import open_storage
from cloud.storage.registry import AlertEventIn, ModelReportRow
from tests.mlkit import make_package, make_schema

T0 = 1_767_225_600_000_000


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "cloud.toml"
    path.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "cloud.db"}"\n', encoding="utf-8")
    for edge in ("line-1", "line-2"):
        assert main(["--config", str(path), "edge", "add", edge]) == 0
    return path


def run(config: Path, *argv: str) -> int:
    return main(["--config", str(config), *argv])


def test_upload_assign_to_a_canary_then_the_fleet_and_roll_back(config: Path, tmp_path: Path, capsys) -> None:
    files = []
    for threshold in (1.0, 2.0):
        path = tmp_path / f"bearing-{threshold}.twinmodel"
        path.write_bytes(make_package(make_schema(threshold=threshold), name="bearing")[0])
        files.append(path)
    capsys.readouterr()
    assert run(config, "model", "upload", str(files[0])) == 0
    assert "model bearing version 1" in capsys.readouterr().out
    assert run(config, "model", "upload", str(files[0])) == 0
    assert "version 1" in (out := capsys.readouterr().out) and "stored already" in out
    assert run(config, "model", "upload", str(files[1])) == 0
    assert run(config, "model", "assign", "bearing", "1", "--fleet") == 0
    assert run(config, "model", "assign", "bearing", "2", "--edge", "line-1") == 0  # the canary
    assert run(config, "model", "assign", "bearing", "2", "--fleet") == 0  # then everyone
    assert run(config, "model", "assign", "bearing", "1", "--fleet") == 0  # and back
    capsys.readouterr()
    assert run(config, "model", "assignments", "--json") == 0
    rules = {(r["scope"], r["target"]): r["version"] for r in json.loads(capsys.readouterr().out)}
    assert rules == {("edge", "line-1"): 2, ("fleet", None): 1}
    assert run(config, "model", "assignments", "--history") == 0
    history = capsys.readouterr().out.splitlines()
    assert len(history) == 4 and "bearing v2 -> bearing v1" in history[-1]
    assert run(config, "model", "info", "bearing") == 0
    info = capsys.readouterr().out
    assert "bearing version 2 (anomaly)" in info and "sensors temp, vib" in info and "edge line-1" in info
    assert run(config, "model", "list", "--json") == 0
    assert [m["version"] for m in json.loads(capsys.readouterr().out)] == [1, 2]
    out = tmp_path / "copy.twinmodel"
    assert run(config, "model", "download", "bearing", "2", "-o", str(out)) == 0
    assert out.read_bytes() == files[1].read_bytes()
    assert hashlib.sha256(out.read_bytes()).hexdigest() in capsys.readouterr().out
    assert run(config, "model", "delete", "bearing", "2") == 1  # the canary still has it
    assert "edge line-1" in capsys.readouterr().err
    assert run(config, "model", "unassign", "--edge", "line-1") == 0
    assert run(config, "model", "delete", "bearing", "2") == 0
    assert run(config, "model", "unassign", "--edge", "line-1") == 1


def test_bad_input_is_a_clear_error_without_a_traceback(config: Path, tmp_path: Path, capsys) -> None:
    junk = tmp_path / "junk.twinmodel"
    junk.write_bytes(b"not a zip at all")
    capsys.readouterr()
    assert run(config, "model", "upload", str(junk)) == 2
    assert "not a readable ZIP" in capsys.readouterr().err
    assert run(config, "model", "upload", str(tmp_path / "missing.twinmodel")) == 1
    assert run(config, "model", "assign", "nothing", "1", "--fleet") == 1
    assert run(config, "model", "info", "nothing") == 1
    assert run(config, "model", "assign", "nothing", "1", "--edge", "line-9") == 1
    assert "no edge named 'line-9'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run(config, "model", "delete", "bearing", "99999999999999999999")
    with pytest.raises(SystemExit):
        run(config, "model", "assign", "bearing", "1", "--fleet", "--edge", "line-1")


def test_alerts_are_listed_and_acknowledged_and_drift_is_shown(config: Path, capsys) -> None:
    async def fill() -> None:
        storage = open_storage(load_cloud_config(config).database)
        await storage.open()
        try:
            events = [AlertEventIn(k + 1, f"a{k}", "raised", "press-1", T0 + k, "bearing", 1, 3.0, 2.0, None,
                                   "vibration") for k in range(3)]
            report = ModelReportRow("", "press-1", "bearing", 1, "ab" * 32, "serving", "", 0.2, 1.7e9, "drift",
                                    {"temp": 0.05, "vib": 0.4}, 1000, 1)
            await storage.ingest("line-1", [], None, 1, alerts=events, reports=[report])
        finally:
            await storage.close()
    asyncio.run(fill())
    capsys.readouterr()
    assert run(config, "alerts", "list", "--json") == 0
    listed = json.loads(capsys.readouterr().out)
    assert [a["alert_id"] for a in listed] == ["a2", "a1", "a0"]
    assert run(config, "alerts", "ack", str(listed[0]["id"]), "--comment", "seen") == 0
    assert "acknowledged by" in capsys.readouterr().out
    assert run(config, "alerts", "list", "--state", "unacknowledged", "--json") == 0
    assert [a["alert_id"] for a in json.loads(capsys.readouterr().out)] == ["a1", "a0"]
    assert run(config, "alerts", "ack", "9999") == 1
    capsys.readouterr()
    assert run(config, "drift", "--drifted") == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("press-1") and "drift" in line and line.index("vib 0.400") < line.index("temp 0.050")


def test_events_lists_the_edges_event_log_up_to_a_level(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cloud.storage.events import EdgeEventIn

    async def seed() -> None:
        storage = open_storage(load_cloud_config(config).database)
        await storage.open()
        try:
            await storage.ingest("line-1", [], None, T0, events=[
                EdgeEventIn(1, T0, 0, "source_lost", None, "machine-2", "machine-2 stopped answering", {}),
                EdgeEventIn(2, T0 + 1, 1, "source_connected", None, "machine-1", "machine-1 connected", {"n": 1})])
        finally:
            await storage.close()

    asyncio.run(seed())
    capsys.readouterr()
    assert run(config, "events") == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and "machine-2 stopped answering" in lines[0] and "operator" in lines[0]
    assert run(config, "events", "--level", "technical", "--json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert [(e["seq"], e["level"], e["details"]) for e in shown] == [(2, "technical", {"n": 1}), (1, "operator", {})]
