"""The storage contract: every test runs against SQLite and against a real PostgreSQL server."""

from __future__ import annotations

import asyncio
import math
import random

import pytest

from cloud.migrations import latest_version
from cloud.storage.base import MINUTE_US, AssemblyRecord, BadQuery, Storage, UnknownDevice
from shared.batch import EdgeHealth
from shared.frame import TelemetryFrame

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z, minute aligned
HEALTH = EdgeHealth(queue_depth=5, oldest_age_s=1.5, drops={"disk_budget": 2}, quarantined=1,
                    sources={"plc-1": "connected"})


def frame(i: int, device: str = "press-1", step: float = 1.0, **sensors) -> TelemetryFrame:
    return TelemetryFrame(ts=T0 + i * step, device_id=device,
                          sensors=sensors or {"temp": 20.0 + i, "count": i}, metrics={"score": i / 100})


def seqd(frames: list[TelemetryFrame], first_seq: int = 1) -> list[tuple[int, TelemetryFrame]]:
    return [(first_seq + k * 3, f) for k, f in enumerate(frames)]  # sequences with gaps, as edges send them


async def test_schema_is_current_and_reopening_migrates_nothing(storage: Storage) -> None:
    assert await storage.schema_version() == latest_version()
    await storage.open()  # a second open (another process starting) is harmless
    assert await storage.schema_version() == latest_version()


async def test_ingest_counts_new_frames_and_values(storage: Storage) -> None:
    result = await storage.ingest("edge-a", seqd([frame(i) for i in range(10)]), HEALTH, 1)
    assert (result.stored, result.duplicates, result.samples) == (10, 0, 30)
    assert [f.ts for f in result.stored_frames] == [T0 + i for i in range(10)]


async def test_retried_and_overlapping_batches_store_each_reading_once(storage: Storage) -> None:
    batch = seqd([frame(i) for i in range(10)])
    await storage.ingest("edge-a", batch, HEALTH, 1)
    again = await storage.ingest("edge-a", batch, HEALTH, 2)
    assert (again.stored, again.duplicates) == (0, 10)
    overlap = seqd([frame(i) for i in range(5, 15)], first_seq=16)
    result = await storage.ingest("edge-a", overlap, HEALTH, 3)
    assert (result.stored, result.duplicates) == (5, 5)
    page = await storage.history("press-1", ["temp"], 0, 2**62, 1000, None)
    assert [ts for ts, _ in page.series[0][1]] == [int((T0 + i) * 1e6) for i in range(15)]


async def test_same_reading_under_a_new_sequence_is_a_duplicate(storage: Storage) -> None:
    await storage.ingest("edge-a", [(100, frame(1))], HEALTH, 1)
    result = await storage.ingest("edge-a", [(200, frame(1)), (201, frame(1)), (202, frame(2))], HEALTH, 2)
    assert (result.stored, result.duplicates) == (1, 2)


async def test_values_keep_their_kind(storage: Storage) -> None:
    f = TelemetryFrame(ts=T0, device_id="m:1", sensors={"on": True, "mode": "auto", "rpm": 1500, "t": 21.5},
                       metrics={"anomaly": 0.25}, status="warning")
    await storage.ingest("edge-a", [(1, f)], HEALTH, 1)
    state = await storage.state("m:1")
    assert state.status == "warning" and state.edge == "edge-a"
    values = {k: v for k, (_, v) in state.values.items()}
    assert values == {"on": True, "mode": "auto", "rpm": 1500.0, "t": 21.5, "metrics.anomaly": 0.25}
    page = await storage.history("m:1", ["mode", "on"], 0, 2**62, 10, None)
    assert [(info.field, pts[0][1]) for info, pts in page.series] == [("mode", "auto"), ("on", True)]


