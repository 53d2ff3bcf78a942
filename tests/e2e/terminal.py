"""A terminal window for end-to-end tests: an interactive bash in a pseudo-terminal of its own.

bash runs as the leader of a new session with the pty as its controlling
terminal, as in a terminal emulator: what is typed (``type``) goes through
the line discipline, so Ctrl-C (``ctrl_c``) sends SIGINT to the foreground
job, and ``hang_up`` closes the terminal (the kernel sends SIGHUP to bash,
which passes it to its jobs). Everything the terminal shows is read all the
time by a thread: a pty nobody reads fills up and blocks its writers.
"""

from __future__ import annotations

import contextlib
import os
import pty
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path

__all__ = ["Terminal", "processes_mentioning"]

# Become the session's controlling terminal's owner (Popen already called setsid), then bash.
_LEADER = "import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); os.execvp(sys.argv[1], sys.argv[1:])"


class Terminal:
    def __init__(self, cwd: Path, env: Mapping[str, str]) -> None:
        self._master, slave = pty.openpty()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _LEADER, "bash", "--norc", "--noprofile", "-i"],
            stdin=slave, stdout=slave, stderr=slave, cwd=cwd, start_new_session=True,
            env={**env, "PS1": "$ ", "TERM": "dumb", "HISTFILE": os.devnull},
        )
        os.close(slave)
        self._shown = bytearray()
        self._changed = threading.Condition()
        self._open = True
        threading.Thread(target=self._read, name="test-terminal", daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self._master, 65536)
            except OSError:  # EIO once bash and every job have let go of the terminal
                data = b""
            with self._changed:
                self._shown += data
                self._changed.notify_all()
            if not data:
                return

    @property
    def text(self) -> str:
        with self._changed:
            return self._shown.decode(errors="replace")

    def type(self, line: str) -> None:
        os.write(self._master, line.encode() + b"\n")

    def ctrl_c(self) -> None:
        os.write(self._master, b"\x03")

    def wait_for(self, text: str, timeout: float) -> str:
        """Wait until the terminal has shown ``text``; everything shown so far."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while text.encode() not in self._shown:
                left = deadline - time.monotonic()
                if left <= 0:
                    tail = self._shown.decode(errors="replace")[-3000:]
                    raise TimeoutError(f"{text!r} did not appear within {timeout:.0f} s; the terminal shows:\n{tail}")
                self._changed.wait(left)
            return self._shown.decode(errors="replace")

    def hang_up(self) -> None:
        """Close the terminal, as closing its window does."""
        if self._open:
            self._open = False
            os.close(self._master)

    def close(self) -> None:
        self.hang_up()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)


def processes_mentioning(text: str) -> dict[int, str]:
    """Every process but this one whose command line contains ``text``: pid -> command line."""
    found = {}
    for entry in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            stat = (entry / "stat").read_text()
            if text in cmdline and int(entry.name) != os.getpid() and stat.rpartition(")")[2].split()[0] != "Z":
                found[int(entry.name)] = cmdline
    return found
