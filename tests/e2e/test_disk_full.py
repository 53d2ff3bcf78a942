"""A full disk with the cloud down: the daemon as a process, its queue on a real 20 MB filesystem, a 256 MB budget.

MQTT devices publish QoS 1 until the disk is full and well beyond; the edge must
keep running, apply its policy, say so in `twinedge status`, restart cleanly on
the full disk, and drain every frame it kept once the cloud (the real
`twincloud serve`) is back: delivered + counted drops = acknowledged, each
delivered frame stored once, and the queue file intact.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from tests.cloud.server import CloudServer
from tests.e2e.cloudcount import stored_values
from tests.e2e.daemon import PASSWORD, USER, EdgeDaemon
from tests.edge.broker.mqttraw import PUBACK, RawClient
from tests.smallfs import small_filesystem

EDGE = "edge-e2e"
T0 = 1_790_000_000.0  # in the past: the cloud refuses frames dated ahead of its clock
PER_MESSAGE = 50
PADDING = {f"p{k}": 1000.5 + k for k in range(16)}  # about 300 bytes a frame: the disk fills in seconds


class BatchDevice:
    """Publishes messages of PER_MESSAGE frames at QoS 1 (frame i: ts T0 + i, sensor i) and keeps what was acked."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.acked = 0  # frames 0 .. acked-1 were acknowledged
        self.unacked = 0  # messages the broker closed the connection on instead of acknowledging

    def message(self, first: int) -> bytes:
        return json.dumps([{"ts": T0 + i, "sensors": {"i": i, **PADDING}}
                           for i in range(first, first + PER_MESSAGE)]).encode()

    async def publish(self, port: int, stop: asyncio.Event) -> None:
        while not stop.is_set():
            client, code, _ = await RawClient.connect(port, self.name, username=USER, password=PASSWORD)
            assert code == 0
            try:
                while not stop.is_set():
                    packet_id = self.acked // PER_MESSAGE % 65535 + 1
                    await client.publish(f"twin/{self.name}/telemetry", self.message(self.acked), qos=1,
                                         packet_id=packet_id)
                    assert (await client.read_kind(PUBACK, within=30)).packet_id == packet_id
                    self.acked += PER_MESSAGE
            except (ConnectionError, asyncio.IncompleteReadError):
                self.unacked += 1  # not stored, not acknowledged: sent again on the next connection
            finally:
                await client.abort()


async def twinedge_status(daemon: EdgeDaemon) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edge.cli", "status", "--socket", str(daemon.socket),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def wait_until(daemon: EdgeDaemon, check: Callable[[dict[str, Any]], bool],
                     timeout: float = 60.0) -> dict[str, Any]:
    """The daemon's status once ``check`` holds for it."""
    async with asyncio.timeout(timeout):
        while True:
            status = await daemon.status()
            if check(status):
                return status
            await asyncio.sleep(0.1)


async def delivered_frames(cloud: CloudServer, devices: list[BatchDevice]) -> int:
    """Frames the (running) cloud stored: each at most once, and only frames a device was acknowledged for."""
    delivered = 0
    for device in devices:
        counts = await stored_values(cloud.base_url, cloud.admin_token, device.name, "i")
        assert not counts or max(counts.values()) == 1, f"{device.name}: a frame stored twice"
        assert all(isinstance(i, float) and 0 <= i < device.acked for i in counts), device.name
        delivered += len(counts)
    return delivered


@contextlib.asynccontextmanager
async def publishing(daemon: EdgeDaemon, devices: list[BatchDevice]) -> AsyncIterator[None]:
    """The devices publish while the block runs, and have stopped when it ends."""
    stop = asyncio.Event()
    publishers = [asyncio.create_task(d.publish(daemon.mqtt_port, stop), name=d.name) for d in devices]
    try:
        yield
    finally:
        stop.set()
        await asyncio.gather(*publishers)


@contextlib.asynccontextmanager
async def edge_on_a_small_disk(tmp_path: Path, size_mb: int, store_toml: str) -> AsyncIterator[
        tuple[EdgeDaemon, CloudServer]]:
    """The daemon with its state on a ``size_mb`` MB filesystem, started; the cloud made, not started (down)."""
    with small_filesystem(tmp_path / "fs", size_mb) as fs:
        cloud = CloudServer(tmp_path / "cloud", edges=[EDGE])
        daemon = EdgeDaemon(tmp_path / "edge", uplink_toml(cloud), state_dir=fs / "twinedge", store_toml=store_toml)
        try:
            await daemon.start()
            yield daemon, cloud
        finally:
            if daemon.proc is not None and daemon.proc.returncode is None:
                await daemon.stop()
            await asyncio.to_thread(cloud.stop)


