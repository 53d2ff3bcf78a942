"""OPC-UA source against node-opcua, an independent (non-Python) OPC-UA stack, as the PLC.

What a plant meets in its first month with a foreign server: a certificate the
server does not trust yet (trusted on the server while the gateway runs), an
anonymous login the server refuses, a tag that changes faster than the
publishing interval, a PLC that crashes and comes back, and polled machines whose
nodes must be read at one moment. The server is a subprocess
(tests/interop/opcua_server/server.mjs); its counter ``ns=1;s=Counter`` goes up by
one every 100 ms, so a lost update is a gap in the numbers.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from edge.sources import SourceState
from edge.sources.opcua import OpcUaSourceConfig
from tests.e2e.daemon import EdgeDaemon
from tests.edge.sources.nodeopcua import NodeOpcUaServer, node_opcua_missing
from tests.edge.sources.test_opcua_support import running, wait_for_state, wait_until
from tests.support import CollectingSink, free_port

pytestmark = [
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.skipif(node_opcua_missing() is not None, reason=node_opcua_missing() or ""),
]

USER, PASSWORD = "edge", "pa55-for-the-plc"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def plc(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[NodeOpcUaServer]:
    """One server for the module (a start costs seconds): it refuses anonymous logins, offers
    None and Basic256Sha256 endpoints, trusts no client certificate at first, and reads at most
    4 nodes per Read."""
    base = tmp_path_factory.mktemp("node-opcua")
    srv = NodeOpcUaServer(free_port(), base / "pki", anonymous=False, users={USER: PASSWORD}, max_nodes_per_read=4)
    await srv.start()
    yield srv
    await srv.stop()


def source_config(url: str, tmp_path: Path, nodes: list[dict[str, Any]], *, login: bool = True,
                  **extra: Any) -> OpcUaSourceConfig:
    settings: dict[str, Any] = {"kind": "opcua", "name": "plc", "url": url, "nodes": nodes, **extra}
    if login:
        password_file = tmp_path / "plc.password"
        password_file.write_text(PASSWORD + "\n", encoding="utf-8")
        settings |= {"username": USER, "password_file": str(password_file)}
    return OpcUaSourceConfig.model_validate(settings)


COUNTER = [{"name": "count", "node_id": "ns=1;s=Counter"}]


def counts(sink: CollectingSink) -> list[int]:
    return [f.sensors["count"] for f in sink.frames if "count" in f.sensors]


async def test_anonymous_login_refused_says_which_settings_to_add(plc: NodeOpcUaServer, tmp_path: Path) -> None:
    async with running(source_config(plc.url, tmp_path, COUNTER, login=False)) as (source, sink):
        await wait_for_state(source, SourceState.DISCONNECTED, within=20)
        reason = source.health.reason or ""
        assert reason.startswith(f"OPC-UA server {plc.url} does not accept anonymous logins: set 'username' and "
                                 "'password_file'"), reason
        assert sink.frames == []
    async with running(source_config(plc.url, tmp_path, COUNTER)) as (source, sink):
        await sink.wait_for(1, timeout=20)  # with the settings the sentence names, data flows
        assert source.health.state is SourceState.CONNECTED


async def test_default_settings_lose_no_update_of_a_tag_faster_than_the_publishing_interval(
    plc: NodeOpcUaServer, tmp_path: Path
) -> None:
    # the counter changes every 100 ms; a publish every 500 ms carries ~5 changes of it
    config = source_config(plc.url, tmp_path, COUNTER, publishing_interval="500ms")
    async with running(config) as (_source, sink):
        await wait_until(lambda: len(counts(sink)) >= 30, within=30)
    seen = counts(sink)
    assert seen == list(range(seen[0], seen[0] + len(seen))), "every change arrives, in order"
    stamps = [f.ts for f in sink.frames]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    assert all(len(f.sensors) == 1 for f in sink.frames), "each queued change is a frame of its own"


async def test_polled_machines_are_each_read_at_one_moment(plc: NodeOpcUaServer, tmp_path: Path) -> None:
    # two machines of three nodes, all set to the tick count on every tick; a Read carries at most 4 nodes
    nodes = [{"name": f"v{i}", "node_id": f"ns=1;s=Machine{k}.V{i}", "device_id": f"machine-{k}"}
             for k in (1, 2) for i in (1, 2, 3)]
    config = source_config(plc.url, tmp_path, nodes, mode="poll", poll_interval="30ms")
    async with running(config) as (source, sink):
        await wait_until(lambda: len([f for f in sink.frames if f.device_id == "machine-2"]) >= 40, within=30)
        assert source.health.detail["limits"]["nodes_per_read"] == 4
    for frame in sink.frames:
        assert set(frame.sensors) == {"v1", "v2", "v3"}
        assert len(set(frame.sensors.values())) == 1, f"a frame mixes two ticks: {frame}"


async def test_values_resume_after_the_plc_restarts_and_the_outage_costs_one_attempt(
    plc: NodeOpcUaServer, tmp_path: Path
) -> None:
    config = source_config(plc.url, tmp_path, COUNTER, publishing_interval="100ms", reconnect_max_delay="30s")
    async with running(config) as (source, sink):
        await sink.wait_for(1, timeout=20)
        errors = source.health.errors
        await plc.kill()  # a power cut: no goodbye
        await wait_until(lambda: "waiting for it to accept connections" in (source.health.reason or ""), within=20)
        await plc.start()  # seconds later, on the same port; the counter starts again from 0
        before = len(sink.frames)
        await wait_until(lambda: any(f.sensors.get("count", 10**9) < 100 for f in sink.frames[before:]), within=30)
        assert source.health.state is SourceState.CONNECTED and source.health.reconnects == 1
        # the session loss and one refused connect (one more if the server accepted a moment before it
        # could answer): the outage was watched with TCP probes, not reconnect attempts whose backoff grows
        assert 2 <= source.health.errors - errors <= 3


async def _cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edge.cli", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_certificate_trusted_on_the_plc_while_the_daemon_runs_lets_data_flow(
    plc: NodeOpcUaServer, tmp_path: Path
) -> None:
    cert, key = tmp_path / "edge-pki" / "edge-cert.pem", tmp_path / "edge-pki" / "edge-key.pem"
    code, out, err = await _cli("cert", "create", "--source", "plc", "--cert", str(cert), "--key", str(key))
    assert code == 0, err
    srv = plc
    password_file = tmp_path / "plc.password"
    password_file.write_text(PASSWORD, encoding="utf-8")
    failing = "\n".join(
        f'[[sources.nodes]]\nname = "temp"\nnode_id = "ns=1;s=Missing.{k}"\ndevice_id = "line-{k}"\n' for k in "ab"
    )
    daemon = EdgeDaemon(tmp_path / "edge", f"""
