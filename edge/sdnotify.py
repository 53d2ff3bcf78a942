"""systemd integration: sd_notify (READY, STATUS, WATCHDOG) and journal-friendly logging.

systemd-python is used when installed; otherwise the notification goes straight to
``$NOTIFY_SOCKET`` as a datagram, which is all sd_notify does.
"""

from __future__ import annotations

import logging
import os
import socket
import sys

__all__ = ["notify", "setup_logging", "watchdog_interval"]

try:  # optional extra: pip install twinedge[systemd]
    from systemd import daemon as _sd_daemon  # type: ignore[attr-defined, unused-ignore]
except ImportError:
    _sd_daemon = None


def notify(state: str) -> bool:
    """Send e.g. "READY=1" or "STATUS=..." to systemd. Returns False when not under systemd."""
    if _sd_daemon is not None:
        return bool(_sd_daemon.notify(state))
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # abstract namespace socket
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        try:
            sock.sendto(state.encode(), address)
        except OSError:
            return False
    return True


def watchdog_interval() -> float | None:
    """Seconds between watchdog pings (half of WatchdogSec), or None when no watchdog is set."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return max(0.5, int(usec) / 2_000_000)
    except ValueError:
        return None


class _JournalFormatter(logging.Formatter):
    """``<N>message``: journald reads the priority prefix from stderr lines and adds the time."""

    _PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}

    def format(self, record: logging.LogRecord) -> str:
        prio = self._PRIORITY.get(record.levelno, 6)
        return f"<{prio}>{record.name}: {super().format(record)}"


def setup_logging(level: str = "info") -> None:
    """Journal format under systemd, readable lines with time and level on a terminal."""
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("JOURNAL_STREAM") or os.environ.get("INVOCATION_ID"):
        handler.setFormatter(_JournalFormatter("%(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Third-party libraries are chatty at INFO; operators read our lines.
    for name in ("transitions", "aiosqlite", "httpx", "httpcore"):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    # pymodbus and asyncua log every failed retry (asyncua with tracebacks), amqtt
    # its start-up failures and half-open probes, at WARNING/ERROR; our own code
    # says the same once, in plain words.
    for name in ("pymodbus", "asyncua", "amqtt"):
        logging.getLogger(name).setLevel(logging.DEBUG if level == "debug" else logging.CRITICAL)