async def test_state_keeps_the_newest_reading_when_an_older_one_arrives_late(storage: Storage) -> None:
    await storage.ingest("edge-a", [(10, frame(10))], HEALTH, 1)
    await storage.ingest("edge-a", [(11, frame(3))], HEALTH, 2)
    state = await storage.state("press-1")
    assert state.last_ts == int((T0 + 10) * 1e6)
    assert state.values["temp"][1] == 30.0


async def test_history_pages_visit_every_point_once(storage: Storage) -> None:
    await storage.ingest("edge-a", seqd([frame(i) for i in range(25)]), HEALTH, 1)
    seen: list[tuple[str, int]] = []
    cursor = None
    pages = 0
    while True:
        page = await storage.history("press-1", None, 0, 2**62, 7, cursor)
        pages += 1
        points = [(info.field, ts) for info, pts in page.series for ts, _ in pts]
        assert 0 < len(points) <= 7
        seen += points
        cursor = page.next_cursor
        if cursor is None:
            break
    assert len(seen) == 75 and len(set(seen)) == 75 and pages == 11
    assert [f for f, _ in seen] == sorted(f for f, _ in seen)  # field order, then time


async def test_history_honours_fields_and_time_range(storage: Storage) -> None:
    await storage.ingest("edge-a", seqd([frame(i) for i in range(20)]), HEALTH, 1)
    start, stop = int((T0 + 5) * 1e6), int((T0 + 8) * 1e6)
    page = await storage.history("press-1", ["temp"], start, stop, 100, None)
    assert [(info.field, [v for _, v in pts]) for info, pts in page.series] == [("temp", [25.0, 26.0, 27.0])]
    assert page.next_cursor is None


async def test_a_field_that_appears_after_a_query_is_found(storage: Storage) -> None:
    await storage.ingest("edge-a", seqd([frame(i) for i in range(3)]), HEALTH, 1)
    page = await storage.history("press-1", ["temp", "temp"], 0, 2**62, 100, None)
    assert [info.field for info, _ in page.series] == ["temp"]
    await storage.ingest("edge-a", seqd([frame(i, pressure=1.5 + i) for i in range(3, 6)], 50), HEALTH, 2)
    page = await storage.history("press-1", ["pressure", "temp"], 0, 2**62, 100, None)
    assert [(info.field, [v for _, v in pts]) for info, pts in page.series] == [
        ("pressure", [4.5, 5.5, 6.5]), ("temp", [20.0, 21.0, 22.0])]
    everything = await storage.history("press-1", None, 0, 2**62, 100, None)
    assert [info.field for info, _ in everything.series] == ["count", "metrics.score", "pressure", "temp"]
    buckets = await storage.aggregate("press-1", ["pressure"], int(T0 * 1e6), int((T0 + 60) * 1e6), MINUTE_US)
    assert [(info.field, [(agg.count, agg.sum) for _, agg in rows]) for info, rows in buckets] == [
        ("pressure", [(3, 16.5)])]


async def test_unknown_device_field_and_cursor_are_refused(storage: Storage) -> None:
    await storage.ingest("edge-a", [(1, frame(1))], HEALTH, 1)
    with pytest.raises(UnknownDevice):
        await storage.state("nope")
    with pytest.raises(UnknownDevice):
        await storage.history("nope", None, 0, 10, 10, None)
    with pytest.raises(BadQuery, match="no field 'pressure'"):
        await storage.history("press-1", ["pressure"], 0, 2**62, 10, None)
    with pytest.raises(BadQuery, match="not a cursor") as info:
        await storage.history("press-1", None, 0, 2**62, 10, "not-a-cursor!")
    assert info.value.problems[0].path == "cursor"


def brute_force(frames: list[TelemetryFrame], field: str, start: int, stop: int, window: int) -> dict:
    buckets: dict[int, list[tuple[int, float]]] = {}
    for f in frames:
        ts = round(f.ts * 1e6)
        if start <= ts < stop:
            buckets.setdefault(ts - ts % window, []).append((ts, float(f.sensors[field])))
    out = {}
    for b, pts in buckets.items():
        pts.sort()
        vals = [v for _, v in pts]
        out[b] = (len(vals), math.fsum(vals), min(vals), max(vals), vals[0], vals[-1])
    return out


