"""A real `twinedge run` process for hostile-network tests and the benchmark: several listeners,
short timeouts, an optional descriptor limit, and what the kernel says about the process.

The process is started with ``subprocess.Popen`` (not asyncio's), so one daemon can
serve the tests of a module, each running in its own event loop.
"""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from edge.broker.auth import set_password
from edge.control.client import request
from tests.e2e.daemon import PASSWORD, USER, wait_answering
from tests.support import free_port

OPS, OPS_PASSWORD = "ops", "s3cret-ops-pw"


class HostileDaemon:
    """``twinedge run`` with the given listeners (name -> extra TOML of the listener) and [broker] keys."""

    def __init__(
        self,
        tmp: Path,
        *,
        listeners: dict[str, str],
        broker_toml: str = "",
        extra_toml: str = "",
        nofile: int | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        self.dir = tmp
        self.socket = tmp / "control.sock"
        self.log = tmp / "edge.log"
        self.nofile = nofile
        self.env = env or {}
        self.ports = {name: free_port() for name in listeners}
        passwd = tmp / "broker.passwd"
        set_password(passwd, USER, PASSWORD)
        set_password(passwd, OPS, OPS_PASSWORD)
        rows = ",\n".join(
            f'  {{ name = "{name}", host = "127.0.0.1", port = {self.ports[name]}{", " + extra if extra else ""} }}'
            for name, extra in listeners.items()
        )
        self.config = tmp / "edge.toml"
        self.config.write_text(
            f'[edge]\nid = "edge-e2e"\nstate_dir = "{tmp / "state"}"\n'
            f'[store]\nbatch_max_delay = "5ms"\n'
            f'[broker]\npassword_file = "{passwd}"\n{broker_toml}\nlisteners = [\n{rows}\n]\n'
            f'[control]\nsocket = "{self.socket}"\n' + extra_toml
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def _spawn(self) -> None:
        limit = self.nofile

        def limit_descriptors() -> None:  # in the child, before exec
            if limit is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "edge.cli", "run", "-c", str(self.config)],
                stdout=out, stderr=subprocess.STDOUT, preexec_fn=limit_descriptors,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env},
            )

    def _returncode(self) -> int | None:
        assert self.proc is not None
        return self.proc.poll()

    def start(self) -> None:
        """Start and wait until the control socket answers (outside an event loop: a module fixture)."""
        self._spawn()
        try:
            asyncio.run(wait_answering(self.socket, self._returncode, self.log))
        except BaseException:
            self._kill()
            raise

    async def astart(self) -> None:
        """``start()`` from inside a test's event loop."""
        self._spawn()
        try:
            await wait_answering(self.socket, self._returncode, self.log)
        except BaseException:
            self._kill()
            raise

    def _kill(self) -> None:
        """Never leave a daemon behind a failed start."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    async def status(self) -> dict[str, Any]:
        result = await request(self.socket, "status")
        assert isinstance(result, dict)
        return result

    async def mqtt(self) -> dict[str, Any]:
        """The MQTT part of `status --json`."""
        mqtt = (await self.status())["mqtt"]
        assert isinstance(mqtt, dict)
        return mqtt

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def descriptors(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> int:
        """SIGTERM; returns the exit code."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode
