"""Two twincloud replicas on one PostgreSQL behind HAProxy (deploy/haproxy.cfg), three real edges syncing
through it, one replica SIGKILLed and restarted mid-sync.

Every frame the edges produced is stored exactly once; a WebSocket client on one replica receives the
frames the other stored (their live poll is set to a minute, so only LISTEN/NOTIFY can bring them in
time); ``/metrics`` through the balancer adds up to what was stored, whichever replica answers.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.cloud.pg import PgServer, fresh_pg_database
from tests.cloud.server import CloudServer
from tests.e2e.balancer import CONFIG, Balancer, haproxy_binary
from tests.e2e.daemon import EdgeDaemon
from tests.e2e.devices import T0, Device
from tests.e2e.test_cloud_sync import drained, uplink_toml, wait_for

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(haproxy_binary() is None, reason="haproxy is not installed (deploy/scripts/system-deps.sh "
                                                        "installs it: Debian package 'haproxy')"),
]

EDGES = ("edge-a", "edge-b", "edge-c")
STORED = re.compile(r'^twincloud_edge_frames_stored_total\{edge="([^"]+)"\} ([0-9.e+]+)$', re.MULTILINE)




def replica(directory: Path, name: str, url: str, first: CloudServer | None = None) -> CloudServer:
    # A live poll of a minute: frames of the other replica can reach a WebSocket in time only by NOTIFY.
    return CloudServer(directory / name, edges=EDGES, database_url=url, tokens_from=first,
                       server_options=f'replica = "{name}"\nlive_poll = "60s"')


class LiveClient:
    """A WebSocket on one replica, collecting the ``i`` of each frame of its device."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.values: list[int] = []
        self.dropped = 0
        self.task = asyncio.create_task(self._read(), name="live-client")

    async def _read(self) -> None:
        async for message in self.ws:
            event = json.loads(message)
            if event["type"] == "frame":
                self.values.append(event["frame"]["sensors"]["i"])
            else:
                self.dropped += event["count"]

    async def close(self) -> None:
        await self.ws.close()
        await self.task


@pytest.fixture
async def replicas(tmp_path: Path, pg_server: PgServer) -> AsyncIterator[tuple[CloudServer, CloudServer, str]]:
    url = await fresh_pg_database(pg_server)
    a = replica(tmp_path, "cloud-a", url)
    b = replica(tmp_path, "cloud-b", url, first=a)
    await asyncio.to_thread(a.start)
    await asyncio.to_thread(b.start)
    try:
        yield a, b, url
    finally:
        await asyncio.to_thread(a.stop)
        await asyncio.to_thread(b.stop)


async def stored_in_db(url: str) -> dict[str, Counter[int]]:
    """Each device's values of ``i`` as PostgreSQL holds them, with how often each is there."""
    con = await asyncpg.connect(url)
    try:
        rows = await con.fetch("""SELECT d.name, s.value FROM samples s JOIN series r ON r.id = s.series_id
                                  JOIN devices d ON d.id = r.device_id WHERE r.field = 'i'""")
        frames = dict(await con.fetch("SELECT d.name, count(*) FROM frames f JOIN devices d ON d.id = f.device_id "
                                      "GROUP BY d.name"))
    finally:
        await con.close()
    out: dict[str, Counter[int]] = {}
    for name, value in rows:
        out.setdefault(name, Counter())[int(value)] += 1
    for name, counts in out.items():
        assert frames[name] == sum(counts.values()), name
    return out


async def metrics(client: httpx.AsyncClient, base_url: str, token: str) -> str:
    response = await client.get(f"{base_url}/metrics", headers={"Authorization": f"Bearer {token}"})
    response.raise_for_status()
    return response.text


def fleet_stored(text: str) -> dict[str, float]:
    return {edge: float(value) for edge, value in STORED.findall(text)}


def replica_stored(text: str) -> float:
    """Frames this replica itself stored since it started (its own counter)."""
    return sum(float(v) for v in re.findall(r'^twincloud_sync_frames_total\{[^}]*result="stored"[^}]*\} (\S+)$',
                                            text, re.MULTILINE))


