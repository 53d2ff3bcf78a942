"""The uplink against a scripted cloud at the HTTP transport seam: acks, refusals, retries, live-first.

The real cloud service is exercised end to end in tests/e2e; here each test
scripts exactly the answers it needs.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import msgpack
import pytest

from edge.config import StoreConfig, UplinkConfig
from edge.store import Store
from edge.uplink import Uplink
from shared.batch import EdgeHealth
from shared.frame import TelemetryFrame

T0 = 1_800_000_000.0
Handler = Callable[[dict[str, Any]], httpx.Response]


def frames(n: int, start: int = 0) -> list[TelemetryFrame]:
    return [TelemetryFrame(ts=T0 + start + i, device_id="press-1", sensors={"n": start + i}) for i in range(n)]


def ack(batch: dict[str, Any], rejected: list[dict[str, Any]] | None = None) -> httpx.Response:
    return httpx.Response(200, json={
        "acked_through": batch["frames"][-1]["seq"], "stored": len(batch["frames"]), "duplicates": 0,
        "rejected": rejected or [],
    })


class ScriptedCloud:
    """Decodes each batch like the cloud does and answers with the handler's response."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.batches: list[dict[str, Any]] = []
        self.headers: list[httpx.Headers] = []
        self.changed = asyncio.Event()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/v1/sync/batches"
        body = gzip.decompress(request.content)
        batch = msgpack.unpackb(body, raw=False)
        self.batches.append(batch)
        self.headers.append(request.headers)
        self.changed.set()
        return self.handler(batch)

    def seqs(self, index: int) -> list[int]:
        return [f["seq"] for f in self.batches[index]["frames"]]


async def no_health() -> EdgeHealth:
    return EdgeHealth(queue_depth=0)


@asynccontextmanager
async def uplink_running(tmp_path: Path, cloud: ScriptedCloud, **config: Any) -> AsyncIterator[Uplink]:
    store = Store(tmp_path / "q.db", StoreConfig())
    await store.open()
    settings = {"url": "http://cloud.test", "token": "edge-secret", "retry_initial": "10ms", "retry_max": "50ms",
                "interval": "0s", **config}
    uplink = Uplink(UplinkConfig.model_validate(settings), store, edge_id="edge-1", health=no_health,
                    transport=httpx.MockTransport(cloud))
    try:
        yield uplink
    finally:
        await store.close()


async def run_until(uplink: Uplink, done: Callable[[], bool]) -> None:
    task = asyncio.create_task(uplink.run(), name="uplink")
    try:
        async with asyncio.timeout(10):
            while not done():
                await asyncio.sleep(0.01)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_acknowledged_frames_leave_the_queue_and_the_batch_says_who_sent_it(tmp_path: Path) -> None:
    cloud = ScriptedCloud(ack)
    async with uplink_running(tmp_path, cloud) as uplink:
        await uplink.store.append(frames(5))
        await run_until(uplink, lambda: uplink.store.depth == 0)
        [batch] = cloud.batches
        assert batch["edge_id"] == "edge-1" and batch["health"]["queue_depth"] == 0
        assert [f["frame"]["sensors"]["n"] for f in batch["frames"]] == [0, 1, 2, 3, 4]
        assert cloud.headers[0]["authorization"] == "Bearer edge-secret"
        assert cloud.headers[0]["content-encoding"] == "gzip"
        assert uplink.snapshot()["frames_sent"] == 5


async def test_batches_are_cut_by_count(tmp_path: Path) -> None:
    cloud = ScriptedCloud(ack)
    async with uplink_running(tmp_path, cloud, batch_max_frames=2) as uplink:
        await uplink.store.append(frames(5))
        await run_until(uplink, lambda: uplink.store.depth == 0)
        assert [len(b["frames"]) for b in cloud.batches] == [2, 2, 1]


async def test_frames_the_cloud_refuses_go_to_quarantine_with_its_reason(tmp_path: Path) -> None:
    def refuse_second(batch: dict[str, Any]) -> httpx.Response:
        return ack(batch, [{"seq": batch["frames"][1]["seq"], "reason": "sensors.n: must be finite"}])

    cloud = ScriptedCloud(refuse_second)
    async with uplink_running(tmp_path, cloud) as uplink:
        await uplink.store.append(frames(3))
        await run_until(uplink, lambda: uplink.store.depth == 0)
        [row] = await uplink.store.quarantined()
        assert row["origin"] == "cloud:press-1" and row["reason"] == "sensors.n: must be finite"


