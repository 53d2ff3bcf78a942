"""The processes behind `make run`: one console, the children, and how every way of ending stops them.

- ``Console``: every line goes through one queue to a writer thread that
  writes with ``os.write``. A closed pipe (``| tee`` gone after Ctrl-C), a
  hung-up terminal or a stopped one (Ctrl-S) can block or fail that thread
  only: the stop sequence never waits on stdout and never dies of a write.
- ``Child``: started in a session of its own (the terminal's Ctrl-C reaches
  the demo, which stops the children in order), its stdout and stderr read
  through pipes and printed with its name in front, in one log format. On
  Linux the kernel sends it SIGTERM when the demo dies, even by SIGKILL
  (``PR_SET_PDEATHSIG``, set by a few lines run before the real command).
- ``RunDir``: a lock in the run directory, so a second run refuses to start
  while the first still runs, and stops what a dead earlier run left behind.
- ``pick_port``: the port asked for unless another program listens there.
  It is checked as the servers bind it (``SO_REUSEADDR``): the connections
  a run that just ended leaves in TIME_WAIT do not make it look taken.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

__all__ = ["CHILD_MODULES", "Child", "Console", "DemoFailed", "RunDir", "RunDirBusy", "pick_port", "port_free",
           "stop_children"]

CHILD_MODULES = ("cloud.cli", "twinsim.cli", "edge.cli")
LEVELS = "TRACE|DEBUG|INFO|WARNING|ERROR|CRITICAL"
# "2026-01-31 12:00:01,234 INFO name: message" (logging's default time) or "12:00:01 INFO    name: message"
_LOG_LINE = re.compile(rf"^(?:\d{{4}}-\d\d-\d\d[ T])?(\d\d:\d\d:\d\d)(?:[.,]\d+)? +({LEVELS}) +(\S+?): (.*)$")
_UVICORN_LINE = re.compile(rf"^({LEVELS}):\s+(.*)$")  # uvicorn's own formatter: "INFO:     message"

_SERVICE_VARIABLES = ("JOURNAL_STREAM", "INVOCATION_ID", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
# Run in the child's interpreter before its command: ask the kernel for SIGTERM when the demo (argv[1]) dies,
# give up if it already has, then become the real command (the signal request survives exec).
_PARENT_GUARD = """\
import ctypes, os, signal, sys
ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
if os.getppid() != int(sys.argv[1]):
    sys.exit(0)
os.execv(sys.executable, [sys.executable, *sys.argv[2:]])
"""


class DemoFailed(Exception):
    """The demo cannot go on; the message says why, for a person."""


def now() -> str:
    return time.strftime("%H:%M:%S")


def log_line(level: str, name: str, message: str) -> str:
    """The one log format of `make run` (the edge's terminal format): ``12:00:01 INFO    name: message``."""
    return f"{now()} {level:<7} {name}: {message}"


def normalize(line: str, logger: str, from_stderr: bool) -> str:
    """A child's output line in the one log format; lines that are no log record (a traceback's body,
    a plain print) are indented under the record before them, or stamped as INFO when printed on stdout."""
    if match := _LOG_LINE.match(line):
        stamp, level, name, message = match.groups()
        return f"{stamp} {level:<7} {logger if name == '__main__' else name}: {message}"
    if match := _UVICORN_LINE.match(line):
        return log_line(match.group(1), "uvicorn", match.group(2))
    return f"{'':8} {line}" if from_stderr else log_line("INFO", logger, line)


class Console:
    """Lines to stdout without ever blocking or failing the caller (see the module docstring)."""

    def __init__(self, fd: int = 1, capacity: int = 10_000) -> None:
        self._fd = fd
        self._lines: queue.Queue[str | None] = queue.Queue(capacity)
        self._broken = False
        self._thread = threading.Thread(target=self._write_all, name="demo-console", daemon=True)
        self._thread.start()

    def say(self, tag: str, text: str) -> None:
        for line in text.splitlines() or [""]:
            with contextlib.suppress(queue.Full):  # a terminal that takes nothing (Ctrl-S) holds up no one
                self._lines.put_nowait(f"{tag:<5} | {line}\n")

    def close(self, timeout: float) -> None:
        """Write what is queued, waiting at most ``timeout`` s (a stopped terminal may never take it)."""
        with contextlib.suppress(queue.Full):
            self._lines.put(None, timeout=timeout)
        self._thread.join(timeout)

    def _write_all(self) -> None:
        while (line := self._lines.get()) is not None:
            if self._broken:
                continue  # keep draining, so that nobody waits on a full queue
            data = line.encode(errors="replace")
            try:
                while data:
                    data = data[os.write(self._fd, data):]
            except OSError:  # EPIPE (the reader of a pipe is gone), EIO (the terminal hung up), ...
                self._broken = True
                with contextlib.suppress(OSError):  # nothing may fail on it later, at exit either
                    null = os.open(os.devnull, os.O_WRONLY)
                    os.dup2(null, self._fd)
                    os.close(null)


class Child:
    """One child process; ``name`` is how the demo talks about it, ``tag`` prefixes its lines."""

    def __init__(self, name: str, tag: str, args: Sequence[str], console: Console) -> None:
        self.name, self.tag = name, tag
        module = args[args.index("-m") + 1] if "-m" in args else tag
        command = [sys.executable, *args]
        if sys.platform.startswith("linux"):
            command = [sys.executable, "-c", _PARENT_GUARD, str(os.getpid()), *args]
        # Their output goes to the demo, not to a journal, and the demo is not their service manager.
        env = {k: v for k, v in os.environ.items() if k not in _SERVICE_VARIABLES}
        self.proc = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True, env={**env, "PYTHONUNBUFFERED": "1"},
        )
        assert self.proc.stdout is not None and self.proc.stderr is not None
        for stream, from_stderr in ((self.proc.stdout, False), (self.proc.stderr, True)):
            threading.Thread(target=self._pump, args=(stream, module, from_stderr, console),
                             name=f"demo-{tag}-{'err' if from_stderr else 'out'}", daemon=True).start()

    def _pump(self, stream: IO[bytes], module: str, from_stderr: bool, console: Console) -> None:
        # Reads until the child exits, whatever became of the console: a child never blocks on a full pipe.
        with stream:
            for raw in stream:
                console.say(self.tag, normalize(raw.decode(errors="replace").rstrip(), module, from_stderr))

    @property
    def pid(self) -> int:
        return self.proc.pid

    def exited(self) -> int | None:
        return self.proc.poll()


