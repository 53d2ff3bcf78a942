"""``twincloud programs search|show|runs`` on a real SQLite database holding the Okuma recording and its
programs."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from cloud.cli import main
from cloud.config import load_cloud_config
from cloud.storage import open_storage
from tests.cloud.documents import program, tool
from tests.cloud.test_runs import DAY, load_okuma, okuma_programs

EXTRA = program("mill/O4242.nc", number="O4242", header=["FLANGE"], offsets=["G55"],
                tools=[tool(3, "10MM DRILL", 10.0, "drill", holes=8)], holes=8,
                diagnostics=[{"line": 9, "level": "error", "message": "G83 without Q"}])


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "cloud.toml"
    path.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "cloud.db"}"\n', encoding="utf-8")

    async def fill() -> None:
        storage = open_storage(load_cloud_config(path).database)
        await storage.open()
        try:
            await load_okuma(storage, [*okuma_programs(), EXTRA])
        finally:
            await storage.close()
    asyncio.run(fill())
    return path


def run(config: Path, *argv: str) -> int:
    return main(["--config", str(config), *argv])


def test_search_show_and_runs(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(config, "programs", "search", "--tool", "T3", "--json") == 0
    [found] = json.loads(capsys.readouterr().out)
    assert (found["path"], found["tools"], found["holes"], found["errors"]) == ("mill/O4242.nc", [3], 8, 1)
    assert run(config, "programs", "search", "--text", "imts-2022") == 0
    assert len(capsys.readouterr().out.splitlines()) == 4
    assert run(config, "programs", "show", EXTRA["sha256"][:10]) == 0
    shown = capsys.readouterr().out
    assert "(FLANGE)" in shown and "T3  drill      D10 mm" in shown and "line 9: error: G83 without Q" in shown
    assert run(config, "programs", "runs", "--device", "OKUMA", "--from", DAY[0], "--to", DAY[1], "--json") == 0
    runs = json.loads(capsys.readouterr().out)
    assert [round(r["duration_s"], 1) for r in runs["runs"]] == [605.0, 186.7, 16.8, 548.9]
    assert runs["calibrations"][0]["runs"] == 4 and runs["calibrations"][0]["method"] == "factor"
    sha = okuma_programs()[1]["sha256"]
    assert run(config, "programs", "runs", sha, "--from", DAY[0], "--to", DAY[1]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "IMTS-2022-2-HOB.MIN" in lines[0] and "3:06.7" in lines[0] and "completed" in lines[0]
    assert "calibrated 3:06." in lines[0] and lines[1].startswith("OKUMA: estimates x 1.250")


def test_bad_input_exits_2_with_a_plain_message(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(config, "programs", "show", "xyz") == 2
    assert "sha256" in capsys.readouterr().err
    assert run(config, "programs", "show", "0" * 64) == 2
    assert "no program" in capsys.readouterr().err
    assert run(config, "programs", "search", "--offset", "G99") == 2
    assert run(config, "programs", "runs", "--device", "nope") == 2
    assert "EXECUTION" in capsys.readouterr().err
    assert run(config, "programs", "runs", "--device", "OKUMA", "--from", "yesterday") == 2
