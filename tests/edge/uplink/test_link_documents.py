"""Documents on the uplink, against a scripted cloud at the HTTP transport seam: behind the events and ahead of a
backlog, bounded by count and bytes, deleted only through ``documents_acked_through``; a cloud older than the edge
(422 on the ``documents`` field) never costs the frames their delivery and loses no document; any other refusal is
narrowed down to the one document, which alone goes to the quarantine."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.batch import Document
from tests.edge.uplink.test_link import run_until, uplink_running
from tests.edge.uplink.test_link_alerts import T0, ScriptedCloud, frames
from tests.edge.uplink.test_link_events import event_numbers, events


def documents(n: int, start: int = 0, size: int = 0) -> list[Document]:
    return [Document(ts=T0 + start + i, kind="program", key=f"p-{start + i}", device="mill-1", source="programs",
                     body={"n": start + i, "pad": "x" * size}) for i in range(n)]


def numbers(batch: dict[str, Any]) -> list[int]:
    return [d["document"]["body"]["n"] for d in batch.get("documents", [])]


def ack(batch: dict[str, Any], *, documents_through: int | None | str = "all") -> httpx.Response:
    sent = batch.get("documents", [])
    if documents_through == "all":
        documents_through = sent[-1]["seq"] if sent else None
    return httpx.Response(200, json={
        "acked_through": batch["frames"][-1]["seq"] if batch["frames"] else None, "stored": len(batch["frames"]),
        "duplicates": 0, "rejected": [], "alerts_acked_through": None,
        "events_acked_through": batch["events"][-1]["seq"] if batch.get("events") else None,
        "documents_acked_through": documents_through})


def delivered(cloud: ScriptedCloud, acked: set[int] | None = None) -> list[int]:
    return sorted(f["frame"]["sensors"]["n"] for k, b in enumerate(cloud.batches) if acked is None or k in acked
                  for f in b["frames"])


async def test_documents_go_behind_the_events_ahead_of_a_backlog_and_leave_on_the_ack(tmp_path: Path) -> None:
    cloud = ScriptedCloud(ack)
    async with uplink_running(tmp_path, cloud, batch_max_frames=10) as uplink:
        store = uplink.store
        await store.append(frames(50))
        await store.append([], documents=documents(3))
        await store.append_events(events(1))
        await run_until(uplink, lambda: store.depth == 0 and store.document_depth == 0 and store.event_depth == 0)
        snapshot = uplink.snapshot()
    first = cloud.batches[0]
    assert event_numbers(first) == [0] and numbers(first) == [0, 1, 2]
    assert list(first).index("events") < list(first).index("documents") < list(first).index("frames")
    assert [f["frame"]["sensors"]["n"] for f in first["frames"]] == list(range(10))
    assert all("documents" not in b for b in cloud.batches[1:])
    assert delivered(cloud) == list(range(50)) and snapshot["documents_sent"] == 3


async def test_documents_are_bounded_by_count_and_by_bytes(tmp_path: Path) -> None:
    cloud = ScriptedCloud(ack)
    async with uplink_running(tmp_path, cloud, documents_max=4, documents_max_bytes="400KiB") as uplink:
        await uplink.store.append([], documents=documents(10))
        await run_until(uplink, lambda: uplink.store.document_depth == 0)
        await uplink.store.append([], documents=documents(3, start=10, size=250_000))
        await run_until(uplink, lambda: uplink.store.document_depth == 0)
    assert [numbers(b) for b in cloud.batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9], [10], [11], [12]]


async def test_a_cloud_older_than_the_edge_gets_every_frame_and_the_documents_wait(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    def older(batch: dict[str, Any]) -> httpx.Response:
        if "documents" in batch:  # what a cloud before documents answers (its SyncBatch forbids unknown keys)
            return httpx.Response(422, json={"detail": [{"path": "documents", "message": "unknown key"}]})
        return ack(batch)

    cloud = ScriptedCloud(older)
    with caplog.at_level(logging.WARNING, logger="edge.uplink.link"):
        async with uplink_running(tmp_path, cloud, batch_max_frames=10) as uplink:
            await uplink.store.append([], documents=documents(5))
            await uplink.store.append(frames(35))
            await run_until(uplink, lambda: uplink.store.depth == 0)
            await uplink.store.append(frames(5, start=35))  # live data later: still no document offered again
            await run_until(uplink, lambda: uplink.store.depth == 0)
            assert uplink.store.document_depth == 5
            assert await uplink.store.quarantined() == []
    refused = [k for k, b in enumerate(cloud.batches) if "documents" in b]
    assert len(refused) == 1  # asked once; again only after DOCUMENTS_HOLD_S
    assert delivered(cloud, set(range(len(cloud.batches))) - set(refused)) == list(range(40))
    assert sum("does not take documents" in r.message for r in caplog.records) == 1


async def test_a_document_the_cloud_refuses_is_narrowed_down_and_alone_quarantined(tmp_path: Path) -> None:
    def handler(batch: dict[str, Any]) -> httpx.Response:
        if 5 in numbers(batch):
            return httpx.Response(422, json={"detail": [{"path": "documents.3.document.body", "message": "bad"}]})
        return ack(batch)

    cloud = ScriptedCloud(handler)
    async with uplink_running(tmp_path, cloud, batch_max_frames=8, documents_max=8) as uplink:
        await uplink.store.append(frames(12))
        await uplink.store.append([], documents=documents(8))
        await run_until(uplink, lambda: uplink.store.depth == 0 and uplink.store.document_depth == 0)
        [row] = await uplink.store.quarantined()
        snapshot = uplink.snapshot()
    assert row["origin"] == "cloud-document" and "documents.3.document.body: bad" in row["reason"]
    acked = {k for k, b in enumerate(cloud.batches) if 5 not in numbers(b)}
    assert sorted(n for k in acked for n in numbers(cloud.batches[k])) == [n for n in range(8) if n != 5]
    assert delivered(cloud, acked) == list(range(12))
    assert snapshot["documents_quarantined_by_cloud"] == 1 and snapshot["quarantined_by_cloud"] == 0


async def test_documents_a_cloud_takes_without_acknowledging_stay_and_go_again(tmp_path: Path) -> None:
    cloud = ScriptedCloud(lambda b: ack(b, documents_through=None))
    async with uplink_running(tmp_path, cloud) as uplink:
        await uplink.store.append(frames(3))
        await uplink.store.append([], documents=documents(2))
        await run_until(uplink, lambda: len(cloud.batches) >= 3)
        assert uplink.store.document_depth == 2 and uplink.store.depth == 0
    assert all(numbers(b) == [0, 1] for b in cloud.batches)
