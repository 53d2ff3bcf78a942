"""HAProxy from the system packages, run with the shipped deploy/haproxy.cfg in front of test replicas.

    async with Balancer([replica_a.port, replica_b.port]) as lb:
        lb.base_url   # http://127.0.0.1:PORT
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import httpx

from tests.support import free_port

__all__ = ["CONFIG", "Balancer", "haproxy_binary"]

CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "haproxy.cfg"


def haproxy_binary() -> str | None:
    found = shutil.which("haproxy")
    if found is None and os.access("/usr/sbin/haproxy", os.X_OK):
        found = "/usr/sbin/haproxy"
    return found


class Balancer:
    def __init__(self, ports: Sequence[int]) -> None:
        if len(ports) != 2:
            raise ValueError("deploy/haproxy.cfg names two replicas")
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "TWINCLOUD_BIND": f"127.0.0.1:{self.port}",
                    "TWINCLOUD_REPLICA_1": f"127.0.0.1:{ports[0]}", "TWINCLOUD_REPLICA_2": f"127.0.0.1:{ports[1]}"}
        self.proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Balancer:
        binary = haproxy_binary()
        assert binary is not None
        # -db: stay in the foreground, as under a supervisor; the log goes to stdout.
        self.proc = await asyncio.create_subprocess_exec(binary, "-db", "-f", str(CONFIG), env=self.env,
                                                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            await self.wait_serving()
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def wait_serving(self, within: float = 30.0) -> None:
        """Until /health answers 200 through HAProxy (its health checks found a replica up)."""
        async with asyncio.timeout(within), httpx.AsyncClient(base_url=self.base_url) as client:
            while True:
                assert self.proc is not None
                if self.proc.returncode is not None:
                    err = await self.proc.stderr.read() if self.proc.stderr else b""
                    raise RuntimeError(f"haproxy exited with {self.proc.returncode}: {err.decode()[-2000:]}")
                try:
                    if (await client.get("/health")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                async with asyncio.timeout(10):
                    await self.proc.wait()
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