@pytest.mark.parametrize("window_s", [60, 300, 7])
async def test_aggregate_matches_a_brute_force_computation(storage: Storage, window_s: int) -> None:
    rng = random.Random(window_s)
    frames = [TelemetryFrame(ts=T0 + i * 2.5 + rng.random(), device_id="d1", sensors={"v": rng.uniform(-5, 5)})
              for i in range(600)]
    rng.shuffle(frames)  # out of order, and spread over several batches hitting the same minutes
    for k in range(0, 600, 97):
        await storage.ingest("edge-a", seqd(frames[k:k + 97], k * 10 + 1), None, 1)
    start, stop = int((T0 + 47.3) * 1e6), int((T0 + 1333.9) * 1e6)  # not minute aligned
    window = window_s * 1_000_000
    [(info, buckets)] = await storage.aggregate("d1", ["v"], start, stop, window)
    got = {b: (a.count, a.sum, a.min, a.max, a.first, a.last) for b, a in buckets}
    assert got == brute_force(frames, "v", start, stop, window)


async def test_aggregate_leaves_out_text_fields(storage: Storage) -> None:
    f = TelemetryFrame(ts=T0, device_id="d1", sensors={"mode": "auto", "t": 1.0})
    await storage.ingest("edge-a", [(1, f)], None, 1)
    result = await storage.aggregate("d1", None, 0, int(T0 * 1e6) + MINUTE_US, MINUTE_US)
    assert [info.field for info, _ in result] == ["t"]


async def test_identities_are_found_by_token_hash_until_revoked(storage: Storage) -> None:
    await storage.create_identity("edge", "line-1", "edge", "h1", 10)
    await storage.create_identity("user", "ann", "operator", "h2", 11)
    assert not await storage.create_identity("user", "ann", "viewer", "h3", 12)  # the name is taken
    p = await storage.principal("h2")
    assert p is not None and (p.kind, p.name, p.role) == ("user", "ann", "operator")
    assert await storage.principal("nope") is None
    assert await storage.revoke("user", "ann", 20)
    assert await storage.principal("h2") is None
    assert not await storage.revoke("user", "bob", 20)
    assert await storage.set_token("user", "ann", "h4")
    assert (await storage.principal("h4")).name == "ann"  # type: ignore[union-attr]
    users = await storage.identities("user")
    assert [(u["name"], u["role"], u["revoked_at"]) for u in users] == [("ann", "operator", None)]


async def test_edges_report_health_and_counters(storage: Storage) -> None:
    await storage.create_identity("edge", "line-1", "edge", "h1", 10)
    await storage.create_identity("edge", "line-2", "edge", "h2", 10)
    await storage.ingest("line-1", [(7, frame(1)), (9, frame(2))], HEALTH, 1_000, rejected=1)
    await storage.ingest("line-1", [(9, frame(2))], None, 2_000)
    line1, line2 = await storage.edges()
    assert (line1.name, line1.last_seen, line1.last_seq, line1.queue_depth) == ("line-1", 2_000, 9, 5)
    assert (line1.frames_stored, line1.duplicates, line1.rejected) == (2, 1, 1)
    assert line1.drops == {"disk_budget": 2} and line1.sources == {"plc-1": "connected"}
    assert line1.oldest_age_s == 1.5 and line1.quarantined == 1
    assert (line2.name, line2.last_seen, line2.frames_stored) == ("line-2", None, 0)


async def test_purge_removes_old_samples_and_rollups(storage: Storage) -> None:
    await storage.ingest("edge-a", seqd([frame(i, step=60) for i in range(10)]), None, 1)
    cutoff = int((T0 + 300) * 1e6)
    assert await storage.purge(cutoff, cutoff) > 0
    page = await storage.history("press-1", ["temp"], 0, 2**62, 100, None)
    assert [v for _, v in page.series[0][1]] == [25.0, 26.0, 27.0, 28.0, 29.0]
    [(_, buckets)] = await storage.aggregate("press-1", ["temp"], 0, 2**62 - 2**62 % MINUTE_US, MINUTE_US)
    assert len(buckets) == 5


