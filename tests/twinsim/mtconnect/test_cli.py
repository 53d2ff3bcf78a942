"""``twinsim mtconnect``: a real process serves the replay, announces itself, and stops on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import httpx
import pytest

from edge.sources.mtconnect.protocol import Probe, Streams, parse_probe, parse_streams
from tests.support import lines_until_ready, sigterm_and_wait
from twinsim.cli import main

REPO = Path(__file__).resolve().parents[3]


async def test_the_agent_process_serves_the_replay_and_stops_on_sigterm(tmp_path: Path) -> None:
    ready = tmp_path / "ready.json"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "twinsim", "mtconnect", "--port", "0", "--speed", "max", "--buffer", "2048",
        "--instance-id", "99", "--schema-version", "1.7", "--once", "--ready-file", str(ready), cwd=REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        lines = await lines_until_ready(proc)
        info = json.loads(ready.read_text())
        assert any(info["url"] in line and "instanceId 99" in line for line in lines)
        async with httpx.AsyncClient(base_url=info["url"]) as client:
            probe = parse_probe((await client.get("/probe")).content)
            assert isinstance(probe, Probe) and probe.header.instance_id == 99
            async with asyncio.timeout(30):  # the whole recording, as fast as possible: 25,700 observations
                while True:
                    current = parse_streams((await client.get("/current")).content)
                    assert isinstance(current, Streams) and current.header.buffer_size == 2048
                    if current.header.next_sequence == 25_701:
                        break
                    await asyncio.sleep(0.05)
    finally:
        out, err = await sigterm_and_wait(proc)
    assert proc.returncode == 0, err.decode()
    assert "twinsim stopping (SIGTERM)" in out.decode()
    assert not ready.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--speed", "fast-ish"], "expected a factor like 1, 10 or 0.5, or 'max'"),
        (["--speed", "0"], "must be 0.001..100000"),
        (["--schema-version", "3.0"], "invalid choice: '3.0'"),
        (["--buffer", "0"], "must be 1..16777216"),
        (["--devices-xml", "/nonexistent/Devices.xml"], "No such file"),
        (["--device", "Haas"], "no device named Haas"),
    ],
)
def test_bad_arguments_are_refused_in_plain_words(args: list[str], message: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["mtconnect", *args]) == 2
    assert message in capsys.readouterr().err