def uplink_toml(cloud: CloudServer) -> str:
    return (f'[uplink]\nurl = "http://127.0.0.1:{cloud.port}"\ntoken = "{cloud.edge_tokens[EDGE]}"\n'
            'batch_max_frames = 2000\nretry_initial = "50ms"\nretry_max = "500ms"\ninterval = "100ms"\n')


async def test_a_full_disk_keeps_the_edge_running_and_every_kept_frame_reaches_the_cloud(tmp_path: Path) -> None:
    # The cloud is not started: its port is closed, the cloud is down.
    async with edge_on_a_small_disk(tmp_path, 20, 'disk_budget = "256MB"\n') as (daemon, cloud):
        devices = [BatchDevice(f"press-{n}") for n in range(4)]
        async with publishing(daemon, devices):
            full = await wait_until(daemon, lambda s: s["queue"]["drops"].get("disk_budget_oldest", 0) >= 5_000)
            shown = await twinedge_status(daemon)

        queue = full["queue"]
        assert queue["full"] and queue["capped_by_disk"] and queue["budget_bytes"] < 20 * 1024**2
        assert "disk:         FULL — the filesystem has" in shown and "dropping the oldest frames" in shown
        assert "(budget 256 MB capped by the disk)" in shown

        # A restart on the full disk: no crash, no loop.
        assert await daemon.stop() == 0
        await daemon.start()
        kept = (await daemon.status())["queue"]["depth"]
        assert kept > 10_000

        await asyncio.to_thread(cloud.start)
        drained = await wait_until(daemon, lambda s: s["queue"]["depth"] == 0, timeout=120)
        assert await daemon.stop() == 0
        with sqlite3.connect(daemon.queue) as db:
            assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        delivered = await delivered_frames(cloud, devices)

    log = daemon.log.read_text()
    assert "Traceback" not in log and " ERROR " not in log and "CRITICAL" not in log
    # One WARNING when the disk filled (the next would come a minute later), not one per batch.
    assert 1 <= log.count("the disk is full") <= 4, log.count("the disk is full")

    produced = sum(d.acked for d in devices)
    dropped = drained["queue"]["drops"]["disk_budget_oldest"]
    assert delivered >= kept and dropped + delivered == produced, (produced, dropped, delivered)


async def test_drop_newest_on_a_full_disk_acknowledges_only_what_it_stored(tmp_path: Path) -> None:
    store_toml = 'disk_budget = "256MB"\nwhen_full = "drop_newest"\n'
    async with edge_on_a_small_disk(tmp_path, 10, store_toml) as (daemon, cloud):
        devices = [BatchDevice(f"oven-{n}") for n in range(2)]
        async with publishing(daemon, devices):
            full = await wait_until(daemon, lambda s: s["queue"].get("refused_unacked", 0) >= 1_000)
            shown = await twinedge_status(daemon)
        assert full["queue"]["full"] and full["queue"]["drops"] == {}
        assert "refusing new frames" in shown and "not acknowledged" in shown
        assert all(d.unacked > 0 for d in devices)  # each was told "not stored" (no PUBACK) and kept its frames

        await asyncio.to_thread(cloud.start)
        await wait_until(daemon, lambda s: s["queue"]["depth"] == 0, timeout=120)
        before = [d.acked for d in devices]
        async with publishing(daemon, devices):  # the devices send what was refused, and more, now there is room
            async with asyncio.timeout(30):
                while any(d.acked < b + 5 * PER_MESSAGE for d, b in zip(devices, before, strict=True)):
                    await asyncio.sleep(0.05)
        drained = await wait_until(daemon, lambda s: s["queue"]["depth"] == 0, timeout=120)
        assert await daemon.stop() == 0
        delivered = await delivered_frames(cloud, devices)
    assert drained["queue"]["drops"] == {}
    assert delivered == sum(d.acked for d in devices)  # nothing acknowledged was lost
