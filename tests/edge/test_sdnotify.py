"""sd_notify against a real datagram socket: pings survive descriptor exhaustion, failures never raise."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from edge.sdnotify import close_notify_socket, notify

# Runs in its own process: it takes every descriptor it may open, then pings.
EXHAUSTED = """
import os, resource
from edge.sdnotify import notify, open_notify_socket
assert open_notify_socket()
resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
held = []
try:
    while True:
        held.append(os.open(os.devnull, os.O_RDONLY))
except OSError as exc:
    print("exhausted:", exc.errno)
print("sent:", notify("WATCHDOG=1"))
"""


def test_watchdog_pings_still_leave_when_no_descriptor_is_free(tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd:
        systemd.bind(str(path))
        systemd.settimeout(10)
        done = subprocess.run(
            [sys.executable, "-c", EXHAUSTED], capture_output=True, text=True, timeout=60,
            env={"NOTIFY_SOCKET": str(path), "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == ["exhausted: 24", "sent: True"]  # EMFILE, and the ping left
        assert systemd.recv(4096) == b"WATCHDOG=1"


def test_a_failed_notification_returns_false_and_is_logged_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens.sock"))
    caplog.set_level(logging.WARNING, logger="edge.sdnotify")
    try:
        assert [notify("WATCHDOG=1") for _ in range(5)] == [False] * 5
    finally:
        close_notify_socket()
    lines = [r.getMessage() for r in caplog.records if r.name == "edge.sdnotify"]
    assert len(lines) == 1 and lines[0].startswith("could not send WATCHDOG to systemd")


def test_outside_systemd_nothing_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert notify("READY=1") is False
