"""POST /api/v1/sync/batches: stored once, what is acked, bad frames, limits, overload, encodings."""

from __future__ import annotations

import asyncio
import gzip
import json
import sqlite3
from collections.abc import AsyncIterator

import zstandard

from shared.codec import encode_obj
from tests.cloud.apiclient import Api, auth, batch, make_api, wire

URL = "/api/v1/sync/batches"


async def test_a_batch_is_stored_and_acked_through_its_last_sequence(api: Api) -> None:
    resp = await api.sync(batch("edge-1", [(5, wire(1)), (9, wire(2)), (40, wire(3))], queue_depth=7))
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"acked_through": 40, "stored": 3, "duplicates": 0, "rejected": [],
                           "alerts_acked_through": None, "events_acked_through": None, "documents_acked_through": None}
    state = (await api.client.get("/api/v1/twin/press-1/state", headers=auth(api.viewer))).json()
    assert state["values"]["temp"]["value"] == 23.0 and state["edge"] == "edge-1"


async def test_a_retried_batch_stores_nothing_twice(api: Api) -> None:
    body = batch("edge-1", [(1, wire(1)), (2, wire(2))])
    assert (await api.sync(body)).json()["stored"] == 2
    again = (await api.sync(body)).json()
    assert again == {"acked_through": 2, "stored": 0, "duplicates": 2, "rejected": [], "alerts_acked_through": None,
                     "events_acked_through": None, "documents_acked_through": None}
    redelivered = (await api.sync(batch("edge-1", [(3, wire(2)), (4, wire(3))]))).json()
    assert (redelivered["stored"], redelivered["duplicates"], redelivered["acked_through"]) == (1, 1, 4)


async def test_bad_frames_are_refused_one_by_one_and_the_good_ones_stored(api: Api) -> None:
    frames = [(1, wire(1)), (2, {"ts": "yesterday", "device_id": "press-1"}), (3, wire(3)),
              (4, {"device_id": "bad id!", "ts": 1.8e9}), (5, [1, 2])]
    ack = (await api.sync(batch("edge-1", frames))).json()
    assert ack["acked_through"] == 5 and ack["stored"] == 2
    reasons = {r["seq"]: r["reason"] for r in ack["rejected"]}
    assert set(reasons) == {2, 4, 5}
    assert "ts" in reasons[2] and "device_id" in reasons[4] and "expected a frame" in reasons[5]
    edges = (await api.client.get("/api/v1/edges", headers=auth(api.viewer))).json()
    assert edges[0]["rejected"] == 3


async def test_a_health_only_batch_updates_the_edge_and_acks_nothing(api: Api) -> None:
    ack = (await api.sync(batch("edge-1", [], queue_depth=12))).json()
    assert ack == {"acked_through": None, "stored": 0, "duplicates": 0, "rejected": [], "alerts_acked_through": None,
                     "events_acked_through": None, "documents_acked_through": None}
    [edge1, _] = (await api.client.get("/api/v1/edges", headers=auth(api.viewer))).json()
    assert (edge1["queue_depth"], edge1["lag_s"], edge1["drops"]) == (12, 0.5, {"disk_budget": 1})
    assert edge1["last_seen"] is not None


