"""Edge events on the uplink, against a scripted cloud at the HTTP transport seam: behind the alerts and ahead of
backlog frames, alone when no frame waits, marked synced only through ``events_acked_through``, one the cloud
refuses narrowed down and quarantined alone, and none lost through cloud trouble."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import httpx

from edge.eventqueue import EventFilter
from shared.batch import EdgeEvent
from tests.edge.uplink.test_link import run_until, uplink_running
from tests.edge.uplink.test_link_alerts import T0, ScriptedCloud, alert_ids, alerts, frames


def events(n: int, start: int = 0) -> list[EdgeEvent]:
    return [EdgeEvent(ts=T0 + start + i, level="operator", kind="source_lost", edge="edge-1", source="plc-1",
                      message=f"plc-1 stopped answering ({start + i})") for i in range(n)]


def ack(batch: dict[str, Any], *, events_through: int | None | str = "all") -> httpx.Response:
    sent_alerts, sent_events = batch.get("alerts", []), batch.get("events", [])
    if events_through == "all":
        events_through = sent_events[-1]["seq"] if sent_events else None
    return httpx.Response(200, json={
        "acked_through": batch["frames"][-1]["seq"] if batch["frames"] else None, "stored": len(batch["frames"]),
        "duplicates": 0, "rejected": [], "alerts_acked_through": sent_alerts[-1]["seq"] if sent_alerts else None,
        "events_acked_through": events_through,
    })


def event_numbers(batch: dict[str, Any]) -> list[int]:
    return [int(e["event"]["message"].rsplit("(", 1)[1].rstrip(")")) for e in batch.get("events", [])]


async def test_events_go_behind_the_alerts_ahead_of_a_backlog_and_are_kept_synced(tmp_path: Path) -> None:
    cloud = ScriptedCloud(ack)
    async with uplink_running(tmp_path, cloud, batch_max_frames=10) as uplink:
        store = uplink.store
        await store.append(frames(50))
        await store.append(frames(1, start=50), alerts=alerts(2))
        await store.append_events(events(3))
        await run_until(uplink, lambda: store.depth == 0 and store.event_depth == 0 and store.alert_depth == 0)
        kept = await store.recent_events(EventFilter())
        snapshot = uplink.snapshot()
    first = cloud.batches[0]
    assert alert_ids(first) == ["a-0", "a-1"] and event_numbers(first) == [0, 1, 2]
    assert list(first).index("alerts") < list(first).index("events") < list(first).index("frames")
    assert [f["frame"]["sensors"]["n"] for f in first["frames"]] == list(range(10))  # the backlog comes after
    assert all("events" not in b for b in cloud.batches[1:])
    assert [e.synced for e in kept] == [True, True, True]  # still shown by `twinedge events`
    assert snapshot["events_sent"] == 3


async def test_events_without_frames_go_alone_and_share_the_alerts_limit(tmp_path: Path) -> None:
    cloud = ScriptedCloud(ack)
    async with uplink_running(tmp_path, cloud) as uplink:
        await uplink.store.append([], alerts=alerts(300))
        await uplink.store.append_events(events(400))
        await run_until(uplink, lambda: uplink.store.event_depth == 0 and uplink.store.alert_depth == 0)
    assert [(len(b.get("alerts", [])), len(b.get("events", []))) for b in cloud.batches] == [(300, 200), (0, 200)]
    assert [n for b in cloud.batches for n in event_numbers(b)] == list(range(400))


async def test_events_an_older_cloud_does_not_acknowledge_stay_and_go_again(tmp_path: Path) -> None:
    cloud = ScriptedCloud(lambda b: ack(b, events_through=None))
    async with uplink_running(tmp_path, cloud) as uplink:
        await uplink.store.append(frames(3))
        await uplink.store.append_events(events(2))
        await run_until(uplink, lambda: len(cloud.batches) >= 3)
        assert uplink.store.event_depth == 2 and uplink.store.depth == 0
    assert all(event_numbers(b) == [0, 1] for b in cloud.batches)


async def test_an_event_the_cloud_refuses_is_narrowed_down_and_alone_quarantined(tmp_path: Path) -> None:
    def handler(batch: dict[str, Any]) -> httpx.Response:
        if 5 in event_numbers(batch):
            return httpx.Response(422, json={"detail": [{"path": "events.5.event.kind", "message": "bad"}]})
        return ack(batch)

    cloud = ScriptedCloud(handler)
    async with uplink_running(tmp_path, cloud, batch_max_frames=8) as uplink:
        await uplink.store.append(frames(12))
        await uplink.store.append_events(events(12))
        await run_until(uplink, lambda: uplink.store.depth == 0 and uplink.store.event_depth == 0)
        [row] = await uplink.store.quarantined()
    assert row["origin"] == "cloud-event" and "events.5.event.kind: bad" in row["reason"]
    acked = [b for b in cloud.batches if 5 not in event_numbers(b)]
    assert sorted(n for b in acked for n in event_numbers(b)) == [n for n in range(12) if n != 5]
    assert sorted(f["frame"]["sensors"]["n"] for b in acked for f in b["frames"]) == list(range(12))


async def test_a_cloud_outage_and_lost_answers_lose_no_event(tmp_path: Path) -> None:
    rng = random.Random(3)
    stored: list[int] = []
    down = True

    def handler(batch: dict[str, Any]) -> httpx.Response:
        if down or rng.random() < 0.2:
            return httpx.Response(503, headers={"Retry-After": "0"}, json={"detail": "down"})
        stored.extend(event_numbers(batch))
        return ack(batch)

    def transport(request: httpx.Request) -> httpx.Response:
        answer = cloud(request)
        if answer.status_code == 200 and rng.random() < 0.2:  # stored, but the answer never arrives
            raise httpx.ReadError("connection reset by peer", request=request)
        return answer

    cloud = ScriptedCloud(handler)
    async with uplink_running(tmp_path, cloud, batch_max_frames=7) as uplink:
        uplink.transport = httpx.MockTransport(transport)
        task = asyncio.create_task(uplink.run(), name="uplink")
        for start in range(0, 200, 20):
            await uplink.store.append(frames(20, start=start))
            await uplink.store.append_events(events(2, start=start))
            await uplink.on_commit([])
            await asyncio.sleep(0.01)
            if start == 100:
                down = False
        async with asyncio.timeout(10):
            while uplink.store.event_depth or uplink.store.depth:
                await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert set(stored) == {s + i for s in range(0, 200, 20) for i in range(2)}  # each at least once; the cloud dedups
