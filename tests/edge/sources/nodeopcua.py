"""A node-opcua server as a subprocess: the foreign PLC of the OPC-UA interop tests and benchmark.

The server script and its package lock live in tests/interop/opcua_server/ (``make install``
runs ``npm ci`` there). Its certificate store is a folder the test owns: a client certificate
the server does not know yet lands in ``<pki>/rejected/``, and :meth:`NodeOpcUaServer.trust_rejected`
moves it to ``<pki>/trusted/certs/`` while the server runs, as an engineer would on a PLC.

Its address space (namespace 1): ``ns=1;s=Counter`` (UInt32, +1 every ``tick_ms`` with the
time of the change as SourceTimestamp), ``ns=1;s=Temp`` (Double 21.5), and
``ns=1;s=Machine<k>.V<i>`` (k 1..2, i 1..3), all set to the tick count on every tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

__all__ = ["SERVER_DIR", "NodeOpcUaServer", "node_opcua_missing", "seed_server_certificate"]

SERVER_DIR = Path(__file__).resolve().parents[2] / "interop" / "opcua_server"
_START_TIMEOUT = 60.0


def node_opcua_missing() -> str | None:
    """Why the foreign server cannot run here (a reason to skip), or None when it can.

    Only a missing or too old ``node`` is a reason to skip: with a usable node, the packages
    must be installed (``make install``), and a test that finds them missing fails and says so.
    """
    if shutil.which("node") is None:
        return "node (Node.js) is not installed; deploy/scripts/system-deps.sh installs it"
    check = subprocess.run(["node", str(SERVER_DIR / "check-node.mjs")], capture_output=True, text=True, check=False)
    if check.returncode != 0:
        return f"{check.stdout.strip() or check.stderr.strip()}; install a newer Node.js to run these tests"
    return None


def seed_server_certificate(pki: Path) -> None:
    """Put a server certificate into a fresh store, so that node-opcua need not generate one.

    node-opcua would otherwise generate one on its first start, which takes it a few seconds.
    The certificate follows OPC-UA's rules (application URI in the subjectAltName, the four key
    usages, serverAuth).
    """
    import ipaddress
    import socket

    from asyncua.crypto import cert_gen
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509.oid import ExtendedKeyUsageOID

    cert_file, key_file = pki / "own" / "certs" / "certificate.pem", pki / "own" / "private" / "private_key.pem"
    if cert_file.exists():
        return
    key = cert_gen.generate_private_key()
    names = [x509.UniformResourceIdentifier(f"urn:{socket.gethostname()}:NodeOPCUA-Server"),
             x509.DNSName(socket.gethostname()), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = cert_gen.generate_self_signed_app_certificate(
        key, "twinedge interop PLC", {}, names, [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
        days=30,
    )
    cert_file.parent.mkdir(parents=True, exist_ok=True)
    key_file.parent.mkdir(parents=True, exist_ok=True)
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(cert_gen.dump_private_key_as_pem(key))


class NodeOpcUaServer:
    """Starts, kills and restarts ``server.mjs`` on one port with one certificate store."""

    def __init__(
        self,
        port: int,
        pki: Path,
        *,
        secure_only: bool = False,
        users: dict[str, str] | None = None,
        anonymous: bool = True,
        tick_ms: int = 100,
        max_nodes_per_read: int = 0,
    ) -> None:
        self.port, self.pki = port, pki
        self.url = f"opc.tcp://127.0.0.1:{port}"
        self.args = ["--port", str(port), "--pki", str(pki), "--tick-ms", str(tick_ms),
                     "--max-nodes-per-read", str(max_nodes_per_read)]
        if secure_only:
            self.args.append("--secure-only")
        if users:
            self.args += ["--users", ",".join(f"{name}:{password}" for name, password in users.items())]
        if not anonymous:
            self.args.append("--no-anonymous")
        self.proc: asyncio.subprocess.Process | None = None
        self._drain: asyncio.Task[None] | None = None
        self.log = pki.parent / f"node-opcua-{port}.log"

    @property
    def rejected(self) -> list[Path]:
        return sorted((self.pki / "rejected").glob("*"))

    @property
    def trusted(self) -> list[Path]:
        return sorted((self.pki / "trusted" / "certs").glob("*"))

    async def start(self) -> NodeOpcUaServer:
        if not (SERVER_DIR / "node_modules" / "node-opcua-server").is_dir():
            raise RuntimeError(f"node-opcua is not installed in {SERVER_DIR}: run `make install` "
                               "(it runs `npm ci` there)")
        self.pki.mkdir(parents=True, exist_ok=True)
        seed_server_certificate(self.pki)
        with self.log.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                "node", str(SERVER_DIR / "server.mjs"), *self.args,
                stdout=asyncio.subprocess.PIPE, stderr=log, cwd=SERVER_DIR,
            )
        assert self.proc.stdout is not None
        try:
            async with asyncio.timeout(_START_TIMEOUT):
                line = b"-"
                while line and not line.startswith(b"{"):  # node-opcua prints notices on stdout first
                    line = await self.proc.stdout.readline()
        except TimeoutError:
            await self.kill()
            raise RuntimeError(f"node-opcua server did not start within {_START_TIMEOUT:g} s; see {self.log}") \
                from None
        ready: dict[str, Any] = json.loads(line) if line.startswith(b"{") else {}
        if not ready.get("ready"):
            await self.kill()
            raise RuntimeError(f"node-opcua server failed to start ({line!r}); see {self.log}")
        # what it prints later goes to the log: a full pipe would stall the server
        self._drain = asyncio.create_task(self._copy_output(self.proc.stdout), name=f"test:node-opcua:{self.port}")
        return self

    async def _copy_output(self, stdout: asyncio.StreamReader) -> None:
        with self.log.open("ab") as log:
            while chunk := await stdout.read(65536):
                log.write(chunk)

    async def stop(self) -> None:
        """A clean shutdown (SIGTERM): the server closes its sessions."""
        await self._end(signal.SIGTERM)

    async def kill(self) -> None:
        """A crash (SIGKILL): sockets close without a word, as when a PLC loses power."""
        await self._end(signal.SIGKILL)

    async def _end(self, sig: signal.Signals) -> None:
        proc, self.proc = self.proc, None
        drain, self._drain = self._drain, None
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
            try:
                async with asyncio.timeout(10):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if drain is not None:
            await drain  # ends at the end of the output

    def trust_rejected(self) -> list[Path]:
        """Move every rejected client certificate to trusted/certs/, as an engineer does on the PLC."""
        trusted_dir = self.pki / "trusted" / "certs"
        trusted_dir.mkdir(parents=True, exist_ok=True)
        moved = []
        for cert in self.rejected:
            target = trusted_dir / cert.name
            cert.rename(target)
            moved.append(target)
        return moved