async def test_a_refused_batch_is_narrowed_down_to_the_bad_frame_which_alone_is_quarantined(
    tmp_path: Path,
) -> None:
    def handler(batch: dict[str, Any]) -> httpx.Response:
        if any(f["frame"]["sensors"]["n"] == 5 for f in batch["frames"]):
            return httpx.Response(422, json={"detail": [{"path": "frames.5.seq", "message": "not increasing"}]})
        return ack(batch)

    cloud = ScriptedCloud(handler)
    async with uplink_running(tmp_path, cloud, batch_max_frames=8) as uplink:
        await uplink.store.append(frames(12))
        await run_until(uplink, lambda: uplink.store.depth == 0)
        [row] = await uplink.store.quarantined()
        assert "HTTP 422: frames.5.seq: not increasing" in row["reason"]
    acked_batches = [b for b in cloud.batches if all(f["frame"]["sensors"]["n"] != 5 for f in b["frames"])]
    delivered = {f["frame"]["sensors"]["n"] for b in acked_batches for f in b["frames"]}
    assert delivered == set(range(12)) - {5}


async def test_overload_is_retried_after_the_servers_retry_after(tmp_path: Path) -> None:
    seen_retry_in: list[float | None] = []
    answers = iter([httpx.Response(503, headers={"Retry-After": "0.05"},
                                   json={"detail": [{"path": "", "message": "the database is busy"}]})])
    holder: dict[str, Uplink] = {}

    def handler(batch: dict[str, Any]) -> httpx.Response:
        answer = next(answers, None)
        if answer is None:
            seen_retry_in.append(holder["uplink"].snapshot()["retry_in"])
            return ack(batch)
        return answer

    cloud = ScriptedCloud(handler)
    async with uplink_running(tmp_path, cloud) as uplink:
        holder["uplink"] = uplink
        await uplink.store.append(frames(3))
        await run_until(uplink, lambda: uplink.store.depth == 0)
    assert seen_retry_in == [0.05]
    assert cloud.seqs(0) == cloud.seqs(1)  # the same batch, sent again
    assert cloud.batches[0]["sent_at"] == cloud.batches[1]["sent_at"]  # packed once, but each attempt says when
    attempts = [float(h["x-twinedge-sent-at"]) for h in cloud.headers]
    assert attempts[1] > attempts[0] and attempts[1] > cloud.batches[0]["sent_at"]  # 0.05 s apart at least
    assert uplink.snapshot()["last_error"] == "HTTP 503: the database is busy"


@pytest.mark.parametrize(("status", "message"), [
    (408, "the body did not arrive within 10 s (server.body_timeout)"),
    (409, "a newer batch of edge edge-1 arrived while this one was still arriving"),
    (429, "busy"), (503, "busy")])
async def test_a_timed_out_or_superseded_upload_is_sent_again_not_set_aside(
        tmp_path: Path, status: int, message: str) -> None:
    answers = iter([httpx.Response(status, json={"detail": [{"path": "body", "message": message}]})])

    def handler(batch: dict[str, Any]) -> httpx.Response:
        return next(answers, None) or ack(batch)

    cloud = ScriptedCloud(handler)
    async with uplink_running(tmp_path, cloud) as uplink:
        await uplink.store.append(frames(3))
        await run_until(uplink, lambda: uplink.store.depth == 0)
        quarantined = await uplink.store.quarantined()
    assert len(cloud.batches) == 2 and cloud.seqs(0) == cloud.seqs(1)  # the same batch, sent again whole
    assert uplink.snapshot()["quarantined_by_cloud"] == 0 and not quarantined
    assert uplink.snapshot()["frames_sent"] == 3


