"""Each device belongs to one edge: the storage contract on SQLite and PostgreSQL, upgrades and copies."""

from __future__ import annotations

import asyncio
import sqlite3

import asyncpg
import pytest

from cloud.migrations import latest_version
from cloud.storage.base import MINUTE_US, DeviceExists, Storage, UnknownDevice
from cloud.storage.postgres import PostgresStorage
from cloud.storage.sqlite import SQLiteStorage
from cloud.transfer import copy_database
from shared.frame import TelemetryFrame
from tests.cloud.oldschema import postgres_at_version, sqlite_at_version
from tests.cloud.pg import PgServer, fresh_pg_database

T0 = 1_767_225_600.0  # minute aligned
US = 1_000_000
REFUSED_B = "device dev-b belongs to edge edge-b; an admin can move it with `twincloud device move dev-b --to edge-a`"


def reading(i: int, device: str = "dev-b", temp: float | None = None) -> TelemetryFrame:
    return TelemetryFrame(ts=T0 + i, device_id=device, sensors={"temp": 20.0 + i if temp is None else temp})


async def test_a_device_of_another_edge_is_refused_and_nothing_of_it_is_stored(storage: Storage) -> None:
    await storage.ingest("edge-b", [(1, reading(0))], None, 1)
    attack = await storage.ingest("edge-a", [(1, reading(1, temp=999.0)), (2, reading(1, device="dev-a")),
                                             (3, reading(5000, temp=-1.0))], None, 2)
    assert (attack.stored, attack.duplicates) == (1, 0)
    assert attack.refused == [(1, REFUSED_B), (3, REFUSED_B)]
    state = await storage.state("dev-b")
    assert (state.last_ts, state.edge, state.values["temp"][1]) == (int(T0 * US), "edge-b", 20.0)

    real = await storage.ingest("edge-b", [(2, reading(1))], None, 3)  # the same instant the attacker sent
    assert (real.stored, real.duplicates, real.refused) == (1, 0, [])
    state = await storage.state("dev-b")
    assert (state.last_ts, state.values["temp"][1]) == (int((T0 + 1) * US), 21.0)
    page = await storage.history("dev-b", ["temp"], 0, 2**62, 100, None)
    assert [v for _, v in page.series[0][1]] == [20.0, 21.0]
    [(_, buckets)] = await storage.aggregate("dev-b", ["temp"], int(T0 * US), int(T0 * US) + 2 * MINUTE_US, MINUTE_US)
    assert [(b.count, b.max) for _, b in buckets] == [(2, 21.0)]  # no rollup of the attacker's 999 or -1
    frames = await storage.frames_between("dev-b", 0, 2**62, 10)
    assert [f.sensors["temp"] for f in frames] == [20.0, 21.0]

    await storage.create_identity("edge", "edge-a", "edge", "ha", 1)
    [edge_a] = await storage.edges()
    assert (edge_a.frames_stored, edge_a.duplicates, edge_a.rejected) == (1, 0, 2)


async def test_the_first_edge_to_write_a_device_owns_it_and_a_copy_in_one_batch_is_a_duplicate(
        storage: Storage) -> None:
    first = await storage.ingest("edge-a", [(1, reading(0, "m1")), (2, reading(0, "m1"))], None, 1)
    assert (first.stored, first.duplicates) == (1, 1)
    refused = await storage.ingest("edge-b", [(1, reading(1, "m1")), (2, reading(1, "m1"))], None, 2)
    assert (refused.stored, refused.duplicates, [s for s, _ in refused.refused]) == (0, 1, [1])
    assert [(d.name, d.owner) for d in await storage.device_records()] == [("m1", "edge-a")]


async def test_two_edges_claiming_new_devices_at_once_leave_one_owner_each(storage: Storage) -> None:
    # A second store on the same database, as a second process would have (SQLite serialises writes per store).
    twin = SQLiteStorage(storage.path) if isinstance(storage, SQLiteStorage) else storage
    if twin is not storage:
        await twin.open()
    try:
        for round_ in range(8):
            names = [f"r{round_}-d{k}" for k in range(6)]
            batch_a = [(k + 1, reading(k, names[k % 6], temp=1.0)) for k in range(60)]
            batch_b = [(k + 1, reading(k, names[(k + 3) % 6], temp=2.0)) for k in range(60)]
            a, b = await asyncio.gather(storage.ingest("edge-a", batch_a, None, 1),
                                        twin.ingest("edge-b", batch_b, None, 1))
            assert a.stored + len(a.refused) == 60 and b.stored + len(b.refused) == 60
            owners = {d.name: d.owner for d in await storage.device_records() if d.name in names}
            for name in names:
                winner = owners[name]
                assert winner in ("edge-a", "edge-b")
                page = await storage.history(name, ["temp"], 0, 2**62, 1000, None)
                assert {v for _, v in page.series[0][1]} == {1.0 if winner == "edge-a" else 2.0}
                assert len(page.series[0][1]) == 10
                loser = b if winner == "edge-a" else a
                assert sum(1 for _, why in loser.refused if f"device {name} " in why) == 10
    finally:
        if twin is not storage:
            await twin.close()


