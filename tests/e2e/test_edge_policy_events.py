"""Two events of the log panel from the real daemon (`twinedge run`), read back as a person does (`twinedge events`):

- the queue at its disk budget (1 MiB, no cloud to drain it) under frames published on MQTT: the full-disk policy
  applies, and the operator reads what it dropped (`queue_full`);
- an OPC-UA server (asyncua, Basic256Sha256) whose trust list holds no certificate refuses the edge's: the operator
  reads that the PLC rejected the certificate and what to trust there (`certificate_rejected`).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiomqtt
from asyncua.crypto.truststore import TrustStore
from asyncua.crypto.validator import CertificateValidator, CertificateValidatorOptions
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.e2e.daemon import PASSWORD, USER, EdgeDaemon
from tests.edge.sources.test_opcua_support import TestServer, client_certs, make_certs
from tests.support import free_port

SENSORS = {f"sensor_{k}": float(k) + 0.25 for k in range(200)}


async def events(daemon: EdgeDaemon, *args: str) -> list[dict[str, Any]]:
    shown = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edge.cli", "events", "--socket", str(daemon.socket), "--json", "-n", "1000", *args,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await shown.communicate()
    assert shown.returncode == 0, err.decode()
    return [json.loads(line) for line in out.decode().splitlines()]


async def until_event(daemon: EdgeDaemon, kind: str, within: float) -> list[dict[str, Any]]:
    async with asyncio.timeout(within):
        while not (found := [e for e in await events(daemon) if e["kind"] == kind]):
            await asyncio.sleep(0.2)
    return found


async def test_the_queue_at_its_disk_budget_tells_the_operator_what_it_dropped(tmp_path: Path) -> None:
    daemon = EdgeDaemon(tmp_path / "edge", store_toml='disk_budget = "1MiB"\n')
    await daemon.start()
    try:
        async with aiomqtt.Client("127.0.0.1", daemon.mqtt_port, username=USER, password=PASSWORD) as client:
            for n in range(1500):  # some 4 MB of frames into a 1 MiB queue
                frame = {"ts": 1_800_000_000.0 + n, "device_id": "press-1", "sensors": SENSORS}
                await client.publish("twin/press-1/telemetry", json.dumps(frame).encode(), qos=1)
        [full, *_] = await until_event(daemon, "queue_full", within=60)
        status = await daemon.status()
        assert status["queue"]["drops"].get("disk_budget_oldest", 0) > 0, status["queue"]
        assert full["level"] == "operator"
        assert "the queue reached its disk budget of 1 MB" in full["message"], full["message"]
        assert "dropped" in full["message"] and "oldest" in full["message"], full["message"]
        assert full["details"].get("dropped_oldest", 0) > 0, full
    finally:
        await daemon.stop()


async def test_a_plc_refusing_the_edges_certificate_is_an_operator_event(tmp_path: Path) -> None:
    server_certs = make_certs(tmp_path / "plc", "plc", "urn:twinedge:test:plc",
                              [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH])
    edge_certs = client_certs(tmp_path / "client")
    trusted = tmp_path / "plc" / "trusted"
    trusted.mkdir()
    (trusted / "plc.pem").write_bytes(server_certs.certificate.read_bytes())  # it trusts itself, not the edge
    store = TrustStore([trusted], [])
    await store.load()
    plc = await TestServer(free_port(), secure=server_certs).start()
    assert plc.server is not None
    plc.server.set_certificate_validator(CertificateValidator(
        CertificateValidatorOptions.TRUSTED_VALIDATION | CertificateValidatorOptions.PEER_CLIENT, trust_store=store))
    source = (f'[[sources]]\nkind = "opcua"\nname = "press-9"\nurl = "{plc.url}"\npublishing_interval = "50ms"\n'
              'reconnect_max_delay = "1s"\nrequest_timeout = "3s"\n'
              'nodes = [{ name = "temp", node_id = "ns=2;s=Press.Temp" }]\n'
              f'[sources.security]\npolicy = "Basic256Sha256"\nmode = "SignAndEncrypt"\n'
              f'certificate = "{edge_certs.certificate}"\nprivate_key = "{edge_certs.private_key}"\n')
    daemon = EdgeDaemon(tmp_path / "edge", source)
    try:
        await daemon.start()
        [rejected, *_] = await until_event(daemon, "certificate_rejected", within=60)
        assert rejected["level"] == "operator" and rejected["source"] == "press-9"
        assert rejected["message"].startswith("press-9: "), rejected["message"]
        assert "rejected our certificate" in rejected["message"], rejected["message"]
        assert f"trust {edge_certs.certificate} on the PLC" in rejected["message"], rejected["message"]
        lost = [e for e in await events(daemon) if e["source"] == "press-9" and e["kind"] == "source_lost"]
        assert lost == []  # the operator is told the cause, not only that the PLC does not answer
    finally:
        if daemon.proc is not None:
            await daemon.stop()
        await plc.stop()
