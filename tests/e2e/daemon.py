"""A real `twinedge run` process for end-to-end tests: config, start, wait ready, kill."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge.broker.auth import set_password
from edge.control import ControlError
from edge.control.client import request
from tests.support import free_port

USER, PASSWORD = "device", "s3cret-device-pw"


async def wait_answering(socket: Path, returncode: Callable[[], int | None], log: Path, within: float = 30) -> None:
    """Until the daemon's control socket answers; RuntimeError with its log's tail if it exited first."""
    async with asyncio.timeout(within):
        while True:
            if (code := returncode()) is not None:
                raise RuntimeError(f"edge exited with {code}: {log.read_text()[-2000:]}")
            try:
                await request(socket, "status")
                return
            except ControlError:
                await asyncio.sleep(0.05)


class EdgeDaemon:
    def __init__(self, tmp: Path, extra_toml: str = "", *, state_dir: Path | None = None, store_toml: str = "",
                 edge_id: str = "edge-e2e") -> None:
        self.dir = tmp
        tmp.mkdir(parents=True, exist_ok=True)
        self.mqtt_port = free_port()
        self.socket = tmp / "control.sock"
        state_dir = state_dir or tmp / "state"
        self.queue = state_dir / "queue.db"
        passwd = tmp / "broker.passwd"
        set_password(passwd, USER, PASSWORD)
        self.config = tmp / "edge.toml"
        self.config.write_text(
            f'[edge]\nid = "{edge_id}"\nstate_dir = "{state_dir}"\n'
            f'[store]\nbatch_max_delay = "5ms"\n{store_toml}'
            f'[broker]\npassword_file = "{passwd}"\n'
            f'listeners = [{{ name = "default", host = "127.0.0.1", port = {self.mqtt_port} }}]\n'
            f'[control]\nsocket = "{self.socket}"\n' + extra_toml
        )
        self.proc: asyncio.subprocess.Process | None = None
        self.log = tmp / "edge.log"

    async def start(self) -> None:
        log = self.log.open("ab")
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "edge.cli", "run", "-c", str(self.config),
            stdout=log, stderr=log, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        log.close()
        try:
            await wait_answering(self.socket, lambda: self.proc.returncode if self.proc else None, self.log)
        except BaseException:
            if self.proc.returncode is None:  # never leave a daemon behind a failed start
                self.proc.kill()
                await self.proc.wait()
            raise

    async def status(self) -> dict[str, Any]:
        result = await request(self.socket, "status")
        assert isinstance(result, dict)
        return result

    async def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    async def stop(self) -> int:
        """SIGTERM; returns the exit code."""
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            async with asyncio.timeout(30):
                await self.proc.wait()
        return self.proc.returncode or 0
