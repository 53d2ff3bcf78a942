"""Simulator -> edge -> cloud over real HTTP, counting every frame produced against every frame stored.

(a) the cloud stops for a while during traffic and comes back;
(b) the edge is SIGKILLed during sync at random moments, 20 times;
(c) a proxy on our side answers 500/503 and drops connections at random;
(d) a malformed frame in the queue is quarantined with the cloud's reason while the rest keeps moving;
(e) frames of a device that belongs to another edge are quarantined with the cloud's reason, and acked.
"""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import msgpack

from edge.control.client import request
from tests.cloud.server import CloudServer
from tests.e2e.cloudcount import stored_values
from tests.e2e.daemon import EdgeDaemon
from tests.e2e.devices import T0, Device
from tests.e2e.faultproxy import FaultProxy
from tests.support import free_ports

EDGE = "edge-e2e"


def uplink_toml(port: int, token: str, batch: int = 200) -> str:
    return (f'\n[uplink]\nurl = "http://127.0.0.1:{port}"\ntoken = "{token}"\nbatch_max_frames = {batch}\n'
            f'retry_initial = "50ms"\nretry_max = "500ms"\ntimeout = "5s"\ninterval = "100ms"\n')


async def start_cloud(directory: Path) -> CloudServer:
    server = CloudServer(directory, edges=[EDGE])
    await asyncio.to_thread(server.start)
    return server


async def wait_for(condition: Callable[[], Any], timeout: float = 60.0, every: float = 0.2) -> None:
    async with asyncio.timeout(timeout):
        while not await condition():
            await asyncio.sleep(every)


async def drained(daemon: EdgeDaemon) -> bool:
    status = await daemon.status()
    return bool(status["queue"]["depth"] == 0 and status["writer"]["queued_in_memory"] == 0)


async def assert_exactly_once(cloud: CloudServer, devices: list[Device]) -> None:
    """Every acknowledged frame is in the cloud once; at most the one frame in flight at a cut is extra."""
    for device in devices:
        counts = await stored_values(cloud.base_url, cloud.admin_token, device.name, "i")
        assert device.acked, f"{device.name} never got an ack: the test exercised nothing"
        duplicated = {v: n for v, n in counts.items() if n != 1}
        assert not duplicated, f"{device.name}: stored more than once: {duplicated}"
        missing = set(device.acked) - set(counts)
        assert not missing, f"{device.name}: {len(missing)} acknowledged frames never reached the cloud"
        assert set(counts) <= {*device.acked, device.next}


async def test_a_cloud_outage_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    cloud = await start_cloud(tmp_path / "cloud")
    # Two simulated PLCs behind Modbus TCP, polled every 100 ms, beside MQTT devices.
    modbus = free_ports(2)  # one port per simulated machine
    ready = tmp_path / "sim.ready"
    sim_args = ["--machines", "2", "--modbus-port", str(modbus), "--no-opcua"]
    gen = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "twinsim.cli", "config", *sim_args, "--poll-interval", "100ms", stdout=subprocess.PIPE
    )
    generated = (await gen.communicate())[0].decode()
    sources = generated[generated.index("[[sources]]"):]
    sim = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "twinsim.cli", "run", *sim_args, "--summary-every", "0s", "--ready-file", str(ready),
        "--log-level", "warning",
    )
    daemon = EdgeDaemon(tmp_path / "edge", uplink_toml(cloud.port, cloud.edge_tokens[EDGE]) + "\n" + sources)
    devices = [Device("press-1", pace=0.002), Device("press-2", pace=0.002)]
    stop = asyncio.Event()
    try:
        await wait_for(lambda: asyncio.sleep(0, ready.exists()), timeout=60)
        await daemon.start()
        publishers = [asyncio.create_task(d.publish_until_cut(daemon.mqtt_port, stop), name=d.name)
                      for d in devices]
        await asyncio.sleep(2)
        await asyncio.to_thread(cloud.stop)
        outage_started = time.monotonic()
        await asyncio.sleep(3)
        during = await daemon.status()
        assert during["cloud"]["state"] == "retrying" and during["queue"]["depth"] > 0
        await asyncio.to_thread(cloud.start)
        await asyncio.sleep(2)
        stop.set()
        await asyncio.gather(*publishers)
        sim.terminate()
        await sim.wait()
        await wait_for(lambda: drained(daemon))
        status = await daemon.status()
    finally:
        stop.set()
        if sim.returncode is None:
            sim.terminate()
            await sim.wait()
        await daemon.stop()
        await asyncio.to_thread(cloud.stop)
    assert time.monotonic() - outage_started > 3
    await asyncio.to_thread(cloud.start)
    try:
        await assert_exactly_once(cloud, devices)
        for source in (s for s in status["sources"] if s["kind"] == "modbus"):
            # every frame the Modbus source produced is in the cloud once (each carries its own ts)
            counts = await stored_values(cloud.base_url, cloud.admin_token, source["name"], "spindle_speed")
            stored = sum(counts.values())
            assert source["frames"] > 20 and stored == source["frames"], (source["name"], stored, source["frames"])
    finally:
        await asyncio.to_thread(cloud.stop)


