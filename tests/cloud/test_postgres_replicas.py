"""What replicas share through PostgreSQL: one edge's ingest at a time, and the batches announced to the others."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import asyncpg
import pytest

from cloud.storage.notify import APPLICATION_NAME, notices
from cloud.storage.postgres import PostgresStorage
from shared.batch import EdgeHealth
from shared.frame import TelemetryFrame
from tests.cloud.pg import PgServer, fresh_pg_database

pytestmark = pytest.mark.postgres
T0 = 1_700_000_000.0


def frames(device: str, first: int, count: int) -> list[tuple[int, TelemetryFrame]]:
    return [(i + 1, TelemetryFrame(ts=T0 + i, device_id=device, sensors={"i": i})) for i in range(first, first + count)]


@pytest.fixture
async def url(pg_server: PgServer) -> str:
    return await fresh_pg_database(pg_server)


@pytest.fixture
async def replicas(url: str) -> AsyncIterator[tuple[PostgresStorage, PostgresStorage]]:
    a, b = PostgresStorage(url, pool_size=2), PostgresStorage(url, pool_size=2)
    await a.open()
    await b.open()
    yield a, b
    await a.close()
    await b.close()


async def waiting_on_a_lock(url: str) -> int:
    con = await asyncpg.connect(url)
    try:
        return int(await con.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"))
    finally:
        await con.close()


async def test_one_edges_batches_wait_for_each_other_and_other_edges_do_not(
        url: str, replicas: tuple[PostgresStorage, PostgresStorage]) -> None:
    a, b = replicas
    health = EdgeHealth(queue_depth=0)
    holder = await asyncpg.connect(url)
    try:
        async with holder.transaction():
            # Replica A is in the middle of storing a batch of edge-1 (it holds the edge's lock).
            await holder.execute("SELECT pg_advisory_xact_lock(7306, hashtext('edge-1'))")
            second = asyncio.create_task(b.ingest("edge-1", frames("press-1", 0, 5), health, 1))
            other = await b.ingest("edge-2", frames("lathe-1", 0, 5), health, 1)  # not held up
            assert other.stored == 5
            async with asyncio.timeout(10):
                while await waiting_on_a_lock(url) == 0:
                    await asyncio.sleep(0.02)
            assert not second.done()
        result = await asyncio.wait_for(second, 10)  # released at the end of A's transaction
        assert (result.stored, result.duplicates) == (5, 0)
    finally:
        await holder.close()
    again = await a.ingest("edge-1", frames("press-1", 0, 5), health, 2)  # the same batch through replica A
    assert (again.stored, again.duplicates) == (0, 5)


async def test_a_replica_hears_the_batches_the_other_stores_and_listens_again_after_a_loss(
        url: str, replicas: tuple[PostgresStorage, PostgresStorage]) -> None:
    a, b = replicas
    feed = a.feed()
    task = asyncio.create_task(feed.run())
    try:
        async with asyncio.timeout(10):
            assert await feed.get() is None  # connected: look for what was missed
        await a.ingest("edge-1", frames("press-1", 0, 3), None, 1)  # its own: not announced to itself
        await b.ingest("edge-2", frames("lathe-1", 10, 3), None, 1)
        async with asyncio.timeout(10):
            assert await feed.get() == {"lathe-1": (int((T0 + 10) * 1e6), int((T0 + 12) * 1e6))}
        assert feed.listening

        con = await asyncpg.connect(url)  # the listening connection is cut, as a database restart would
        try:
            cut = await con.fetchval("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                     "WHERE application_name = $1 AND datname = current_database()",
                                     APPLICATION_NAME)
            assert cut == 1
        finally:
            await con.close()
        async with asyncio.timeout(20):
            assert await feed.get() is None  # listening again: look for what passed meanwhile
        await b.ingest("edge-2", frames("lathe-1", 20, 1), None, 2)
        async with asyncio.timeout(10):
            assert await feed.get() == {"lathe-1": (int((T0 + 20) * 1e6),) * 2}
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def test_a_batch_of_many_devices_is_announced_in_payloads_postgresql_accepts() -> None:
    stored = {f"device-{k:04d}-with-a-long-name": (k, k + 1) for k in range(2000)}
    payloads = notices("origin", stored)
    assert len(payloads) > 1 and all(len(p.encode()) < 8000 for p in payloads)
    merged: dict[str, list[int]] = {}
    for p in payloads:
        merged.update(json.loads(p)["devices"])
    assert {d: tuple(v) for d, v in merged.items()} == stored
