"""Model alerts on the uplink, against a scripted cloud at the HTTP transport seam: ahead of frames, alone,
bounded per batch, deleted only through ``alerts_acked_through``, narrowed down and quarantined one by one
when the cloud refuses them, and never lost or doubled through cloud trouble."""

from __future__ import annotations

import asyncio
import gzip
import logging
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import msgpack
import pytest

from edge.uplink import Uplink
from shared.batch import AlertEvent, SyncBatch
from shared.frame import TelemetryFrame
from tests.edge.uplink.test_link import run_until, uplink_running

T0 = 1_800_000_000.0
Handler = Callable[[dict[str, Any]], httpx.Response]


def frames(n: int, start: int = 0) -> list[TelemetryFrame]:
    return [TelemetryFrame(ts=T0 + start + i, device_id="press-1", sensors={"n": start + i}) for i in range(n)]


def alerts(n: int, start: int = 0) -> list[AlertEvent]:
    return [AlertEvent(alert_id=f"a-{start + i}", event="raised", device_id="press-1", ts=T0 + start + i,
                       model="bearing", version=2, score=0.97, threshold=0.9) for i in range(n)]


def ack(batch: dict[str, Any], *, alerts_through: int | None | str = "all") -> httpx.Response:
    sent = batch.get("alerts", [])
    if alerts_through == "all":
        alerts_through = sent[-1]["seq"] if sent else None
    return httpx.Response(200, json={
        "acked_through": batch["frames"][-1]["seq"] if batch["frames"] else None, "stored": len(batch["frames"]),
        "duplicates": 0, "rejected": [], "alerts_acked_through": alerts_through,
    })


def alert_ids(batch: dict[str, Any]) -> list[str]:
    return [a["alert"]["alert_id"] for a in batch.get("alerts", [])]