async def test_killing_the_edge_during_sync_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    rng = random.Random(7)
    cloud = await start_cloud(tmp_path / "cloud")
    daemon = EdgeDaemon(tmp_path / "edge", uplink_toml(cloud.port, cloud.edge_tokens[EDGE], batch=25))
    devices = [Device("press-1"), Device("lathe-1")]
    try:
        for _ in range(20):
            await daemon.start()
            for d in devices:
                d.progress.clear()
            tasks = [asyncio.create_task(d.publish_until_cut(daemon.mqtt_port), name=d.name) for d in devices]
            async with asyncio.timeout(30):
                await asyncio.gather(*(d.progress.wait() for d in devices))
            await asyncio.sleep(rng.uniform(0.0, 0.6))
            await daemon.kill()
            async with asyncio.timeout(30):
                await asyncio.gather(*tasks)
        await daemon.start()
        await wait_for(lambda: drained(daemon))
        await daemon.stop()
        await assert_exactly_once(cloud, devices)
    finally:
        await asyncio.to_thread(cloud.stop)


async def test_cloud_errors_and_dropped_connections_still_store_exactly_once(tmp_path: Path) -> None:
    cloud = await start_cloud(tmp_path / "cloud")
    weights = {"pass": 0.55, "500": 0.15, "503": 0.15, "reset": 0.15}
    async with FaultProxy(cloud.port, seed=11, weights=weights, drop_midway=0.3) as proxy:
        daemon = EdgeDaemon(tmp_path / "edge", uplink_toml(proxy.port, cloud.edge_tokens[EDGE], batch=50))
        devices = [Device("press-1", pace=0.002), Device("oven-2", pace=0.002)]
        stop = asyncio.Event()
        try:
            await daemon.start()
            tasks = [asyncio.create_task(d.publish_until_cut(daemon.mqtt_port, stop), name=d.name) for d in devices]
            await asyncio.sleep(5)
            stop.set()
            await asyncio.gather(*tasks)
            await wait_for(lambda: drained(daemon), timeout=90)
        finally:
            stop.set()
            await daemon.stop()
    try:
        assert all(proxy.fates[f] > 0 for f in ("pass", "500", "503", "reset", "cut")), proxy.fates
        await assert_exactly_once(cloud, devices)
    finally:
        await asyncio.to_thread(cloud.stop)


