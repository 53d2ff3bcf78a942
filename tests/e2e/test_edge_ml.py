"""Edge ML over real processes: the plant simulator, the edge daemon and the cloud, with the CLIs a person types.

Normal telemetry from the simulator reaches the cloud; a model is trained from that history with `twincloud model
train`, uploaded and assigned to the edge; the edge pulls it and scores every frame. Then the cloud goes away,
and the simulator is restarted with a pressure sensor drifting and later the spindle overheating: the edge
raises alerts on its own, publishes them on MQTT, keeps them through the outage, and once the cloud is back
every alert event the edge published is in the cloud exactly once, can be acknowledged, and the drift (with the
pressure input named) shows in `twinedge model status` and in the cloud's drift list.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt
import httpx

from tests.cloud.server import CloudServer
from tests.e2e.daemon import PASSWORD, USER, EdgeDaemon
from tests.e2e.test_cloud_sync import wait_for
from tests.support import free_ports

EDGE = "sim-edge"
DEVICE = "machine-1"
SENSORS = "spindle_temp[°C],motor_temp[°C],coolant_temp[°C],coolant_flow[l/min],pressure[bar],motor_current[A]"


def uplink_toml(port: int, token: str) -> str:
    return (f'\n[uplink]\nurl = "http://127.0.0.1:{port}"\ntoken = "{token}"\n'
            f'retry_initial = "50ms"\nretry_max = "500ms"\ntimeout = "5s"\ninterval = "100ms"\n'
            '[inference]\npoll_interval = "1s"\n'
            '[inference.alerts]\nmin_duration = "1s"\nclear_duration = "2s"\n'
            '[inference.drift]\nwindow_rows = 100\nmin_rows = 50\n')


async def run_cli(*args: str, timeout: float = 240) -> str:
    proc = await asyncio.create_subprocess_exec(sys.executable, *args, stdout=subprocess.PIPE,
                                                stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode == 0, f"{args}: exit {proc.returncode}\n{err.decode()[-3000:]}"
    return out.decode()


@contextlib.asynccontextmanager
async def simulator(port: int, ready: Path, *faults: str) -> AsyncIterator[None]:
    ready.unlink(missing_ok=True)
    args = [arg for fault in faults for arg in ("--fault", fault)]
    sim = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "twinsim.cli", "run", "--machines", "1", "--modbus-port", str(port), "--no-opcua",
        "--summary-every", "0s", "--ready-file", str(ready), "--log-level", "warning", *args)
    try:
        await wait_for(lambda: asyncio.sleep(0, ready.exists()), timeout=60)
        yield
    finally:
        sim.terminate()
        await sim.wait()


async def model_status(daemon: EdgeDaemon) -> dict[str, Any]:
    from edge.control.client import request
    status: dict[str, Any] = await request(daemon.socket, "model_status")
    return next((d for d in status["devices"] if d["device_id"] == DEVICE), {})


async def collect_alerts(port: int, into: list[dict[str, Any]], subscribed: asyncio.Event) -> None:
    """Every alert event the edge publishes on MQTT: the independent record the cloud is compared with."""
    async with aiomqtt.Client("127.0.0.1", port, username=USER, password=PASSWORD, identifier="alert-watch") as client:
        await client.subscribe(f"twin/{DEVICE}/alerts", qos=1)
        subscribed.set()
        async for message in client.messages:
            payload = message.payload
            assert isinstance(payload, bytes | bytearray)
            into.append(json.loads(payload))


async def test_a_model_trained_from_history_scores_the_plant_and_its_alerts_survive_a_cloud_outage(
        tmp_path: Path) -> None:
    cloud = CloudServer(tmp_path / "cloud", edges=[EDGE])
    await asyncio.to_thread(cloud.start)
    port = free_ports(1)
    ready = tmp_path / "sim.ready"
    generated = await run_cli("-m", "twinsim.cli", "config", "--machines", "1", "--modbus-port", str(port),
                              "--no-opcua", "--poll-interval", "200ms", "--edge-id", EDGE)
    sources = generated[generated.index("[[sources]]"):]
    daemon = EdgeDaemon(tmp_path / "edge", uplink_toml(cloud.port, cloud.edge_tokens[EDGE]) + "\n" + sources,
                        edge_id=EDGE)
    cloud_cli = ["-m", "cloud.cli", "--config", str(cloud.config_path)]
    admin = {"Authorization": f"Bearer {cloud.admin_token}"}
    published: list[dict[str, Any]] = []
    subscribed = asyncio.Event()
    watcher: asyncio.Task[None] | None = None
    try:
        # 1. Normal operation: the cloud collects the history a model is trained from.
        async with simulator(port, ready):
            await daemon.start()
            started = time.time()
            await asyncio.sleep(45)
            until = time.time()
        package = tmp_path / "plant.twinmodel"
        await run_cli(*cloud_cli, "model", "train", "--device", DEVICE, "--from", str(started), "--to", str(until),
                      "--kind", "anomaly", "--sensors", SENSORS, "--name", "plant-anomaly", "--hidden", "32,8,32",
                      "--epochs", "150", "--quiet", "--out", str(package))
        await run_cli(*cloud_cli, "model", "upload", str(package))
        await run_cli(*cloud_cli, "model", "assign", "plant-anomaly", "1", "--edge", EDGE)  # the canary edge

        # 2. The edge pulls the model; faults start; the cloud goes away while the edge raises alerts.
        watcher = asyncio.create_task(collect_alerts(daemon.mqtt_port, published, subscribed))
        await asyncio.wait_for(subscribed.wait(), 30)
        async with simulator(port, ready, f"{DEVICE}:drift@0s", f"{DEVICE}:overheat@40s"):
            await wait_for(lambda: _serving(daemon), timeout=60)
            await asyncio.to_thread(cloud.stop)
            await wait_for(lambda: _raised(published), timeout=120)
            await wait_for(lambda: _drifted(daemon), timeout=60)
            drift = await model_status(daemon)
            await asyncio.to_thread(cloud.start)
            await wait_for(lambda: _alerts_synced(daemon), timeout=60)
        assert drift["state"] == "serving" and drift["version"] == 1
        assert drift["drift"] == "drift" and drift["psi"]["pressure"] >= 0.25, drift
        await wait_for(lambda: _alerts_synced(daemon), timeout=60)  # with what the simulator's stop raised

        # 3. The cloud has every alert event exactly once, lets an operator acknowledge one, and lists the drift.
        async with httpx.AsyncClient(base_url=cloud.base_url, headers=admin, timeout=10) as client:

            async def arrived() -> bool:
                """Every alert event published so far, and the health report with the drift (it travels with the
                next batch), are in the cloud; the assertions below say what is not."""
                have = {a["alert_id"]: a for a in await _all_alerts(client)}
                drifted = (await client.get("/api/v1/drift", params={"drifted": "true"})).json()
                return ({e["alert_id"] for e in published} <= set(have)
                        and all(have[e["alert_id"]]["cleared_at"] is not None
                                for e in published if e["event"] == "cleared")
                        and any(r["device"] == DEVICE for r in drifted))

            with contextlib.suppress(TimeoutError):
                await wait_for(arrived, timeout=60)
            alerts = await _all_alerts(client)
            raised = {e["alert_id"] for e in published if e["event"] == "raised"}
            cleared = {e["alert_id"] for e in published if e["event"] == "cleared"}
            by_id = {a["alert_id"]: a for a in alerts}
            assert len(by_id) == len(alerts), "an alert is stored twice"
            assert raised and raised <= set(by_id), f"alerts lost: {raised - set(by_id)}"
            assert all(by_id[a]["cleared_at"] is not None for a in cleared)
            assert all(a["device"] == DEVICE and a["edge"] == EDGE and a["model"] == "plant-anomaly"
                       and a["version"] == 1 for a in alerts)
            first = by_id[sorted(raised)[0]]
            viewer = {"Authorization": f"Bearer {cloud.viewer_token}"}
            refused = await client.post(f"/api/v1/alerts/{first['id']}/ack", json={"comment": "seen"}, headers=viewer)
            assert refused.status_code == 403
            ack = await client.post(f"/api/v1/alerts/{first['id']}/ack", json={"comment": "coolant pump checked"})
            assert ack.status_code == 200, ack.text
            acked = await client.get("/api/v1/alerts", params={"state": "acknowledged"})
            assert [a["id"] for a in acked.json()["alerts"]] == [first["id"]]
            drifted = (await client.get("/api/v1/drift", params={"drifted": "true"})).json()
            (report,) = [r for r in drifted if r["device"] == DEVICE]
            assert report["drift"] == "drift" and report["model"] == "plant-anomaly"
            assert "pressure" in {f["name"] for f in report["features"]}
            scored = await client.get("/api/v1/twin/history", params={"device": DEVICE, "fields": "metrics.model.score",
                                                                       "limit": "1000"})
            assert scored.status_code == 200, scored.text
            (series,) = scored.json()["series"]
            assert len(series["points"]) > 20, "the scores on the frames did not reach the cloud"
    finally:
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await watcher
        await daemon.stop()
        await asyncio.to_thread(cloud.stop)


async def _serving(daemon: EdgeDaemon) -> bool:
    status = await model_status(daemon)
    return status.get("state") == "serving" and (status.get("rows_scored") or 0) > 0


async def _raised(published: list[dict[str, Any]]) -> bool:
    return any(e["event"] == "raised" for e in published)


async def _drifted(daemon: EdgeDaemon) -> bool:
    return (await model_status(daemon)).get("drift") == "drift"


async def _alerts_synced(daemon: EdgeDaemon) -> bool:
    status = await daemon.status()
    return status["queue"]["alerts"]["pending"] == 0 and status["queue"]["depth"] < 50


async def _all_alerts(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params = {"device": DEVICE, "limit": "100", **({"cursor": cursor} if cursor else {})}
        page = await client.get("/api/v1/alerts", params=params)
        assert page.status_code == 200, page.text
        body = page.json()
        out.extend(body["alerts"])
        cursor = body.get("next_cursor")
        if not cursor:
            return out