async def test_concurrent_ingest_of_the_same_frames_stores_them_once(storage: Storage) -> None:
    frames = seqd([frame(i, device=f"dev-{i % 3}") for i in range(300)])
    results = await asyncio.gather(*(storage.ingest("edge-a", frames, None, 1) for _ in range(4)))
    assert sum(r.stored for r in results) == 300
    assert sum(r.duplicates for r in results) == 900


async def test_aggregate_without_first_and_last_leaves_them_out(storage: Storage) -> None:
    await storage.ingest("edge-a", seqd([frame(i) for i in range(120)]), None, 1)
    start, stop = int(T0 * 1e6), int((T0 + 120) * 1e6)
    [(_, buckets)] = await storage.aggregate("press-1", ["temp"], start, stop, MINUTE_US, first_last=False)
    assert [(a.count, a.min, a.max, a.first, a.last) for _, a in buckets] == [
        (60, 20.0, 79.0, None, None), (60, 80.0, 139.0, None, None)]


async def test_frames_are_rebuilt_from_stored_values_for_the_live_feed(storage: Storage) -> None:
    sent = [TelemetryFrame(ts=T0 + i, device_id="m1", sensors={"t": float(i), "on": i % 2 == 0, "mode": "auto"},
                           metrics={"score": i / 10}, status="alarm" if i == 3 else "ok") for i in range(6)]
    await storage.ingest("edge-a", seqd(sent), None, 1)
    rebuilt = await storage.frames_between("m1", int((T0 + 1) * 1e6), int((T0 + 4) * 1e6), 100)
    assert rebuilt == sent[2:5]
    assert await storage.frames_between("ghost", 0, 2**62, 10) == []


def _mixed_frames(rng: random.Random) -> list[TelemetryFrame]:
    """Two devices whose fields come and go, change order, switch between number and text; booleans,
    integers, metrics on some frames only; timestamps shuffled and spread over several minutes."""
    frames = []
    for i in range(400):
        device = f"m-{i % 2}"
        sensors: dict[str, bool | int | float | str] = {"t": rng.uniform(-50, 50), "n": i}
        if i % 3:
            sensors["on"] = i % 5 == 0
        if i % 7 == 0:
            sensors = dict(reversed(sensors.items()))  # the same fields in another order
        sensors["mode"] = rng.choice(["auto", 1.5, -2, "manual"]) if i > 1 else 0.5  # a number first
        metrics = {"score": rng.random()} if i % 4 else {}
        frames.append(TelemetryFrame(ts=T0 + i * 1.7, device_id=device, sensors=sensors, metrics=metrics))
    rest = frames[2:]
    rng.shuffle(rest)
    return frames[:2] + rest  # each device's first frame first: "mode" is a numeric field


def _points(frames: list[TelemetryFrame], device: str, field: str) -> list[tuple[int, object]]:
    out = []
    for f in frames:
        values = {**f.sensors, **{f"metrics.{k}": v for k, v in f.metrics.items()}}
        if f.device_id == device and field in values:
            out.append((round(f.ts * 1e6), values[field]))
    return sorted(out, key=lambda p: p[0])


