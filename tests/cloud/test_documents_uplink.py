"""The edge's queue to the cloud's programs, in one process: a real queue file and uplink send program documents
and frames to the real cloud app (over ``httpx.ASGITransport``); every frame and every valid program arrives once,
an invalid one is kept in the cloud as invalid with its reason, and the queue is empty afterwards."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx

from edge.config import StoreConfig, UplinkConfig
from edge.store import Store
from edge.uplink import Uplink
from shared.batch import Document, EdgeHealth
from shared.frame import TelemetryFrame
from tests.cloud.apiclient import T0, Api, auth
from tests.cloud.documents import program, tool

PROGRAMS = [program(f"shop/O{1000 + k}.nc", number=f"O{1000 + k}", tools=[tool(k + 1, "DRILL", 5.0, "drill")])
            for k in range(30)]


async def no_health() -> EdgeHealth:
    return EdgeHealth(queue_depth=0)


def as_document(body: dict[str, Any], at: float) -> Document:
    return Document(ts=at, kind="program", key=body["sha256"], device="mill-1", source="programs", body=body)


async def test_programs_and_frames_go_from_the_queue_to_the_cloud_once(api: Api, tmp_path: Path) -> None:
    store = Store(tmp_path / "q.db", StoreConfig())
    await store.open()
    config = UplinkConfig.model_validate({"url": "http://cloud.test", "token": api.edge, "retry_initial": "10ms",
                                          "retry_max": "50ms", "interval": "0s", "batch_max_frames": 25,
                                          "documents_max": 7})
    uplink = Uplink(config, store, edge_id="edge-1", health=no_health,
                    transport=httpx.ASGITransport(app=api.app))
    bad = {**PROGRAMS[0], "dialect": "mazatrol", "sha256": "f" * 64}
    try:
        frames = [TelemetryFrame(ts=T0 + i, device_id="mill-1", sensors={"n": i}) for i in range(100)]
        await store.append(frames[:50], documents=[as_document(p, T0 + k) for k, p in enumerate(PROGRAMS)])
        await store.append(frames[50:], documents=[as_document(bad, T0 + 40)])
        task = asyncio.create_task(uplink.run(), name="uplink")
        try:
            async with asyncio.timeout(20):
                while store.depth or store.document_depth:
                    await asyncio.sleep(0.02)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    finally:
        await store.close()
    listed = (await api.client.get("/api/v1/programs", params={"limit": 100}, headers=auth(api.viewer))).json()
    assert sorted(p["path"] for p in listed["programs"]) == sorted(p["path"] for p in PROGRAMS)
    found = (await api.client.get("/api/v1/programs", params={"tool": "T30"}, headers=auth(api.viewer))).json()
    assert [p["number"] for p in found["programs"]] == ["O1029"]
    rows = await api.ctx.storage.select(lambda p: (f"SELECT status, reason FROM documents WHERE key = {p(1)}",
                                                            ["f" * 64]))
    assert rows[0][0] == "invalid" and "dialect" in rows[0][1]
    history = await api.client.get("/api/v1/twin/history", params={"device": "mill-1", "limit": 1000},
                                   headers=auth(api.viewer))
    assert [v for _, v in history.json()["series"][0]["points"]] == list(range(100))