[[sources]]
kind = "opcua"
name = "plc"
url = "{srv.url}"
publishing_interval = "100ms"
reconnect_max_delay = "1s"
username = "{USER}"
password_file = "{password_file}"
[sources.security]
policy = "Basic256Sha256"
mode = "SignAndEncrypt"
certificate = "{cert}"
private_key = "{key}"
[[sources.nodes]]
name = "count"
node_id = "ns=1;s=Counter"
{failing}
""")
    try:
        await daemon.start()

        async def plc_source() -> dict[str, Any]:
            return next(s for s in (await daemon.status())["sources"] if s["name"] == "plc")

        async def wait_source(check: Any, within: float = 30) -> dict[str, Any]:
            async with asyncio.timeout(within):
                while not check(src := await plc_source()):
                    await asyncio.sleep(0.1)
            return src

        src = await wait_source(lambda s: "rejected our certificate" in (s["reason"] or ""))
        await wait_until(lambda: len(srv.rejected) == 1)  # our certificate: the only one it saw
        thumbprint = srv.rejected[0].name.split("[")[1].split("]")[0]  # node-opcua files it as <CN>[<sha1>].pem
        assert f"SHA-1 thumbprint {thumbprint}" in src["reason"] and f"trust {cert} on the PLC" in src["reason"]
        assert src["state"] == "disconnected"
        code, table, _ = await _cli("status", "--socket", str(daemon.socket))
        table = " ".join(table.split())  # the REASON column wraps
        assert code == 0 and "rejected our certificate" in table and str(cert) in table
        assert thumbprint in table

        srv.trust_rejected()  # the engineer trusts the certificate on the PLC; nobody touches the gateway
        src = await wait_source(lambda s: s["frames"] >= 10)
        assert src["state"] == "degraded"  # connected; the two missing nodes are reported
        code, out, _ = await _cli("status", "--json", "--socket", str(daemon.socket))
        status = json.loads(out)
        assert not status.get("restarts"), "the source never crashed"
        detail = next(s for s in status["sources"] if s["name"] == "plc")["detail"]
        assert set(detail["failing"]) == {"line-a/ns=1;s=Missing.a", "line-b/ns=1;s=Missing.b"}
        assert {entry["sensor"] for entry in detail["failing"].values()} == {"temp"}
        assert daemon.proc is not None and daemon.proc.returncode is None
    finally:
        await daemon.stop()
