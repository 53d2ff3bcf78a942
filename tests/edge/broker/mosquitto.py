"""Run a real Mosquitto broker as a subprocess on a free port (tests and the benchmark)."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def mosquitto_available() -> bool:
    return Path(MOSQUITTO).exists() and shutil.which("mosquitto_pub") is not None


class Mosquitto:
    """``async with Mosquitto(port, tmp_path):`` -- no persistence, unlimited queues.

    Anonymous unless ``password_file`` (a ``mosquitto_passwd`` file) is given;
    TLS on the listener with ``tls=(certfile, keyfile)``.

    ``max_inflight`` is Mosquitto's per-client window of unacknowledged QoS 1
    messages (its default is 20; 0 means no limit). The edge acknowledges after
    each commit, so this window / the commit interval bounds the ingest rate.
    """

    def __init__(
        self, port: int, directory: Path, *, max_inflight: int = 1000,
        password_file: Path | None = None, tls: tuple[Path, Path] | None = None,
    ) -> None:
        self.port = port
        self.conf = directory / f"mosquitto-{port}.conf"
        auth = f"allow_anonymous false\npassword_file {password_file}\n" if password_file else "allow_anonymous true\n"
        certs = f"certfile {tls[0]}\nkeyfile {tls[1]}\n" if tls else ""
        self.conf.write_text(
            f"listener {port} 127.0.0.1\n"
            f"{certs}{auth}"
            "user root\n"  # as root, mosquitto would switch to user mosquitto, who cannot read the test's files
            "persistence false\n"
            "max_queued_messages 0\n"
            f"max_inflight_messages {max_inflight}\n"
            "log_dest stderr\n"
            "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n"
        )
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            MOSQUITTO, "-c", str(self.conf), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )
        assert self.proc.stderr is not None
        async with asyncio.timeout(10):
            while True:
                line = await self.proc.stderr.readline()
                if not line:
                    raise RuntimeError(f"mosquitto exited while starting on port {self.port}")
                if b"running" in line:
                    break
        self._drain = asyncio.create_task(self._discard(self.proc.stderr), name=f"mosquitto-{self.port}-stderr")

    @staticmethod
    async def _discard(stream: asyncio.StreamReader) -> None:
        while await stream.readline():
            pass

    async def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.returncode is None:
            self.proc.terminate()
        async with asyncio.timeout(10):
            await self.proc.wait()
        await self._drain
        self.proc = None

    async def __aenter__(self) -> Mosquitto:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
