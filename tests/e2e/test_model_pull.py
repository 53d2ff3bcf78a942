"""A model assigned in the real cloud reaches a real `twinedge run`: pulled, verified, scoring MQTT frames; its
alerts and its report reach the cloud; the cloud going away loses no alert, and a restart without the cloud
keeps the model serving."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import pytest

from edge.control.client import request
from tests.cloud.server import CloudServer
from tests.e2e.daemon import PASSWORD, USER, EdgeDaemon
from tests.mlkit import make_package, make_schema

EDGE = "edge-ml"
T0 = float(int(time.time()) - 3600)  # an hour ago: inside the cloud's accepted window


def settings(cloud: CloudServer) -> str:
    return (f'\n[uplink]\nurl = "{cloud.base_url}"\ntoken = "{cloud.edge_tokens[EDGE]}"\ninterval = "100ms"\n'
            f'retry_initial = "50ms"\nretry_max = "500ms"\ntimeout = "5s"\n'
            f'[inference]\npoll_interval = "1s"\n')


async def api(cloud: CloudServer, method: str, path: str, **kw: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=cloud.base_url, timeout=30,
                                 headers={"Authorization": f"Bearer {cloud.admin_token}"}) as client:
        return await client.request(method, path, **kw)


async def until(check: Any, within: float = 30.0) -> Any:
    async with asyncio.timeout(within):
        while not (found := await check()):
            await asyncio.sleep(0.1)
    return found


async def publish(daemon: EdgeDaemon, rows: list[tuple[float, float, float]]) -> None:
    async with aiomqtt.Client("127.0.0.1", daemon.mqtt_port, username=USER, password=PASSWORD) as client:
        for t, temp, vib in rows:
            frame = {"ts": T0 + t, "device_id": "press-1", "sensors": {"temp": temp, "vib": vib}}
            await client.publish("twin/press-1/telemetry", json.dumps(frame).encode(), qos=1)


@pytest.mark.slow
async def test_a_model_from_the_cloud_scores_on_the_edge_and_its_alerts_survive_an_outage(tmp_path: Path) -> None:
    cloud = CloudServer(tmp_path / "cloud", edges=[EDGE])
    await asyncio.to_thread(cloud.start)
    daemon = EdgeDaemon(tmp_path / "edge", "", edge_id=EDGE)
    try:
        data, package = make_package(make_schema(threshold=5.0), name="press-anomaly")
        uploaded = await api(cloud, "POST", "/api/v1/models", content=data,
                             headers={"Content-Type": "application/zip"})
        version = uploaded.json()["version"]
        assigned = await api(cloud, "PUT", "/api/v1/model-assignments",
                             json={"scope": "edge", "target": EDGE, "model": "press-anomaly", "version": version})
        assert assigned.status_code == 200, assigned.text
        daemon.config.write_text(daemon.config.read_text() + settings(cloud))
        await daemon.start()
        pulled = daemon.queue.parent / "models" / f"{package.sha256}.twinmodel"

        async def serving() -> bool:
            """The package is on disk and its assignment loaded: frames published from now on are scored (the
            file is in place a moment before the model is)."""
            rules = (await request(daemon.socket, "model_status"))["rules"]
            return pulled.is_file() and any(r["sha256"] == package.sha256 for r in rules)

        await until(serving)
        await publish(daemon, [(0, 1.0, 1.0), (1, 3.0, 3.0)])  # the second scores 9: an alert is raised

        async def alerts(state: str) -> list[dict[str, Any]]:
            found = (await api(cloud, "GET", "/api/v1/alerts", params={"edge": EDGE, "state": state})).json()
            return list(found["alerts"])

        [raised] = await until(lambda: alerts("open"))
        assert (raised["device"], raised["model"], raised["version"], raised["raised_at"]) == (
            "press-1", "press-anomaly", version, T0 + 1)

        async def reported() -> list[dict[str, Any]]:
            return list((await api(cloud, "GET", "/api/v1/drift")).json())

        [report] = await until(reported)
        assert (report["device"], report["model"], report["version"], report["state"]) == (
            "press-1", "press-anomaly", version, "serving")

        await asyncio.to_thread(cloud.stop)  # the cloud goes away: the alert clears meanwhile
        await publish(daemon, [(2, 0.0, 0.0)])
        assert await daemon.stop() == 0
        await daemon.start()  # a restart without the cloud: the model kept on disk serves
        await until(serving)
        await publish(daemon, [(3, 2.0, 2.0)])

        async def scored() -> list[dict[str, Any]]:
            rows = await request(daemon.socket, "queue_peek", limit=100)
            return [r["frame"] for r in rows if r["frame"]["ts"] == T0 + 3 and "metrics" in r["frame"]]

        [frame] = await until(scored)
        assert frame["metrics"]["model.score"] == pytest.approx(4.0)

        await asyncio.to_thread(cloud.start)
        [cleared] = await until(lambda: alerts("cleared"), within=60)
        assert cleared["id"] == raised["id"] and cleared["cleared_at"] == T0 + 2
        assert await alerts("open") == []
    finally:
        if daemon.proc is not None and daemon.proc.returncode is None:
            await daemon.stop()
        await asyncio.to_thread(cloud.stop)