async def test_an_admin_binds_and_moves_devices_and_every_change_is_recorded(storage: Storage) -> None:
    move = await storage.bind_device("spare", "edge-b", "root", "new press", 10, create=True)
    assert move is not None and (move.from_edge, move.to_edge, move.by, move.at) == (None, "edge-b", "root", 10)
    assert (await storage.ingest("edge-a", [(1, reading(0, "spare"))], None, 11)).refused
    with pytest.raises(DeviceExists):
        await storage.bind_device("spare", "edge-a", "root", "", 12, create=True)
    with pytest.raises(UnknownDevice):
        await storage.bind_device("nothing", "edge-a", "root", "", 12, create=False)
    with pytest.raises(UnknownDevice):
        await storage.device_moves("nothing", 10)
    assert await storage.bind_device("spare", "edge-b", "root", "again", 13, create=False) is None

    moved = await storage.bind_device("spare", "edge-a", "ann", "edge-b retired", 20, create=False)
    assert moved is not None and (moved.from_edge, moved.to_edge) == ("edge-b", "edge-a")
    assert (await storage.ingest("edge-a", [(2, reading(0, "spare"))], None, 21)).stored == 1
    old = await storage.ingest("edge-b", [(5, reading(1, "spare"))], None, 22)
    assert old.stored == 0 and "belongs to edge edge-a" in old.refused[0][1]
    history = await storage.device_moves("spare", 10)
    assert [(m.from_edge, m.to_edge, m.by, m.at, m.reason) for m in history] == [
        (None, "edge-b", "root", 10, "new press"), ("edge-b", "edge-a", "ann", 20, "edge-b retired")]
    assert [m.to_edge for m in await storage.device_moves("spare", 1)] == ["edge-a"]  # the newest


async def test_a_device_bound_before_it_sends_is_listed_but_has_sent_no_data(storage: Storage) -> None:
    await storage.bind_device("later", "edge-b", "root", "", 10, create=True)
    await storage.ingest("edge-a", [(1, reading(0, "now"))], None, 11)
    assert await storage.devices() == ["now"]
    assert [(d.name, d.owner, d.last_ts, d.last_edge) for d in await storage.device_records()] == [
        ("later", "edge-b", None, None), ("now", "edge-a", int(T0 * US), "edge-a")]


async def test_the_edges_clock_skew_is_recorded_and_kept_when_a_batch_has_none(storage: Storage) -> None:
    await storage.create_identity("edge", "edge-a", "edge", "ha", 1)
    await storage.ingest("edge-a", [], None, 5, clock_skew_s=-42.5)
    assert (await storage.edges())[0].clock_skew_s == -42.5
    await storage.ingest("edge-a", [], None, 6)
    assert (await storage.edges())[0].clock_skew_s == -42.5


def _v2_sqlite(path) -> None:
    con = sqlite3.connect(path, isolation_level=None)
    sqlite_at_version(con, 2)
    _old_rows(con.execute)
    con.close()


def _old_rows(execute) -> None:  # type: ignore[no-untyped-def]
    execute("INSERT INTO identities (kind, name, role, created_at) VALUES ('edge', 'line-1', 'edge', 1)")
    for k, (name, edge) in enumerate([("press-1", "line-1"), ("copied", "copy"), ("silent", None)]):
        execute(f"INSERT INTO devices (id, name, first_seen, last_ts, last_edge) VALUES ({k + 1}, '{name}', 1, "
                f"{'NULL' if edge is None else 5}, {'NULL' if edge is None else repr(edge)})")


async def _check_upgraded(store: Storage) -> None:
    assert await store.schema_version() == latest_version()
    owners = {d.name: d.owner for d in await store.device_records()}
    assert owners == {"press-1": "line-1", "copied": None, "silent": None}
    assert (await store.ingest("line-2", [(1, reading(0, "press-1"))], None, 9)).refused
    assert (await store.ingest("line-2", [(2, reading(0, "copied"))], None, 9)).stored == 1
    assert {d.name: d.owner for d in await store.device_records()}["copied"] == "line-2"


async def test_an_upgraded_sqlite_database_binds_devices_to_the_registered_edge_that_wrote_them(tmp_path) -> None:
    _v2_sqlite(tmp_path / "old.db")
    store = SQLiteStorage(tmp_path / "old.db")
    await store.open()
    try:
        await _check_upgraded(store)
    finally:
        await store.close()


@pytest.mark.postgres
async def test_an_upgraded_postgresql_database_binds_devices_to_the_registered_edge_that_wrote_them(
        pg_server: PgServer) -> None:
    url = await fresh_pg_database(pg_server)
    con = await asyncpg.connect(url)
    try:
        await postgres_at_version(con, 2)
        statements: list[str] = []
        _old_rows(statements.append)
        for statement in statements:
            await con.execute(statement)
        await con.execute("SELECT setval('devices_id_seq', 3)")
    finally:
        await con.close()
    store = PostgresStorage(url, pool_size=2)
    await store.open()
    try:
        await _check_upgraded(store)
    finally:
        await store.close()


async def test_a_copied_database_keeps_each_devices_edge(tmp_path) -> None:
    src, dst = SQLiteStorage(tmp_path / "a.db"), SQLiteStorage(tmp_path / "b.db")
    await src.open()
    await dst.open()
    try:
        await src.create_identity("edge", "line-1", "edge", "h1", 1)
        await src.ingest("line-1", [(k + 1, reading(k, "press-1")) for k in range(5)], None, 1)
        await src.bind_device("spare", "line-1", "root", "", 2, create=True)
        await dst.bind_device("taken", "line-9", "root", "", 2, create=True)
        await src.ingest("line-2", [(1, reading(0, "taken"))], None, 3)
        assert await copy_database(src, dst) == 6
        owners = {d.name: d.owner for d in await dst.device_records()}
        assert owners == {"press-1": "line-1", "spare": "line-1", "taken": "line-9"}
        assert [m.by for m in await dst.device_moves("press-1", 10)] == ["twincloud copy"]
        assert (await dst.ingest("line-1", [(9, reading(5, "press-1"))], None, 4)).stored == 1
        assert (await dst.ingest("line-2", [(9, reading(6, "press-1"))], None, 4)).refused
    finally:
        await src.close()
        await dst.close()