def _wait(children: Sequence[Child], deadline: float, hurry: threading.Event) -> list[Child]:
    """Wait until every child exited, the deadline passed or ``hurry`` is set; returns those still running."""
    while True:
        left = [c for c in children if c.exited() is None]
        if not left or hurry.is_set() or time.monotonic() >= deadline:
            return left
        with contextlib.suppress(subprocess.TimeoutExpired):
            left[0].proc.wait(timeout=min(0.1, max(0.0, deadline - time.monotonic())))


def stop_children(phases: Sequence[Sequence[Child]], grace: float, hurry: threading.Event,
                  say: Callable[[str, str], None]) -> None:
    """SIGTERM each phase's children and wait up to ``grace`` s (less once ``hurry`` is set), then SIGKILL
    what is left. Never raises on a child that is already gone; returns when every child has exited."""
    for phase in phases:
        running = [c for c in phase if c.exited() is None]
        for child in running:
            with contextlib.suppress(ProcessLookupError):
                child.proc.send_signal(signal.SIGTERM)
        for child in _wait(running, time.monotonic() + grace, hurry):
            if not hurry.is_set():  # else the caller says it once
                say("WARNING", f"{child.name} did not stop within {grace:.0f} s; killing it")
            with contextlib.suppress(ProcessLookupError):
                child.proc.kill()
            child.proc.wait()


def port_free(port: int, span: int = 1) -> bool:
    """Whether ``span`` ports from ``port`` can be bound on 127.0.0.1, as the servers bind them (with
    SO_REUSEADDR: connections of a run that just ended, in TIME_WAIT, do not count as taken)."""
    socks: list[socket.socket] = []
    try:
        for offset in range(span):
            sock = socket.socket()
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port + offset))
        return True
    except OSError:
        return False
    finally:
        for sock in socks:
            sock.close()


def pick_port(what: str, preferred: int, span: int, warn: Callable[[str], None]) -> int:
    """``preferred`` when free, else a free port (``warn`` says which); raises DemoFailed when none is."""
    if port_free(preferred, span):
        return preferred
    for _ in range(50):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port + span <= 65536 and port_free(port, span):
            warn(f"port {preferred} ({what}) is taken by another program; using {port} instead")
            return port
    raise DemoFailed(f"no free port for {what} on 127.0.0.1")


class RunDirBusy(Exception):
    """Another run uses this directory; ``pid`` is its process id (None when unknown)."""

    def __init__(self, pid: int | None) -> None:
        super().__init__(pid)
        self.pid = pid


class RunDir:
    """The run directory, locked for the lifetime of this process (the lock goes with the process,
    however it ends). ``claim()`` raises RunDirBusy while another run holds it."""

    LOCK = ".demo.lock"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock_fd: int | None = None

    def claim(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path / self.LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            text = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                raise
            raise RunDirBusy(int(text) if text.isdigit() else None) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    def leftovers(self) -> list[tuple[int, str]]:
        """Processes (pid, command line) of an earlier run that outlived it: a cloud, simulator or edge
        whose arguments point into this directory (Linux; elsewhere none are found)."""
        found = []
        inside = f"{self.path}{os.sep}"
        for entry in Path("/proc").glob("[0-9]*"):
            try:
                argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            except OSError:
                continue  # gone meanwhile, or not ours to read
            module = argv[argv.index("-m") + 1] if "-m" in argv[:-1] else ""
            if (int(entry.name) != os.getpid() and module in CHILD_MODULES
                    and any(arg.startswith(inside) for arg in argv)):
                found.append((int(entry.name), " ".join(a for a in argv if a)))
        return found

    @staticmethod
    def stop_processes(pids: Sequence[int], grace: float) -> None:
        """SIGTERM, then SIGKILL after ``grace`` s: for processes that are not our children."""
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        left = list(pids)
        while left and time.monotonic() < deadline:
            time.sleep(0.1)
            left = [pid for pid in left if _alive(pid)]
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def clear(self) -> None:
        """Remove everything an earlier run left in the directory but the lock."""
        for entry in self.path.iterdir():
            if entry.name == self.LOCK:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for its parent to collect it counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"