async def test_connection_errors_are_retried_without_losing_anything(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    calls = {"n": 0}

    def flaky(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] <= 6:
            raise httpx.ConnectError("connection refused", request=request)
        return ScriptedCloud(ack)(request)

    caplog.set_level(logging.WARNING, logger="edge.uplink")
    async with uplink_running(tmp_path, ScriptedCloud(ack)) as uplink:
        uplink.transport = httpx.MockTransport(flaky)
        await uplink.store.append(frames(3))
        await run_until(uplink, lambda: uplink.store.depth == 0)
    assert calls["n"] == 7
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith("cannot sync with the cloud")  # one line per outage


async def test_a_batch_too_large_is_halved(tmp_path: Path) -> None:
    def handler(batch: dict[str, Any]) -> httpx.Response:
        if len(batch["frames"]) > 2:
            return httpx.Response(413, json={"detail": [{"path": "frames", "message": "too many"}]})
        return ack(batch)

    cloud = ScriptedCloud(handler)
    async with uplink_running(tmp_path, cloud, batch_max_frames=8) as uplink:
        await uplink.store.append(frames(8))
        await run_until(uplink, lambda: uplink.store.depth == 0)
        assert await uplink.store.quarantined() == []
    assert [len(b["frames"]) for b in cloud.batches][:3] == [8, 4, 2]


async def test_a_refused_token_is_reported_and_nothing_is_deleted(tmp_path: Path) -> None:
    cloud = ScriptedCloud(lambda _b: httpx.Response(401, json={"detail": "unknown token"}))
    async with uplink_running(tmp_path, cloud, retry_max="10ms") as uplink:
        await uplink.store.append(frames(3))
        await run_until(uplink, lambda: len(cloud.batches) >= 3)
        snap = uplink.snapshot()
        assert uplink.store.depth == 3 and await uplink.store.quarantined() == []
    assert snap["state"] == "refused_auth"
    assert "refused this edge's token" in snap["last_error"]


async def test_after_an_outage_new_data_goes_before_the_backlog(tmp_path: Path) -> None:
    holder: dict[str, Uplink] = {}

    def handler(batch: dict[str, Any]) -> httpx.Response:
        if len(cloud.batches) == 1:  # while the first backlog batch is in flight, new data arrives
            holder["pending"] = True
        return ack(batch)

    cloud = ScriptedCloud(handler)
    async with uplink_running(tmp_path, cloud, batch_max_frames=10) as uplink:
        holder["uplink"] = uplink
        await uplink.store.append(frames(50))  # a backlog: more than 2 batches
        backlog_end = await uplink.store.newest_seq()
        task = asyncio.create_task(uplink.run(), name="uplink")
        async with asyncio.timeout(10):
            while "pending" not in holder:
                await cloud.changed.wait()
                cloud.changed.clear()
        await uplink.store.append(frames(3, start=1000))
        await uplink.on_commit([])
        while uplink.store.depth:
            await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert backlog_end is not None
    first_live = next(i for i, b in enumerate(cloud.batches) if b["frames"][0]["seq"] > backlog_end)
    assert first_live < len(cloud.batches) - 1  # live data went before the rest of the backlog
    sent = [s for i in range(len(cloud.batches)) for s in cloud.seqs(i)]
    assert len(sent) == len(set(sent)) == 53


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"url": "not a url", "token": "x"}, "url"),
        ({"url": "http://c.test"}, "set exactly one of token_file or token"),
        ({"url": "http://c.test", "token": "x", "token_file": "/t"}, "set exactly one"),
        ({"url": "http://c.test", "token": "x", "batch_max_frames": 0}, "batch_max_frames"),
    ],
)
def test_bad_uplink_settings_are_refused(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        UplinkConfig.model_validate(settings)


def test_the_token_never_shows_in_the_config_dump() -> None:
    config = UplinkConfig.model_validate({"url": "http://c.test", "token": "edge-secret"})
    assert "edge-secret" not in json.dumps(config.model_dump(mode="json"))


async def test_random_cloud_trouble_never_loses_or_skips_a_frame(tmp_path: Path) -> None:
    """Retries, partial acks and dropped connections, with the next batch read ahead: every frame acked once."""
    import random

    rng = random.Random(5)
    acked: list[int] = []

    def handler(batch: dict[str, Any]) -> httpx.Response:
        seqs = [f["seq"] for f in batch["frames"]]
        roll = rng.random()
        if roll < 0.15:
            return httpx.Response(503, headers={"Retry-After": "0"}, json={"detail": "busy"})
        if roll < 0.3 and len(seqs) > 1:
            through = seqs[len(seqs) // 2 - 1]  # the cloud stored only the first half
            acked.extend(s for s in seqs if s <= through)
            return httpx.Response(200, json={"acked_through": through, "stored": len(seqs) // 2,
                                             "duplicates": 0, "rejected": []})
        acked.extend(seqs)
        return ack(batch)

    def transport(request: httpx.Request) -> httpx.Response:
        if rng.random() < 0.1:
            raise httpx.ReadError("connection reset by peer", request=request)
        return cloud(request)

    cloud = ScriptedCloud(handler)
    async with uplink_running(tmp_path, cloud, batch_max_frames=7) as uplink:
        uplink.transport = httpx.MockTransport(transport)
        for start in range(0, 300, 60):
            await uplink.store.append(frames(60, start=start))
        expected = [r.seq for r in await uplink.store.read(limit=1000)]
        await run_until(uplink, lambda: uplink.store.depth == 0)
    # Acks the edge acted on cover every frame; a frame acked twice would mean a batch overlapped
    # an earlier acknowledged one (the read-ahead must never send rows it has not yet seen deleted).
    assert sorted(set(acked)) == expected
    assert len(acked) == len(set(acked))