async def test_a_malformed_frame_is_quarantined_with_the_clouds_reason_and_the_rest_flows(tmp_path: Path) -> None:
    cloud = await start_cloud(tmp_path / "cloud")
    daemon = EdgeDaemon(tmp_path / "edge", uplink_toml(cloud.port, cloud.edge_tokens[EDGE], batch=20))
    try:
        # Two damaged rows in the queue, as a failing disk or an older edge might leave them:
        # a frame the cloud refuses, and bytes that are not MessagePack at all.
        await daemon.start()
        assert await daemon.stop() == 0
        too_long = msgpack.packb({"ts": T0 - 10, "device_id": "press-1", "sensors": {"note": "x" * 1000}})
        with sqlite3.connect(daemon.queue) as db:
            db.executemany(
                "INSERT INTO frames(device_id, ts, stored_at, payload) VALUES (?, ?, ?, ?)",
                [("press-1", T0 - 10, time.time(), too_long), ("press-1", T0 - 9, time.time(), b"\xc1\xc1\xc1")],
            )
        await daemon.start()
        device = Device("press-1")
        stop = asyncio.Event()
        task = asyncio.create_task(device.publish_until_cut(daemon.mqtt_port, stop), name="press-1")
        await asyncio.sleep(2)
        stop.set()
        await task
        await wait_for(lambda: drained(daemon))
        status = await daemon.status()
        quarantine = await request(daemon.socket, "quarantine")
        await daemon.stop()
        reasons = [q["reason"] for q in quarantine if q["origin"].startswith("cloud:")]
        assert len(reasons) == 2, quarantine
        assert any("256" in r for r in reasons)  # the cloud's own words about the text limit
        assert any(r.startswith("HTTP 4") for r in reasons)
        assert status["cloud"]["quarantined_by_cloud"] == 2
        await assert_exactly_once(cloud, [device])
    finally:
        await asyncio.to_thread(cloud.stop)


async def test_a_device_of_another_edge_is_quarantined_on_the_sending_edge_and_its_queue_drains(
        tmp_path: Path) -> None:
    cloud = CloudServer(tmp_path / "cloud", edges=[EDGE, "edge-owner"])
    await asyncio.to_thread(cloud.start)
    daemon = EdgeDaemon(tmp_path / "edge", uplink_toml(cloud.port, cloud.edge_tokens[EDGE], batch=20))
    admin = {"Authorization": f"Bearer {cloud.admin_token}"}
    try:
        async with httpx.AsyncClient(base_url=cloud.base_url) as client:
            resp = await client.post("/api/v1/devices", headers=admin,
                                     json={"name": "press-1", "edge": "edge-owner", "reason": "owned elsewhere"})
            assert resp.status_code == 201, resp.text
            await daemon.start()
            devices = [Device("press-1"), Device("press-2")]
            stop = asyncio.Event()
            tasks = [asyncio.create_task(d.publish_until_cut(daemon.mqtt_port, stop), name=d.name) for d in devices]
            await asyncio.sleep(2)
            stop.set()
            await asyncio.gather(*tasks)
            await wait_for(lambda: drained(daemon))
            status = await daemon.status()
            quarantine = await request(daemon.socket, "quarantine", limit=1000)
            await daemon.stop()

            assert len(quarantine) < 1000  # all of it was read
            refused = [q for q in quarantine if q["origin"] == "cloud:press-1"]
            assert len(refused) == len(devices[0].acked) > 0, (len(refused), len(devices[0].acked))
            assert all(q["reason"] == "device press-1 belongs to edge edge-owner; an admin can move it with "
                                      f"`twincloud device move press-1 --to {EDGE}`" for q in refused)
            assert status["cloud"]["quarantined_by_cloud"] == len(refused)
            assert status["queue"]["depth"] == 0  # every refused frame was acked and left the queue
            await assert_exactly_once(cloud, devices[1:])
            state = (await client.get("/api/v1/twin/press-1/state", headers=admin)).json()
            assert (state["ts"], state["values"]) == (None, {})
            # The owner's real readings, at the instants the other edge sent, are stored and not duplicates.
            real = {"edge_id": "edge-owner", "sent_at": time.time(), "health": {"queue_depth": 0},
                    "frames": [{"seq": i + 1, "frame": json.loads(devices[0].payload(i))} for i in range(3)]}
            resp = await client.post("/api/v1/sync/batches", json=real,
                                     headers={"Authorization": f"Bearer {cloud.edge_tokens['edge-owner']}"})
            assert resp.json() == {"acked_through": 3, "stored": 3, "duplicates": 0, "rejected": [],
                                   "alerts_acked_through": None, "events_acked_through": None,
                                   "documents_acked_through": None}
            edges = {e["name"]: e for e in (await client.get("/api/v1/edges", headers=admin)).json()}
            assert edges[EDGE]["rejected"] == len(refused) and edges[EDGE]["frames_stored"] == len(devices[1].acked)
            assert abs(edges[EDGE]["clock_skew_s"]) < 5
    finally:
        if daemon.proc is not None:
            await daemon.stop()
        await asyncio.to_thread(cloud.stop)