async def test_encodings_json_gzip_and_zstd_are_accepted(api: Api) -> None:
    plain = json.dumps(batch("edge-1", [(1, wire(1))])).encode()
    resp = await api.client.post(URL, content=gzip.compress(plain), headers={
        **auth(api.edge), "Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert resp.json()["stored"] == 1
    members = json.dumps(batch("edge-1", [(3, wire(3)), (4, wire(4))])).encode()  # gzip a b > c: two members
    resp = await api.client.post(URL, content=gzip.compress(members[:40]) + gzip.compress(members[40:]), headers={
        **auth(api.edge), "Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert resp.json()["stored"] == 2
    resp = await api.client.post(URL, content=gzip.compress(plain) + b"\0" * 8, headers={
        **auth(api.edge), "Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert resp.status_code == 400 and "not valid gzip" in resp.text  # trailing bytes are no member
    packed = zstandard.ZstdCompressor().compress(encode_obj(batch("edge-1", [(2, wire(2))])))
    resp = await api.client.post(
        URL, content=packed, headers={**auth(api.edge), "Content-Type": "application/msgpack",
                                      "Content-Encoding": "zstd"})
    assert resp.json()["stored"] == 1


async def test_a_batch_naming_another_edge_is_forbidden(api: Api) -> None:
    resp = await api.sync(batch("edge-2", [(1, wire(1))]))
    assert resp.status_code == 403 and "edge-1" in resp.text
    assert (await api.sync(batch("edge-2", [(1, wire(1))]), token=api.other_edge)).status_code == 200


async def test_unreadable_bodies_are_400_and_wrong_types_415(api: Api) -> None:
    headers = {**auth(api.edge), "Content-Type": "application/msgpack"}
    cases = [
        (b"\xc1\xc1\xc1", {}, 400),
        (b"{not json", {"Content-Type": "application/json"}, 400),
        (gzip.compress(b"x" * 100)[:20], {"Content-Encoding": "gzip"}, 400),
        (b"not zstd at all", {"Content-Encoding": "zstd"}, 400),
        (b"{}", {"Content-Encoding": "br"}, 415),
        (b"{}", {"Content-Type": "text/plain"}, 415),
        (b"", {}, 400),
    ]
    for body, extra, status in cases:
        resp = await api.client.post(URL, content=body, headers={**headers, **extra})
        assert resp.status_code == status, (body[:10], extra, resp.text)
        assert resp.json()["detail"][0]["message"]


async def test_a_body_that_is_not_a_batch_is_422_with_the_path(api: Api) -> None:
    body = batch("edge-1", [(1, wire(1))])
    del body["health"]
    resp = await api.sync(body)
    assert resp.status_code == 422 and resp.json()["detail"][0]["path"] == "health"
    resp = await api.sync(batch("edge-1", [(5, wire(1)), (5, wire(2))]))
    assert resp.status_code == 422 and "increase" in resp.text


async def test_size_limits_answer_413_before_and_after_decompression(tmp_path) -> None:
    async with make_api(tmp_path, sync={"max_body_bytes": "64kB", "max_decoded_bytes": "256kB",
                                        "max_frames": 100}) as api:
        big = encode_obj(batch("edge-1", [(i + 1, wire(i, pad="x" * 200)) for i in range(99)]))
        assert len(big) > 4096
        resp = await api.client.post(URL, content=b"\x00" * 70_000, headers=auth(api.edge))
        assert resp.status_code == 413
        bomb = gzip.compress(b" " * 5_000_000)  # 5 MB of blanks in ~5 kB
        resp = await api.client.post(URL, content=bomb, headers={**auth(api.edge), "Content-Encoding": "gzip"})
        assert resp.status_code == 413 and "decompresses" in resp.text
        zbomb = zstandard.ZstdCompressor().compress(b" " * 5_000_000)
        resp = await api.client.post(URL, content=zbomb, headers={**auth(api.edge), "Content-Encoding": "zstd"})
        assert resp.status_code == 413
        resp = await api.sync(batch("edge-1", [(i + 1, wire(i)) for i in range(101)]))
        assert resp.status_code == 413 and "101 frames" in resp.text


class _SlowBody:
    """A request body that waits for a signal: keeps a sync request in flight on purpose."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        self.started.set()
        await self.release.wait()
        yield self.data


async def test_a_newer_batch_of_the_same_edge_supersedes_one_still_arriving(api: Api) -> None:
    slow = _SlowBody(encode_obj(batch("edge-1", [(1, wire(1))])))
    first = asyncio.create_task(api.client.post(URL, content=slow, headers=auth(api.edge)), name="slow-sync")
    async with asyncio.timeout(5):
        await slow.started.wait()
    resp = await api.sync(batch("edge-1", [(2, wire(2))]))
    assert resp.json() == {"acked_through": 2, "stored": 1, "duplicates": 0, "rejected": [],
                           "alerts_acked_through": None, "events_acked_through": None, "documents_acked_through": None}
    old = await first
    assert old.status_code == 409 and "newer batch" in old.json()["detail"][0]["message"]
    slow.release.set()
    history = (await api.client.get("/api/v1/twin/history", params={"device": "press-1"},
                                    headers=auth(api.viewer))).json()
    assert [p[0] for p in history["series"][0]["points"]] == [wire(2)["ts"]]  # nothing of the old one


async def test_batches_stored_at_once_are_bounded_but_one_still_arriving_takes_no_slot(tmp_path) -> None:
    async with make_api(tmp_path, sync={"max_concurrent": 1, "retry_after": "7s"},
                        database={"busy_timeout": "30s"}) as api:
        slow = _SlowBody(encode_obj(batch("edge-1", [(1, wire(1))])))
        arriving = asyncio.create_task(api.client.post(URL, content=slow, headers=auth(api.edge)),
                                       name="slow-sync")
        async with asyncio.timeout(5):
            await slow.started.wait()
        other = await api.sync(batch("edge-2", [(1, wire(2, device="d2"))]), token=api.other_edge)
        assert other.status_code == 200  # the batch still arriving holds none of the process's slots
        blocker = sqlite3.connect(tmp_path / "api.db", isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # the next batch then waits for the database, holding the one slot
        storing = asyncio.create_task(api.sync(batch("edge-2", [(2, wire(3, device="d2"))]), token=api.other_edge),
                                      name="storing-sync")
        async with asyncio.timeout(5):
            while api.ctx.sync_slots.locked() is False:
                await asyncio.sleep(0.01)
        busy = await api.sync(batch("edge-2", [(3, wire(4, device="d2"))]), token=api.other_edge)
        blocker.execute("ROLLBACK")
        blocker.close()
        assert busy.status_code == 503 and busy.headers["Retry-After"] == "7"
        assert (await storing).json()["stored"] == 1
        slow.release.set()
        assert (await arriving).json()["stored"] == 1


async def test_a_locked_database_is_503_with_retry_after_and_nothing_half_stored(tmp_path) -> None:
    async with make_api(tmp_path, database={"busy_timeout": "100ms"}) as api:
        blocker = sqlite3.connect(tmp_path / "api.db", isolation_level=None)
        try:
            blocker.execute("BEGIN IMMEDIATE")  # another writer holds the lock
            resp = await api.sync(batch("edge-1", [(1, wire(1))]))
            assert resp.status_code == 503 and "Retry-After" in resp.headers
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        ack = (await api.sync(batch("edge-1", [(1, wire(1))]))).json()
        assert (ack["stored"], ack["duplicates"]) == (1, 0)


async def test_the_edge_record_shows_the_last_sequence_even_when_it_was_refused(api: Api) -> None:
    await api.sync(batch("edge-1", [(1, wire(1)), (9, {"ts": 0, "device_id": "press-1"})]))
    [edge1, _] = (await api.client.get("/api/v1/edges", headers=auth(api.viewer))).json()
    assert (edge1["last_seq"], edge1["frames_stored"], edge1["rejected"]) == (9, 1, 1)


async def test_metrics_count_what_was_stored_and_show_each_edges_report(api: Api) -> None:
    await api.sync(batch("edge-1", [(1, wire(1)), (2, wire(2)), (3, {"ts": -5})], queue_depth=7))
    await api.sync(batch("edge-1", [(1, wire(1))], queue_depth=6))
    await api.client.get("/api/v1/twin/press-1/state", headers=auth(api.viewer))
    text = (await api.client.get("/metrics", headers=auth(api.viewer))).text
    assert 'twincloud_sync_frames_total{edge="edge-1",replica="api-1",result="stored"} 2.0' in text
    assert 'twincloud_sync_frames_total{edge="edge-1",replica="api-1",result="duplicate"} 1.0' in text
    assert 'twincloud_sync_frames_total{edge="edge-1",replica="api-1",result="rejected"} 1.0' in text
    assert 'twincloud_samples_stored_total{replica="api-1"} 6.0' in text
    # The fleet's counts, from the database: the same whichever replica answers, so no replica label.
    assert 'twincloud_edge_frames_stored_total{edge="edge-1"} 2.0' in text
    assert 'twincloud_edge_frames_duplicate_total{edge="edge-1"} 1.0' in text
    assert 'twincloud_edge_frames_rejected_total{edge="edge-1"} 1.0' in text
    assert 'twincloud_edge_queue_depth{edge="edge-1"} 6.0' in text
    assert 'twincloud_edge_dropped_frames{edge="edge-1",reason="disk_budget"} 1.0' in text
    assert 'route="/api/v1/twin/{device_id}/state"' in text and "press-1/state" not in text


async def test_frame_entries_are_judged_like_sequenced_frames(api: Api) -> None:
    """Entries that are not plainly {seq: int, frame: ...} get exactly SyncBatch's answer."""
    body = batch("edge-1", [(1, wire(1)), (2, wire(2))])
    body["frames"][1]["seq"] = 2.0  # a whole float passes as an integer, as pydantic has it
    ack = (await api.sync(body)).json()
    assert (ack["acked_through"], ack["stored"]) == (2, 2)
    cases = [
        (lambda b: b["frames"][0].update(note="x"), "frames[0].note", "unknown key"),
        (lambda b: b["frames"][1].pop("frame"), "frames[1].frame", "required key is missing"),
        (lambda b: b["frames"][0].update(seq=0), "frames[0].seq", "greater than or equal to 1"),
        (lambda b: b["frames"][1].update(seq=2**63), "frames[1].seq", "less than or equal to"),
        (lambda b: b["frames"].insert(0, [3, {}]), "frames[0]", "valid dictionary"),
        (lambda b: b.update(frames={"seq": 1}), "frames", "valid list"),
    ]
    for change, path, message in cases:
        body = batch("edge-1", [(3, wire(3)), (4, wire(4))])
        change(body)
        resp = await api.sync(body)
        assert resp.status_code == 422, (path, resp.text)
        assert [(p["path"], message in p["message"]) for p in resp.json()["detail"]] == [(path, True)]
    state = (await api.client.get("/api/v1/twin/press-1/state", headers=auth(api.viewer))).json()
    assert state["values"]["temp"]["value"] == 22.0  # nothing of the refused batches was stored


async def test_a_large_batch_refuses_only_its_bad_frames(api: Api) -> None:
    frames = [(k + 1, wire(k, device=f"press-{k % 7}")) for k in range(3000)]  # decoded in the parser thread
    frames[1234] = (1235, {**wire(1234), "ts": "soon"})
    frames[2000] = (2001, {**wire(2000), "sensors": {"temp": float("nan")}})
    ack = (await api.sync(batch("edge-1", frames))).json()
    assert (ack["acked_through"], ack["stored"], ack["duplicates"]) == (3000, 2998, 0)
    assert [(r["seq"], r["reason"].split(":")[0]) for r in ack["rejected"]] == [(1235, "ts"), (2001, "sensors.temp")]
    again = (await api.sync(batch("edge-1", frames))).json()
    assert (again["stored"], again["duplicates"], len(again["rejected"])) == (0, 2998, 2)
    state = (await api.client.get("/api/v1/twin/press-5/state", headers=auth(api.viewer))).json()
    newest = max(k for k in range(3000) if k % 7 == 5)
    assert state["values"]["temp"]["value"] == 20.0 + newest
    assert state["values"]["metrics.score"]["value"] == 0.01 * newest
