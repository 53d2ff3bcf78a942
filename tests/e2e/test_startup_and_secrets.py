"""The daemon as a process: a queue directory it cannot create ends start-up with one line (exit 78), a password
in the uplink URL shows nowhere, secret files others can read are warned about, and the state it creates is
closed to other users."""

from __future__ import annotations

import asyncio
import json
import stat
import subprocess
import sys
from pathlib import Path

from tests.e2e.daemon import EdgeDaemon
from tests.e2e.devices import Device
from tests.support import free_port

SECRET = "hunter2-in-the-url"


def twinedge(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge.cli", *args], capture_output=True, text=True, check=False,
                          timeout=60)


def test_a_state_dir_under_a_regular_file_ends_start_up_with_one_line_and_exit_78(tmp_path: Path) -> None:
    (tmp_path / "var").write_text("not a directory")
    config = tmp_path / "edge.toml"
    config.write_text(f'[edge]\nid = "e1"\nstate_dir = "{tmp_path / "var" / "twinedge"}"\n'
                      f'[control]\nsocket = "{tmp_path / "c.sock"}"\n[broker]\nenabled = false\n')
    proc = twinedge("run", "-c", str(config))
    assert proc.returncode == 78, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert 1 <= len(lines) <= 2, lines  # the log's CRITICAL line and the CLI's own
    assert f"{tmp_path / 'var'} is a file" in lines[-1] and "edge.state_dir" in lines[-1]


async def test_a_password_in_the_uplink_url_shows_nowhere_and_readable_secrets_are_warned_about(
    tmp_path: Path,
) -> None:
    token = tmp_path / "edge.token"
    token.write_text("edge-token-value\n")
    token.chmod(0o644)  # readable by every user: warned about
    closed = free_port()  # the cloud is down: the uplink's error names the URL
    daemon = EdgeDaemon(tmp_path / "edge", (
        f'[uplink]\nurl = "http://edge:{SECRET}@127.0.0.1:{closed}/"\ntoken_file = "{token}"\n'
        'retry_initial = "50ms"\nretry_max = "200ms"\n'))
    await daemon.start()
    device, stop = Device("press-1"), asyncio.Event()
    try:
        publishing = asyncio.create_task(device.publish_until_cut(daemon.mqtt_port, stop), name="press-1")
        async with asyncio.timeout(30):
            await device.progress.wait()  # a frame for the uplink to send
        stop.set()
        await publishing
        async with asyncio.timeout(30):
            while not (await daemon.status())["cloud"]["last_error"]:
                await asyncio.sleep(0.05)
        text = await asyncio.to_thread(twinedge, "status", "--socket", str(daemon.socket))
        as_json = await asyncio.to_thread(twinedge, "status", "--json", "--socket", str(daemon.socket))
    finally:
        assert await daemon.stop() == 0
    log = daemon.log.read_text()
    checked = await asyncio.to_thread(twinedge, "check-config", str(daemon.config))
    checked_json = await asyncio.to_thread(twinedge, "check-config", "--json", str(daemon.config))

    for output in (text.stdout, as_json.stdout, log, checked.stdout + checked.stderr, checked_json.stdout):
        assert SECRET not in output and "edge-token-value" not in output
    assert f"cloud:        retrying (http://edge:***@127.0.0.1:{closed}/)" in text.stdout
    status = json.loads(as_json.stdout)
    assert status["cloud"]["url"] == f"http://edge:***@127.0.0.1:{closed}/"
    assert "http://edge:***@" in status["cloud"]["last_error"]
    assert "uplink to http://edge:***@" in log  # the start-up line
    assert json.loads(checked_json.stdout)["config"]["uplink"]["url"] == f"http://edge:***@127.0.0.1:{closed}/"

    warning = f"{token} (uplink.token_file) can be read by every user on this machine (mode 644)"
    assert warning in log and warning in checked.stderr
    assert any(warning in w for w in json.loads(checked_json.stdout)["warnings"])

    state = daemon.queue.parent
    assert stat.S_IMODE(state.stat().st_mode) == 0o750
    for file in state.glob("queue.db*"):
        assert stat.S_IMODE(file.stat().st_mode) & 0o007 == 0, file
