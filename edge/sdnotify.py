"""systemd integration: sd_notify (READY, STATUS, WATCHDOG) and journal-friendly logging.

A notification is one datagram to ``$NOTIFY_SOCKET``, which is all sd_notify does.
The socket is opened once (``open_notify_socket()`` at start-up) and reused, so
watchdog pings still leave when every other descriptor of the process is taken;
systemd-python's ``notify`` opens a new socket per call and is not used for that
reason. A failed notification is logged (rate-limited) and never raises: the
watchdog loop must outlive any error it meets.
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import sys

from edge.logthrottle import Throttle

__all__ = ["close_notify_socket", "notify", "open_notify_socket", "setup_logging", "watchdog_interval"]

log = logging.getLogger(__name__)
_throttle = Throttle(log, interval=300.0)
_sock: socket.socket | None = None


def _address() -> str | None:
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return None
    if address.startswith("@"):
        return "\0" + address[1:]  # abstract namespace socket
    return address


def open_notify_socket() -> bool:
    """Open the datagram socket now (at start-up, while descriptors are free). True when under systemd."""
    global _sock
    if _address() is None:
        return False
    if _sock is None:
        try:
            _sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        except OSError as exc:
            _throttle.warning("socket", "cannot open a socket to notify systemd: %s; retrying at the next "
                              "notification", exc)
            return False
        _sock.setblocking(False)
    return True


@atexit.register
def close_notify_socket() -> None:
    global _sock
    if _sock is not None:
        _sock.close()
        _sock = None


def notify(state: str) -> bool:
    """Send e.g. "READY=1" or "STATUS=..." to systemd. False when not under systemd or when sending failed."""
    address = _address()
    if address is None or not open_notify_socket() or _sock is None:
        return False
    try:
        _sock.sendto(state.encode(), address)
    except OSError as exc:
        what = state.partition("=")[0]
        _throttle.warning(f"send:{what}", "could not send %s to systemd: %s", what, exc)
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