class ScriptedCloud:
    """Decodes each batch, checks it against the sync contract, and answers with the handler's response."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.batches: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        batch = msgpack.unpackb(gzip.decompress(request.content), raw=False)
        SyncBatch.model_validate(batch)  # what the cloud accepts
        self.batches.append(batch)
        return self.handler(batch)


def empty(uplink: Uplink) -> Callable[[], bool]:
    return lambda: uplink.store.depth == 0 and uplink.store.alert_depth == 0


async def test_alerts_go_in_the_first_batch_ahead_of_a_backlog_and_leave_on_the_ack(tmp_path: Path) -> None:
    cloud = ScriptedCloud(ack)
    async with uplink_running(tmp_path, cloud, batch_max_frames=10) as uplink:
        await uplink.store.append(frames(50))
        await uplink.store.append(frames(1, start=50), alerts=alerts(3))  # raised by the newest frame
        await run_until(uplink, empty(uplink))
        snapshot = uplink.snapshot()
    assert alert_ids(cloud.batches[0]) == ["a-0", "a-1", "a-2"]
    assert [f["frame"]["sensors"]["n"] for f in cloud.batches[0]["frames"]] == list(range(10))
    assert all("alerts" not in b for b in cloud.batches[1:])  # once acknowledged, never sent again
    assert snapshot["alerts_sent"] == 3 and snapshot["frames_sent"] == 51


async def test_alerts_without_frames_are_sent_alone(tmp_path: Path) -> None:
    cloud = ScriptedCloud(ack)
    async with uplink_running(tmp_path, cloud) as uplink:
        await uplink.store.append([], alerts=alerts(2))
        await run_until(uplink, empty(uplink))
    [batch] = cloud.batches
    assert alert_ids(batch) == ["a-0", "a-1"] and batch["frames"] == []


async def test_alerts_are_bounded_per_batch_and_an_ack_past_the_batch_deletes_only_what_it_carried(
        tmp_path: Path) -> None:
    cloud = ScriptedCloud(lambda b: ack(b, alerts_through=2**62))  # a cloud that acknowledges too far
    async with uplink_running(tmp_path, cloud) as uplink:
        await uplink.store.append([], alerts=alerts(1200))
        await run_until(uplink, empty(uplink))
    assert [len(b["alerts"]) for b in cloud.batches] == [500, 500, 200]
    sent = [a for b in cloud.batches for a in alert_ids(b)]
    assert sent == [f"a-{n}" for n in range(1200)]


async def test_alerts_the_cloud_does_not_acknowledge_stay_queued_and_go_again(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="edge.uplink")
    cloud = ScriptedCloud(lambda b: ack(b, alerts_through=None))  # a cloud that does not know alerts yet
    async with uplink_running(tmp_path, cloud) as uplink:
        await uplink.store.append(frames(3), alerts=alerts(2))
        await run_until(uplink, lambda: len(cloud.batches) >= 3)
        assert uplink.store.alert_depth == 2 and uplink.store.depth == 0
    assert all(alert_ids(b) == ["a-0", "a-1"] for b in cloud.batches)
    told = [r.getMessage() for r in caplog.records if "did not acknowledge them" in r.getMessage()]
    assert len(told) == 1


async def test_an_alert_the_cloud_refuses_is_narrowed_down_and_alone_quarantined(tmp_path: Path) -> None:
    def handler(batch: dict[str, Any]) -> httpx.Response:
        if "a-5" in alert_ids(batch):
            return httpx.Response(422, json={"detail": [{"path": "alerts.5.alert.model", "message": "unknown"}]})
        return ack(batch)

    cloud = ScriptedCloud(handler)
    async with uplink_running(tmp_path, cloud, batch_max_frames=8) as uplink:
        await uplink.store.append(frames(12), alerts=alerts(12))
        await run_until(uplink, empty(uplink))
        [row] = await uplink.store.quarantined()
        snapshot = uplink.snapshot()
    assert row["origin"] == "cloud-alert:press-1" and "alerts.5.alert.model: unknown" in row["reason"]
    acked = [b for b in cloud.batches if "a-5" not in alert_ids(b)]
    delivered = [a for b in acked for a in alert_ids(b)]
    assert sorted(delivered) == sorted(f"a-{n}" for n in range(12) if n != 5)
    frames_delivered = [f["frame"]["sensors"]["n"] for b in acked for f in b["frames"]]
    assert sorted(frames_delivered) == list(range(12))  # the frames were never the problem: none quarantined
    assert snapshot["alerts_quarantined_by_cloud"] == 1 and snapshot["quarantined_by_cloud"] == 0


async def test_a_bad_frame_beside_alerts_is_quarantined_alone_and_every_alert_arrives(tmp_path: Path) -> None:
    def handler(batch: dict[str, Any]) -> httpx.Response:
        if any(f["frame"]["sensors"]["n"] == 5 for f in batch["frames"]):
            return httpx.Response(422, json={"detail": [{"path": "frames.5.seq", "message": "not increasing"}]})
        return ack(batch)

    cloud = ScriptedCloud(handler)
    async with uplink_running(tmp_path, cloud, batch_max_frames=8) as uplink:
        await uplink.store.append(frames(12), alerts=alerts(4))
        await run_until(uplink, empty(uplink))
        [row] = await uplink.store.quarantined()
    assert row["origin"] == "cloud:press-1" and "frames.5.seq" in row["reason"]
    acked = [b for b in cloud.batches if all(f["frame"]["sensors"]["n"] != 5 for f in b["frames"])]
    assert sorted(a for b in acked for a in alert_ids(b)) == ["a-0", "a-1", "a-2", "a-3"]
    assert sorted(f["frame"]["sensors"]["n"] for b in acked for f in b["frames"]) == [
        n for n in range(12) if n != 5]


async def test_random_cloud_trouble_never_loses_or_doubles_an_alert(tmp_path: Path) -> None:
    rng = random.Random(7)
    acked: list[str] = []

    def handler(batch: dict[str, Any]) -> httpx.Response:
        roll = rng.random()
        if roll < 0.2:
            return httpx.Response(503, headers={"Retry-After": "0"}, json={"detail": "busy"})
        sent = batch.get("alerts", [])
        if roll < 0.35 and len(sent) > 1:  # the cloud stored only the first half of the alerts
            half = sent[: len(sent) // 2]
            acked.extend(a["alert"]["alert_id"] for a in half)
            return ack(batch, alerts_through=half[-1]["seq"])
        acked.extend(a["alert"]["alert_id"] for a in sent)
        return ack(batch)

    def transport(request: httpx.Request) -> httpx.Response:
        if rng.random() < 0.1:
            raise httpx.ReadError("connection reset by peer", request=request)
        return cloud(request)

    cloud = ScriptedCloud(handler)
    async with uplink_running(tmp_path, cloud, batch_max_frames=7) as uplink:
        uplink.transport = httpx.MockTransport(transport)
        task = asyncio.create_task(uplink.run(), name="uplink")
        for start in range(0, 300, 30):  # alerts keep coming while batches are in flight
            await uplink.store.append(frames(30, start=start), alerts=alerts(3, start=start))
            await uplink.on_commit([])
            await asyncio.sleep(0.01)
        async with asyncio.timeout(10):
            while not empty(uplink)():
                await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert sorted(acked) == sorted(f"a-{s + i}" for s in range(0, 300, 30) for i in range(3))
