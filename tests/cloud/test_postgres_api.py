"""The API on PostgreSQL, and two service processes' worth of apps sharing one database (statelessness)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest

from cloud.app import create_app
from cloud.identities import add_edge, add_user
from shared.codec import encode_obj
from tests.cloud.apiclient import auth, batch, config_for, wire
from tests.cloud.pg import PgServer, fresh_pg_database

pytestmark = pytest.mark.postgres


@contextlib.asynccontextmanager
async def app_client(tmp_path, url: str) -> AsyncIterator[httpx.AsyncClient]:
    # The readings are of January 2026, older than the default retention: no retention pass may remove them
    # between the two posts (a reading sent again after its frame was removed would be counted again).
    app = create_app(config_for(tmp_path, database={"url": url}))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cloud.test") as c:
            c.app = app  # type: ignore[attr-defined]
            yield c


async def post(client: httpx.AsyncClient, token: str, body: dict) -> httpx.Response:
    return await client.post("/api/v1/sync/batches", content=encode_obj(body),
                             headers={**auth(token), "Content-Type": "application/msgpack"})


async def test_two_service_instances_on_one_database_store_each_reading_once(pg_server: PgServer, tmp_path) -> None:
    url = await fresh_pg_database(pg_server)
    async with app_client(tmp_path, url) as one, app_client(tmp_path, url) as two:
        storage = one.app.state.ctx.storage  # type: ignore[attr-defined]
        edge = await add_edge(storage, "edge-1")
        viewer = await add_user(storage, "vic", "viewer")
        body = batch("edge-1", [(i + 1, wire(i, device=f"d{i % 4}")) for i in range(400)])
        # The same batch through both instances at once (an edge retrying against a load balancer).
        acks = [r.json() for r in await asyncio.gather(post(one, edge, body), post(two, edge, body))]
        assert sum(a["stored"] for a in acks) == 400 and sum(a["duplicates"] for a in acks) == 400
        assert all(a["acked_through"] == 400 for a in acks)
        # What one instance stored, the other serves (nothing is kept in a process).
        state = (await two.get("/api/v1/twin/d1/state", headers=auth(viewer))).json()
        assert state["values"]["temp"]["value"] == 20.0 + 397
        agg = (await one.get("/api/v1/twin/history/aggregate", headers=auth(viewer), params={
            "device": "d0", "fields": "temp", "start": 1_767_225_600, "stop": 1_767_225_600 + 400,
            "window": "5m", "funcs": "count,first,last"})).json()
        assert [b["count"] for b in agg["series"][0]["buckets"]] == [75, 25]
        # A token revoked through one instance is refused by the other (no auth cache in tests).
        await storage.revoke("edge", "edge-1", 1)
        assert (await post(two, edge, batch("edge-1", [(401, wire(401))]))).status_code == 401


async def test_copying_sqlite_into_postgresql_keeps_tokens_data_and_aggregates(pg_server: PgServer,
                                                                                tmp_path) -> None:
    from cloud.storage.postgres import PostgresStorage
    from cloud.storage.sqlite import SQLiteStorage
    from cloud.transfer import copy_database
    from shared.frame import TelemetryFrame

    src = SQLiteStorage(tmp_path / "old.db")
    dst = PostgresStorage(await fresh_pg_database(pg_server), pool_size=2)
    await src.open()
    await dst.open()
    try:
        edge = await add_edge(src, "edge-1")
        await add_user(src, "gone", "viewer")
        await src.revoke("user", "gone", 5)
        frames = [(i + 1, TelemetryFrame(ts=1_767_225_600 + i * 0.5, device_id=f"d{i % 3}",
                                         sensors={"t": float(i), "mode": "run"}, status="alarm" if i == 7 else "ok"))
                  for i in range(5000)]
        await src.ingest("edge-1", frames, None, 1)
        from cloud.documents import read_documents
        from cloud.storage.programs import ProgramQuery, search_programs
        from tests.cloud.documents import program, program_doc
        moved = program("a/O1.nc", content="O1")
        docs, _ = read_documents([program_doc(1, program("b/O2.nc", number="O2")), program_doc(2, moved),
                                  program_doc(3, {**moved, "path": "c/O1.nc"}, at=5),
                                  {"seq": 4, "document": {"kind": "program"}}])
        await src.ingest("edge-1", [], None, 2, documents=docs)
        assert await copy_database(src, dst) == 5000
        assert await copy_database(src, dst) == 0  # a second run stores nothing twice
        copied = await search_programs(dst, ProgramQuery())
        assert [(p.edge, p.path, p.rename_list()[0]["from"] if p.rename_list() else None) for p in copied] == [
            ("edge-1", "c/O1.nc", "a/O1.nc"), ("edge-1", "b/O2.nc", None)]
        [(count, invalid)] = await dst.select(lambda p: (
            "SELECT count(*), sum(CASE WHEN status = 'invalid' THEN 1 ELSE 0 END) FROM documents", []))
        assert (count, invalid) == (4, 1)
        from cloud.auth import hash_token
        assert (await dst.principal(hash_token(edge))).name == "edge-1"  # type: ignore[union-attr]
        assert [u["revoked_at"] for u in await dst.identities("user")] == [5]
        for device in ("d0", "d1", "d2"):
            assert await dst.frames_between(device, 0, 2**62, 10_000) == \
                await src.frames_between(device, 0, 2**62, 10_000)
            lo, hi = 1_767_225_600_000_000, 1_767_225_600_000_000 + 3_000_000_000
            [(_, a)] = await src.aggregate(device, ["t"], lo, hi, 60_000_000)
            [(_, b)] = await dst.aggregate(device, ["t"], lo, hi, 60_000_000)
            assert [(k, v.count, v.sum, v.first, v.last) for k, v in a] == \
                [(k, v.count, v.sum, v.first, v.last) for k, v in b]
    finally:
        await src.close()
        await dst.close()
