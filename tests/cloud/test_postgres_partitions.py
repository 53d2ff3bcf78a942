"""PostgreSQL's weekly partitions of samples and frames: created before rows need them, dropped by retention,
and a database of an older schema converted in place with every row kept."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import AsyncIterator

import asyncpg
import pytest

from cloud.migrations import latest_version
from cloud.storage import partitions as parts
from cloud.storage.partitions import WEEK_US, Bound, gaps, partition_name, week_start
from cloud.storage.postgres import PostgresStorage
from shared.frame import TelemetryFrame
from tests.cloud.oldschema import postgres_at_version
from tests.cloud.pg import PgServer, fresh_pg_database

MONDAY = 1_736_121_600  # 2025-01-06T00:00:00Z, a Monday
DAY = 86_400


def test_weeks_start_on_monday_midnight_utc() -> None:
    us = MONDAY * 1_000_000
    assert week_start(us) == us
    assert week_start(us + WEEK_US - 1) == us
    assert week_start(us - 1) == us - WEEK_US
    assert partition_name("samples", us) == "samples_p20250106"


def test_gaps_are_what_no_partition_covers() -> None:
    have = [Bound(parts.MIN_TS, 100, "samples_legacy"), Bound(200, 300, "a"), Bound(300, 400, "b")]
    assert gaps(50, 120, have) == [(100, 120)]
    assert gaps(150, 350, have) == [(150, 200)]
    assert gaps(250, 500, have) == [(400, 500)]
    assert gaps(210, 390, have) == []
    assert gaps(0, 10, []) == [(0, 10)]


def frames_at(*days: float, device: str = "press-1") -> list[tuple[int, TelemetryFrame]]:
    return [(k + 1, TelemetryFrame(ts=MONDAY + d * DAY, device_id=device, sensors={"temp": d, "mode": "auto"}))
            for k, d in enumerate(days)]


@pytest.fixture
async def url(pg_server: PgServer) -> str:
    return await fresh_pg_database(pg_server)


@pytest.fixture
async def store(url: str) -> AsyncIterator[PostgresStorage]:
    s = PostgresStorage(url, pool_size=3)
    await s.open()
    yield s
    await s.close()


async def layout(url: str, table: str) -> dict[str, str]:
    """Partition name -> its bound, as PostgreSQL shows it."""
    con = await asyncpg.connect(url)
    try:
        rows = await con.fetch("SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
                               "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = $1::regclass", table)
    finally:
        await con.close()
    return {r[0]: r[1] for r in rows}


async def rows(url: str, sql: str) -> set[tuple]:
    con = await asyncpg.connect(url)
    try:
        return {tuple(r) for r in await con.fetch(sql)}
    finally:
        await con.close()


SAMPLES = "SELECT series_id, ts, value, text FROM samples"
FRAMES = "SELECT device_id, ts, edge, seq, status FROM frames"


@pytest.mark.postgres
async def test_a_new_database_has_this_weeks_partitions_and_a_default(store: PostgresStorage, url: str) -> None:
    this_week = partition_name("samples", week_start(time.time_ns() // 1000))
    for table in ("samples", "frames"):
        have = await layout(url, table)
        assert have[f"{table}_default"] == "DEFAULT"
        assert this_week.replace("samples", table) in have and len(have) == 4  # this week, two more, default


@pytest.mark.postgres
async def test_frames_of_any_age_get_their_partition_and_read_back(store: PostgresStorage, url: str) -> None:
    days = [-9000.5, -3.0, 0.25, 9000.0]  # 2000, a week, the next, 2049: 4 weeks, 8 partitions at most a batch
    result = await store.ingest("edge-1", frames_at(*days), None, 1)
    assert result.stored == 4
    have = await layout(url, "samples")
    for d in days:
        name = partition_name("samples", week_start(int((MONDAY + d * DAY) * 1e6)))
        assert name in have, name
    assert await rows(url, "SELECT * FROM samples_default") == set()
    page = await store.history("press-1", ["temp"], 0, 2**62, 100, None)
    assert [v for _, v in page.series[0][1]] == days
    again = await store.ingest("edge-1", frames_at(*days), None, 2)
    assert (again.stored, again.duplicates) == (0, 4)  # unique on (device, ts) across partitions too


@pytest.mark.postgres
async def test_replicas_creating_the_same_weeks_at_once_store_each_reading_once(url: str) -> None:
    a, b = PostgresStorage(url, pool_size=3), PostgresStorage(url, pool_size=3)
    await a.open()
    await b.open()
    try:
        batch = frames_at(*(-700 + 7 * k for k in range(3)), device="d1")
        results = await asyncio.gather(a.ingest("edge-1", batch, None, 1), b.ingest("edge-1", batch, None, 1))
        assert sorted(r.stored for r in results) == [0, 3]
        assert len([n for n in await layout(url, "frames") if n != "frames_default"]) == 3 + 3
    finally:
        await a.close()
        await b.close()


@pytest.mark.postgres
async def test_a_batch_of_many_weeks_overflows_into_the_default_partition_until_they_get_theirs(
        store: PostgresStorage, url: str) -> None:
    days = [-7.0 * k for k in range(1, 11)]  # ten past weeks: more than one batch creates
    await store.ingest("edge-1", frames_at(*days), None, 1)
    in_default = await rows(url, "SELECT ts FROM frames_default")
    assert len(in_default) == 10 - parts.MAX_NEW_PER_BATCH // 2
    page = await store.history("press-1", ["temp"], 0, 2**62, 100, None)
    assert [v for _, v in page.series[0][1]] == sorted(days)  # read back alike, wherever they are
    await store.ingest("edge-1", frames_at(*days, device="press-2"), None, 2)  # the next batch creates more
    assert len(await rows(url, "SELECT ts FROM frames_default")) == 10 - parts.MAX_NEW_PER_BATCH


@pytest.mark.postgres
async def test_retention_removes_exactly_what_delete_would(store: PostgresStorage, url: str) -> None:
    rnd = random.Random(9)
    days = list({round(rnd.uniform(-60, 10), 3) for _ in range(300)})
    rnd.shuffle(days)
    for k in range(0, len(days), 150):  # two batches of 11 weeks: 3 weeks stay in the default partition
        await store.ingest("edge-1", frames_at(*days[k:k + 150], device=f"d{k % 4}"), None, k + 1)
    assert await rows(url, "SELECT ts FROM samples_default")  # the test covers rows there too
    samples, frames = await rows(url, SAMPLES), await rows(url, FRAMES)
    removed = 0
    for cutoff_day in (-45.5, -30.0, -2.25, 3.0):
        cutoff = int((MONDAY + cutoff_day * DAY) * 1e6)
        removed += await store.purge(cutoff, None)
        samples = {r for r in samples if r[1] >= cutoff}
        frames = {r for r in frames if r[1] >= cutoff}
        assert await rows(url, SAMPLES) == samples
        assert await rows(url, FRAMES) == frames
        for table in ("samples", "frames"):  # no partition wholly older than the cutoff is left
            assert all(b.hi > cutoff for b in await _bounds(url, table))
    assert removed == 3 * len(days) - len(samples) - len(frames)  # a frame: one row, two values (temp, mode)


@pytest.mark.postgres
async def test_a_week_dropped_by_another_replica_stores_into_the_default_partition(url: str) -> None:
    a, b = PostgresStorage(url, pool_size=3), PostgresStorage(url, pool_size=3)
    await a.open()
    await b.open()
    try:
        await a.ingest("edge-1", frames_at(-20.0), None, 1)  # a knows that week has partitions
        await b.purge(int((MONDAY - 10 * DAY) * 1e6), None)  # b drops them
        result = await a.ingest("edge-1", frames_at(-20.5), None, 2)
        assert result.stored == 1
        assert await rows(url, "SELECT ts FROM samples_default") == {(int((MONDAY - 20.5 * DAY) * 1e6),)}
        await a.purge(int((MONDAY - 10 * DAY) * 1e6), None)  # the next retention pass removes it
        assert await rows(url, SAMPLES) == set()
        # A week wholly older than the cutoff gets no partition: the next pass would drop it anyway.
        await a.ingest("edge-1", frames_at(-30.0), None, 3)
        assert not any(partition_name("frames", week_start(int((MONDAY - 30 * DAY) * 1e6))) == n
                       for n in await layout(url, "frames"))
    finally:
        await a.close()
        await b.close()


async def _bounds(url: str, table: str) -> list[Bound]:
    con = await asyncpg.connect(url)
    try:
        return await parts.bounds(con, table)
    finally:
        await con.close()


@pytest.mark.postgres
async def test_a_version_3_database_with_data_is_partitioned_in_place(url: str) -> None:
    now = time.time()
    edge_week = week_start(int(now * 1e6))
    con = await asyncpg.connect(url)
    try:
        await postgres_at_version(con, 3)
        await con.execute("CREATE INDEX samples_ts_brin ON samples USING brin (ts)")  # as version 3 made it
        await con.execute("INSERT INTO devices (name, first_seen) VALUES ('press-1', 1)")
        await con.execute("INSERT INTO series (device_id, field, kind) VALUES (1, 'temp', 'num')")
        # 120 days of the past, this week and a frame from the future
        stamps = [int((now - 120 * DAY) * 1e6) + k * 3_600_000_000 for k in range(120 * 24)] + \
            [int((now + 120) * 1e6), int((now + 9 * DAY) * 1e6)]
        await con.executemany("INSERT INTO frames VALUES (1, $1, 'edge-1', $2, 'ok')",
                              [(ts, k) for k, ts in enumerate(stamps)])
        await con.executemany("INSERT INTO samples VALUES (1, $1, $2, NULL)",
                              [(ts, k / 2) for k, ts in enumerate(stamps)])
        filenode = await con.fetchval("SELECT pg_relation_filenode('samples')")
    finally:
        await con.close()
    before_samples, before_frames = await rows(url, SAMPLES), await rows(url, FRAMES)

    store = PostgresStorage(url, pool_size=3)
    await store.open()
    try:
        assert await store.schema_version() == latest_version()
        assert await rows(url, SAMPLES) == before_samples and await rows(url, FRAMES) == before_frames
        legacy = await layout(url, "samples")
        assert legacy["samples_legacy"] == f"FOR VALUES FROM (MINVALUE) TO ('{edge_week}')"
        # The past was not copied: the old table's file is the old partition's.
        assert await rows(url, "SELECT pg_relation_filenode('samples_legacy')") == {(filenode,)}
        assert len(await rows(url, "SELECT ts FROM samples_legacy")) == sum(ts < edge_week for ts in stamps)
        page = await store.history("press-1", ["temp"], 0, 2**62, 10_000, None)
        assert [ts for ts, _ in page.series[0][1]] == sorted(stamps)
        # Retention deletes from the old partition until the cutoff passes it, then drops it.
        cutoff = int((now - 90 * DAY) * 1e6)
        await store.purge(cutoff, None)
        assert await rows(url, SAMPLES) == {r for r in before_samples if r[1] >= cutoff}
        await store.purge(edge_week, None)
        assert "samples_legacy" not in await layout(url, "samples")
        assert "frames_legacy" not in await layout(url, "frames")
        assert await rows(url, FRAMES) == {r for r in before_frames if r[1] >= edge_week}
    finally:
        await store.close()


@pytest.mark.postgres
async def test_a_busy_table_delays_partition_changes_without_losing_or_keeping_a_row(
        store: PostgresStorage, url: str) -> None:
    await store.ingest("edge-1", frames_at(-20.0, -19.0), None, 1)
    reader = await asyncpg.connect(url)
    try:
        tx = reader.transaction()
        await tx.start()
        await reader.fetchval("SELECT count(*) FROM samples")  # a long report holds every partition
        # New week: its partitions wait for the report; the rows go to the DEFAULT partition meanwhile.
        assert (await store.ingest("edge-1", frames_at(-40.0), None, 2)).stored == 1
        assert await rows(url, "SELECT ts FROM frames_default") == {(int((MONDAY - 40 * DAY) * 1e6),)}
        # Retention cannot drop the old week now: it deletes its rows instead.
        cutoff = int((MONDAY - 10 * DAY) * 1e6)
        assert await store.purge(cutoff, None) == 3 * 3
        assert await rows(url, SAMPLES) == set() and await rows(url, FRAMES) == set()
        await tx.rollback()
    finally:
        await reader.close()
    await store.purge(cutoff, None)  # the next pass drops the emptied partitions
    assert all(b.hi > cutoff for b in await _bounds(url, "samples"))


def boundary_batch(edge: int, week: int) -> list[tuple[int, TelemetryFrame]]:
    """24 readings of the two devices of edge ``edge``, from the Friday before week ``week`` to its Wednesday."""
    start = MONDAY + week * 7 * DAY
    return [(week * 100 + k, TelemetryFrame(ts=start + (h - 60) * 3600 + edge, device_id=f"e{edge}-d{k % 2}",
                                            sensors={"temp": float(week * 1000 + h)}))
            for k, h in enumerate(range(0, 120, 5))]


@pytest.mark.postgres
async def test_replicas_ingesting_into_new_weeks_at_once_store_each_reading_exactly_once(url: str) -> None:
    a, b = PostgresStorage(url, pool_size=4), PostgresStorage(url, pool_size=4)
    await a.open()
    await b.open()
    try:
        # b has run a retention pass and a has not: a creates partitions for these weeks (and moves the rows
        # the DEFAULT partition holds of them) while b stores their rows in the DEFAULT partition, at once.
        await b.purge(int((MONDAY + 20 * 7 * DAY) * 1e6), None)
        readings: dict[str, set[int]] = {}
        sent, calls = 0, []
        for week in range(1, 13):
            for edge in range(4):  # four edges: their batches are stored side by side
                batch = boundary_batch(edge, week)
                for _, frame in batch:
                    readings.setdefault(frame.device_id, set()).add(int(frame.ts * 1e6))
                first, second = (a, b) if (week + edge) % 2 else (b, a)
                calls.append(first.ingest(f"edge-{edge}", batch, None, 1))
                sent += len(batch)
                if week % 3 == 0:  # the same batch again through the other replica
                    calls.append(second.ingest(f"edge-{edge}", batch, None, 1))
                    sent += len(batch)
        results = await asyncio.gather(*calls)
        total = sum(map(len, readings.values()))
        assert (sum(r.stored for r in results), sum(r.duplicates for r in results)) == (total, sent - total)
        names = {r[0]: r[1] for r in await rows(url, "SELECT id, name FROM devices")}
        assert {(names[d], ts) for d, ts in await rows(url, "SELECT device_id, ts FROM frames")} == \
            {(d, ts) for d, stamps in readings.items() for ts in stamps}
        assert len(await rows(url, "SELECT series_id, ts FROM samples")) == total
        day = DAY * 1_000_000
        for k, (device, stamps) in enumerate(sorted(readings.items())):
            [(_, buckets)] = await (a, b)[k % 2].aggregate(device, ["temp"], 0, 2**62, day)
            assert {bucket: agg.count for bucket, agg in buckets} == Counter(ts - ts % day for ts in stamps)
        assert len([n for n in await layout(url, "frames") if n.startswith("frames_p")]) >= 12
    finally:
        await a.close()
        await b.close()