async def test_frames_with_changing_fields_and_kinds_are_stored_as_sent(storage: Storage) -> None:
    frames = _mixed_frames(random.Random(7))
    for k in range(0, len(frames), 150):  # batches that overlap in time, each with several minutes
        result = await storage.ingest("edge-a", seqd(frames[k:k + 150], k + 1), None, 1)
        assert (result.stored, result.duplicates) == (len(frames[k:k + 150]), 0)
    fields = ["metrics.score", "mode", "n", "on", "t"]
    for device in ("m-0", "m-1"):
        page = await storage.history(device, None, 0, 2**62, 10_000, None)
        assert [info.field for info, _ in page.series] == fields
        for info, pts in page.series:
            expected = _points(frames, device, info.field)
            assert [ts for ts, _ in pts] == [ts for ts, _ in expected]
            assert all(type(v) is type(w) or (isinstance(v, float) and not isinstance(w, str))
                       for (_, v), (_, w) in zip(pts, expected, strict=True))
            assert [v for _, v in pts] == [w for _, w in expected]  # True == 1.0, 3 == 3.0
        state = await storage.state(device)
        assert {k: v for k, (_, v) in state.values.items()} == {f: _points(frames, device, f)[-1][1] for f in fields}
        start, stop = int(T0 * 1e6), int((T0 + 700) * 1e6)
        aggregates = await storage.aggregate(device, ["mode", "on", "t"], start, stop, MINUTE_US)
        assert [info.field for info, _ in aggregates] == ["mode", "on", "t"]
        for info, buckets in aggregates:
            numeric = [(ts, float(v)) for ts, v in _points(frames, device, info.field) if not isinstance(v, str)]
            expected_buckets = {}
            for b in sorted({ts - ts % MINUTE_US for ts, _ in numeric}):
                vals = [v for ts, v in numeric if ts - ts % MINUTE_US == b]
                expected_buckets[b] = (len(vals), math.fsum(vals), min(vals), max(vals), vals[0], vals[-1])
            got = {b: (a.count, a.sum, a.min, a.max, a.first, a.last) for b, a in buckets}
            assert got == expected_buckets, info.field


async def test_the_first_copy_of_a_reading_wins_within_a_batch_and_across_batches(storage: Storage) -> None:
    first, second, third = (frame(1, temp=v) for v in (5.0, 6.0, 7.0))
    result = await storage.ingest("edge-a", [(200, first), (201, second), (202, frame(2, temp=1.0))], None, 1)
    assert (result.stored, result.duplicates) == (2, 1)
    assert result.stored_frames == [first, frame(2, temp=1.0)]
    again = await storage.ingest("edge-a", [(300, third), (301, frame(3, temp=2.0))], None, 2)
    assert (again.stored, again.duplicates, again.stored_frames) == (1, 1, [frame(3, temp=2.0)])
    page = await storage.history("press-1", ["temp"], 0, 2**62, 100, None)
    assert [v for _, v in page.series[0][1]] == [5.0, 1.0, 2.0]
    [(_, buckets)] = await storage.aggregate("press-1", ["temp"], 0, 2**62 - 2**62 % MINUTE_US, MINUTE_US)
    assert [(a.count, a.sum) for _, a in buckets] == [(3, 8.0)]


async def test_assemblies_are_listed_newest_first_a_page_at_a_time(storage: Storage) -> None:
    for k, created in enumerate((30, 10, 20, 20)):
        await storage.put_assembly(AssemblyRecord(f"{k:032x}", f"cell-{k}", "ab" * 32, 100 + k, created, b"{}", k + 1))
    listed = await storage.assemblies(3)
    assert [(a.name, a.parts, a.created) for a in listed] == [("cell-0", 1, 30), ("cell-3", 4, 20),
                                                              ("cell-2", 3, 20)]
    rest = await storage.assemblies(3, (listed[-1].created, listed[-1].id))
    assert [a.name for a in rest] == ["cell-1"]
    assert (await storage.assembly(f"{3:032x}")).parts == 4  # type: ignore[union-attr]


async def test_a_persons_role_changes_and_an_unknown_person_is_said_so(storage: Storage) -> None:
    assert await storage.create_identity("user", "ann", "viewer", "h" * 64, 1)
    assert await storage.set_role("ann", "operator")
    assert [u["role"] for u in await storage.identities("user")] == ["operator"]
    assert not await storage.set_role("bob", "admin")