async def test_two_replicas_behind_haproxy_store_every_frame_once_and_share_the_live_feed(
        tmp_path: Path, replicas: tuple[CloudServer, CloudServer, str]) -> None:
    a, b, url = replicas
    admin = {"Authorization": f"Bearer {a.admin_token}"}
    devices = {edge: [Device(f"{edge[-1]}-press-1", pace=0.003), Device(f"{edge[-1]}-oven-1", pace=0.003)]
               for edge in EDGES}
    everything = [d for ds in devices.values() for d in ds]
    async with Balancer([a.port, b.port]) as lb, httpx.AsyncClient(timeout=10) as client:
        # Bound to their edges before they send, so that a WebSocket on replica A can follow them from the start.
        for edge, ds in devices.items():
            for d in ds:
                resp = await client.post(f"{lb.base_url}/api/v1/devices", headers=admin,
                                         json={"name": d.name, "edge": edge, "reason": "scale-out test"})
                assert resp.status_code == 201, resp.text
        live = {d.name: LiveClient(await connect(f"{a.ws_url}/api/v1/twin/ws/{d.name}", additional_headers=admin,
                                                 proxy=None)) for d in everything}
        daemons = {edge: EdgeDaemon(tmp_path / edge, uplink_toml(lb.port, a.edge_tokens[edge], batch=40),
                                    edge_id=edge) for edge in EDGES}
        stop = asyncio.Event()
        publishers: list[asyncio.Task[None]] = []
        try:
            for edge, daemon in daemons.items():
                await daemon.start()
                publishers += [asyncio.create_task(d.publish_until_cut(daemon.mqtt_port, stop), name=d.name)
                               for d in devices[edge]]
            async with asyncio.timeout(60):
                await asyncio.gather(*(d.progress.wait() for d in everything))
            await wait_for(lambda: _stored_some(client, b), timeout=30)
            b_before_kill = replica_stored(await metrics(client, b.base_url, b.viewer_token))
            await asyncio.to_thread(b.kill)  # mid-sync: the edges keep sending through the balancer
            killed_at = time.monotonic()
            await asyncio.sleep(2)
            await asyncio.to_thread(b.start)
            await asyncio.sleep(2)
            stop.set()
            await asyncio.gather(*publishers)
            for daemon in daemons.values():
                await wait_for(lambda daemon=daemon: drained(daemon), timeout=90)
        finally:
            stop.set()
            for daemon in daemons.values():
                if daemon.proc is not None:
                    await daemon.stop()
        assert b_before_kill > 0 and time.monotonic() - killed_at > 2

        # Every frame the edges produced is in PostgreSQL exactly once.
        stored = await stored_in_db(url)
        for d in everything:
            counts = stored.get(d.name, Counter())
            assert d.acked, f"{d.name} produced nothing: the test exercised nothing"
            assert not {v: n for v, n in counts.items() if n != 1}, f"{d.name}: stored more than once"
            assert set(counts) == set(d.acked), (d.name, len(counts), len(d.acked))
        total = sum(len(d.acked) for d in everything)

        # Replica A's WebSockets got every frame, those replica B stored included (B stored b_before_kill
        # before it was killed, and more after its restart).
        async with asyncio.timeout(30):
            while sum(len(c.values) + c.dropped for c in live.values()) < total:
                await asyncio.sleep(0.1)
        for d in everything:
            got = live[d.name]
            assert len(got.values) == len(set(got.values)), f"{d.name}: a frame was sent twice"
            assert set(got.values) <= set(d.acked) and len(got.values) + got.dropped == len(d.acked), d.name

        # /metrics through the balancer: the fleet's counts add up to what was stored, whichever replica answers.
        seen = set()
        for base_url in (lb.base_url, lb.base_url, a.base_url, b.base_url):
            text = await metrics(client, base_url, a.viewer_token)
            per_edge = fleet_stored(text)
            assert sum(per_edge.values()) == total, (base_url, per_edge, total)
            assert per_edge == {edge: sum(len(d.acked) for d in devices[edge]) for edge in EDGES}
            seen |= set(re.findall(r'replica="([^"]+)"', text))
            assert re.search(r"^twincloud_live_listening\{replica=\S+\} 1", text, re.MULTILINE)
        assert seen == {"cloud-a", "cloud-b"}

        # Each way, directly: a frame one replica stores reaches the other's WebSocket.
        for stores, follows in ((b, a), (a, b)):
            device = devices["edge-a"][0]
            watcher = LiveClient(await connect(f"{follows.ws_url}/api/v1/twin/ws/{device.name}",
                                               additional_headers=admin, proxy=None))
            try:
                i = 1_000_000 + stores.port
                frame = {"ts": T0 + i, "device_id": device.name, "sensors": {"i": i}}
                body = {"edge_id": "edge-a", "sent_at": time.time(), "health": {"queue_depth": 0},
                        "frames": [{"seq": 10**9 + stores.port, "frame": frame}]}
                resp = await client.post(f"{stores.base_url}/api/v1/sync/batches", json=body,
                                         headers={"Authorization": f"Bearer {a.edge_tokens['edge-a']}"})
                assert resp.json()["stored"] == 1, resp.text
                async with asyncio.timeout(10):
                    while i not in watcher.values:
                        await asyncio.sleep(0.05)
            finally:
                await watcher.close()
        for c in live.values():
            await c.close()


async def _stored_some(client: httpx.AsyncClient, server: CloudServer) -> bool:
    return replica_stored(await metrics(client, server.base_url, server.viewer_token)) > 0


def test_the_shipped_haproxy_config_is_valid() -> None:
    binary = haproxy_binary()
    assert binary is not None
    check = subprocess.run([binary, "-c", "-f", str(CONFIG)], capture_output=True, text=True, timeout=30, check=False,
                           env={**os.environ, "TWINCLOUD_REPLICA_1": "127.0.0.1:8081",
                                "TWINCLOUD_REPLICA_2": "127.0.0.1:8082"})
    assert check.returncode == 0, check.stderr
