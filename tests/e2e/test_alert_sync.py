"""Model alerts from the edge's queue to the real cloud through an outage and a lossy network: every alert event
arrives, and is stored once.

The edge side is the real store and uplink in this process; the cloud is a real twincloud process, reached
through a proxy that loses answers (the cloud stored the batch, the edge never heard: it sends it again). Halfway,
the cloud stops while alerts keep being raised and cleared, and then comes back on the same port and database.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from edge.config import StoreConfig, UplinkConfig
from edge.store import Store
from edge.uplink import Uplink
from shared.batch import AlertEvent, EdgeHealth
from shared.frame import TelemetryFrame
from tests.cloud.server import CloudServer
from tests.e2e.faultproxy import FaultProxy

EDGE = "edge-alerts"
T0 = 1_767_225_600.0
DEVICE = "press-7"


def event(n: int, kind: str) -> AlertEvent:
    return AlertEvent(alert_id=f"al-{n}", event=kind, device_id=DEVICE, ts=T0 + n + (30 if kind == "cleared" else 0),
                      model="bearing", version=1, score=4.0 + n / 100, threshold=3.0,
                      message=None if kind == "cleared" else f"vibration unusual ({n})")


async def no_health() -> EdgeHealth:
    return EdgeHealth(queue_depth=0)


async def alerts_in_cloud(cloud: CloudServer) -> list[dict[str, object]]:
    found: list[dict[str, object]] = []
    cursor: str | None = None
    async with httpx.AsyncClient(base_url=cloud.base_url, timeout=10,
                                 headers={"Authorization": f"Bearer {cloud.admin_token}"}) as client:
        while True:
            params = {"edge": EDGE, "limit": "1000", **({"cursor": cursor} if cursor else {})}
            page = (await client.get("/api/v1/alerts", params=params)).raise_for_status().json()
            found += page["alerts"]
            if not (cursor := page["next_cursor"]):
                return found


async def test_a_cloud_outage_and_lost_answers_lose_and_double_no_alert(tmp_path: Path) -> None:
    cloud = CloudServer(tmp_path / "cloud", edges=[EDGE])
    await asyncio.to_thread(cloud.start)
    store = Store(tmp_path / "edge" / "queue.db", StoreConfig())
    await store.open()
    try:
        async with FaultProxy(cloud.port, seed=11, weights={"pass": 0.8, "503": 0.1, "reset": 0.1},
                              drop_midway=0.2) as proxy:
            config = UplinkConfig.model_validate({
                "url": f"http://127.0.0.1:{proxy.port}", "token": cloud.edge_tokens[EDGE], "interval": "50ms",
                "retry_initial": "20ms", "retry_max": "300ms", "timeout": "5s", "batch_max_frames": 50})
            uplink = Uplink(config, store, edge_id=EDGE, health=no_health)
            task = asyncio.create_task(uplink.run(), name="uplink")
            expected: dict[str, str] = {}
            for n in range(60):
                frames = [TelemetryFrame(ts=T0 + n + k / 10, device_id=DEVICE, sensors={"vib": float(n)})
                          for k in range(10)]
                events = [event(n, "raised")] + ([event(n - 3, "cleared")] if n % 3 == 0 and n >= 3 else [])
                await store.append(frames, alerts=events)
                expected[f"al-{n}"] = "open"
                if n % 3 == 0 and n >= 3:
                    expected[f"al-{n - 3}"] = "cleared"
                await uplink.on_commit(frames)
                if n == 20:
                    await asyncio.to_thread(cloud.stop)  # the cloud goes away; alerts keep coming
                if n == 40:
                    await asyncio.to_thread(cloud.start)
                await asyncio.sleep(0.03)
            async with asyncio.timeout(90):
                while store.alert_depth or store.depth:
                    await asyncio.sleep(0.1)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert proxy.fates["cut"] > 0  # answers were lost: batches were sent again
        listed = await alerts_in_cloud(cloud)
        assert sorted(str(a["alert_id"]) for a in listed) == sorted(expected)  # each alert once, none missing
        assert {str(a["alert_id"]): a["state"] for a in listed} == expected
        assert uplink.snapshot()["alerts_sent"] == 60 + 19  # every event acknowledged, each once
    finally:
        await store.close()
        await asyncio.to_thread(cloud.stop)
