"""A real twincloud server for tests: uvicorn in a subprocess on 127.0.0.1, SQLite in a temp dir.

    server = CloudServer(tmp_path, edges=["edge-1"])
    server.start()                  # returns once the app has started
    server.base_url, server.edge_tokens["edge-1"], server.admin_token
    server.stop() / server.restart() / server.kill()

or the ``cloud_server`` fixture in tests/cloud/conftest.py. Retention is off
unless ``extra_config`` sets it (other sections: ``extra_config``; more
``[server]`` keys, e.g. ``workers = 2``: ``server_options``; PostgreSQL:
``database_url``). Tokens are created
before the first start with the same code `twincloud edge add` runs; a
second replica on the same database takes the first one's (``tokens_from``). The
process can be killed and restarted on the same port and database, which is
how the end-to-end tests exercise outages.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from cloud.config import load_cloud_config
from cloud.identities import add_edge, add_user
from cloud.storage import open_storage
from tests.support import free_port

__all__ = ["CloudServer"]

_READY = "Application startup complete"
# Test data often carries fixed past timestamps: keep retention from deleting it behind a test's back.
_NO_RETENTION = "[retention]\nsamples_days = 0\nrollups_days = 0\n"


class CloudServer:
    def __init__(self, directory: Path, *, edges: Sequence[str] = ("edge-1",), port: int | None = None,
                 extra_config: str = "", database_url: str | None = None, auth_cache_ttl: str = "0s",
                 server_options: str = "", tokens_from: CloudServer | None = None) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        url = database_url or f"sqlite:///{self.directory / 'cloud.db'}"
        self.config_path = self.directory / "cloud.toml"
        self.config_path.write_text(
            f'[server]\nhost = "127.0.0.1"\nport = {self.port}\nauth_cache_ttl = "{auth_cache_ttl}"\n'
            f'{server_options}\n\n'
            f'[database]\nurl = "{url}"\n\n{extra_config or _NO_RETENTION}\n', encoding="utf-8")
        found = re.search(r"^workers\s*=\s*(\d+)", server_options, re.MULTILINE)
        self.workers = int(found.group(1)) if found else 1
        self.edge_tokens: dict[str, str] = {}
        self.admin_token = ""
        self.viewer_token = ""
        self.operator_token = ""  # set by the tests that add an operator (add_person)
        self.log: list[str] = []
        self._proc: subprocess.Popen[str] | None = None
        self._drain = threading.Thread()
        if tokens_from is None:
            self._run_in_thread(self._prepare(list(edges)))
        else:
            self.edge_tokens = dict(tokens_from.edge_tokens)
            self.admin_token, self.viewer_token = tokens_from.admin_token, tokens_from.viewer_token

    @property
    def pid(self) -> int | None:
        """The server process id while it runs (for CPU measurements)."""
        return self._proc.pid if self._proc is not None else None

    def add_person(self, name: str, role: str) -> str:
        """Add a person through the running service's admin API; returns their token."""
        made = httpx.post(f"{self.base_url}/api/v1/users", json={"name": name, "role": role},
                          headers={"Authorization": f"Bearer {self.admin_token}"}, timeout=10)
        assert made.status_code == 201, made.text
        return str(made.json()["token"])

    @property
    def edge_token(self) -> str:
        return next(iter(self.edge_tokens.values()))

    @staticmethod
    def _run_in_thread(coro: object) -> None:
        """Run a coroutine to completion from sync or async code alike (a loop of its own in a thread)."""
        errors: list[BaseException] = []

        def target() -> None:
            try:
                asyncio.run(coro)  # type: ignore[arg-type]
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                errors.append(exc)
        thread = threading.Thread(target=target, name="cloud-server-prepare")
        thread.start()
        thread.join()
        if errors:
            raise errors[0]

    async def _prepare(self, edges: list[str]) -> None:
        storage = open_storage(load_cloud_config(self.config_path).database)
        await storage.open()
        try:
            for name in edges:
                self.edge_tokens[name] = await add_edge(storage, name)
            self.admin_token = await add_user(storage, "test-admin", "admin")
            self.viewer_token = await add_user(storage, "test-viewer", "viewer")
        finally:
            await storage.close()

    def start(self, timeout: float = 30.0) -> None:
        """Start uvicorn and return once every worker serves; raise with its output when it does not."""
        self.log = []  # the output of this run only
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "cloud.cli", "--config", str(self.config_path), "serve"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
        ready = threading.Event()
        proc = self._proc

        def drain() -> None:
            assert proc.stderr is not None
            started = 0
            with proc.stderr:
                for line in proc.stderr:
                    self.log.append(line.rstrip())
                    started += _READY in line
                    if started == self.workers:
                        ready.set()
            ready.set()  # exited: stop waiting
        self._drain = threading.Thread(target=drain, name="cloud-server-log", daemon=True)
        self._drain.start()
        if not ready.wait(timeout) or proc.poll() is not None or not self._listening(timeout):
            self.kill()
            raise RuntimeError("twincloud did not start:\n" + "\n".join(self.log[-30:]))

    def _listening(self, timeout: float) -> bool:
        """A worker logs that it started just before its socket listens: wait for the port to answer."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                time.sleep(0.02)
        return False

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM and wait: a clean shutdown."""
        if self._proc is None:
            return None
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        code, self._proc = self._proc.returncode, None
        self._drain.join(5)
        return code

    def kill(self) -> None:
        """SIGKILL: the process dies mid-request, as in a crash."""
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.wait()
            self._proc = None
            self._drain.join(5)

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> CloudServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
