"""Uploaded assemblies live in the database: every service process on it finds every upload."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trimesh
from physics_helpers import inline

from cloud.app import create_app
from cloud.identities import add_user
from cloud.physics.store import PhysicsStore
from cloud.storage.base import Storage
from cloud.storage.postgres import PostgresStorage
from cloud.storage.sqlite import SQLiteStorage
from cloud.transfer import copy_database
from tests.cloud.apiclient import auth, config_for
from tests.cloud.pg import PgServer, fresh_pg_database

ASSEMBLIES = "/api/v1/physics/assemblies"


def upload_body(shift_mm: float = 90.0, name: str = "two boxes") -> dict[str, Any]:
    box = trimesh.creation.box((100.0, 100.0, 100.0))
    return {"name": name, "unit": "mm", "parts": [
        {"name": "a", "mesh": inline(box), "material": "steel-s235", "fixed": True},
        {"name": "b", "mesh": inline(box), "material": "aluminium-6061-t6",
         "pose": {"translation": [shift_mm, 0, 0]}}]}


@contextlib.asynccontextmanager
async def service(directory: Path, url: str | None = None, **physics: Any) -> AsyncIterator[httpx.AsyncClient]:
    """One service process's app (its own physics store and cache) on the database ``url``."""
    sections: dict[str, Any] = {"physics": physics} if physics else {}
    if url is not None:
        sections["database"] = {"url": url}
    app = create_app(config_for(directory, **sections))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cloud.test") as c:
            c.app = app  # type: ignore[attr-defined]
            yield c


async def upload_on_one_check_on_the_other(tmp_path: Path, url: str | None) -> None:
    async with service(tmp_path, url) as one, service(tmp_path, url) as two:
        storage = one.app.state.ctx.storage  # type: ignore[attr-defined]
        operator = auth(await add_user(storage, "olga", "operator"))
        viewer = auth(await add_user(storage, "vic", "viewer"))
        up = await one.post(ASSEMBLIES, json=upload_body(), headers=operator)
        assert up.status_code == 201, up.text
        aid = up.json()["id"]
        info = await two.get(f"{ASSEMBLIES}/{aid}", headers=viewer)
        assert info.status_code == 200 and info.json() == up.json()
        coll = (await two.post("/api/v1/physics/collision/check", json={"assembly_id": aid}, headers=viewer)).json()
        assert coll["interfering"] == 1
        assert coll["pairs"][0]["volume_unit3"] == pytest.approx(10 * 100 * 100, rel=1e-9)
        unknown = await two.get(f"{ASSEMBLIES}/{'0' * 32}", headers=viewer)
        assert unknown.status_code == 404 and "no assembly" in unknown.text
    async with service(tmp_path, url) as again:  # and after a restart
        assert (await again.get(f"{ASSEMBLIES}/{aid}", headers=viewer)).json()["name"] == "two boxes"


async def test_an_upload_to_one_process_is_found_by_another_on_sqlite(tmp_path: Path) -> None:
    await upload_on_one_check_on_the_other(tmp_path, None)


@pytest.mark.postgres
async def test_an_upload_to_one_replica_is_found_by_another_on_postgresql(tmp_path: Path,
                                                                          pg_server: PgServer) -> None:
    await upload_on_one_check_on_the_other(tmp_path, await fresh_pg_database(pg_server))


async def test_assemblies_dropped_from_memory_are_loaded_again_from_the_database(tmp_path: Path) -> None:
    storage = SQLiteStorage(tmp_path / "cloud.db", readers=2)
    await storage.open()
    try:
        store = PhysicsStore(max_loaded=2)
        await store.bind(storage)
        ids = [(await asyncio.to_thread(store.put, json.dumps(upload_body(shift, f"cell-{k}")).encode())).id
               for k, shift in enumerate((90.0, 100.0, 150.0))]
        for k, aid in enumerate(ids):  # the first two were evicted by the time the third came
            entry = await asyncio.to_thread(store.get, aid)
            assert entry.assembly.spec.name == f"cell-{k}"
        record = await storage.assembly(ids[0])
        assert record is not None and record.name == "cell-0" and record.size == len(record.body)
        with pytest.raises(RuntimeError, match="worker thread"):
            store.get("f" * 32)  # on the event loop: refused, never a deadlock
    finally:
        await storage.close()


async def test_uploads_of_the_old_store_dir_are_copied_into_the_database(tmp_path: Path, caplog) -> None:
    old = tmp_path / "store"
    old.mkdir()
    aid = "0123456789abcdef0123456789abcdef"
    (old / f"{aid}.json").write_text(json.dumps(upload_body(name="kept")))
    (old / "notes.txt").write_text("not an upload")
    with caplog.at_level(logging.WARNING, logger="cloud.physics.store"):
        async with service(tmp_path, None, store_dir=str(old)) as client:
            viewer = auth(await add_user(client.app.state.ctx.storage, "vic", "viewer"))  # type: ignore[attr-defined]
            got = await client.get(f"{ASSEMBLIES}/{aid}", headers=viewer)
    assert got.status_code == 200 and got.json()["name"] == "kept"
    assert "store_dir" in caplog.text and "1 upload(s) were copied" in caplog.text
    async with service(tmp_path, None) as client:  # the setting removed: the upload stays
        assert (await client.get(f"{ASSEMBLIES}/{aid}", headers=viewer)).json()["name"] == "kept"


@pytest.mark.postgres
async def test_copying_a_database_carries_its_uploads(tmp_path: Path, pg_server: PgServer) -> None:
    src: Storage = SQLiteStorage(tmp_path / "cloud.db", readers=2)
    dst: Storage = PostgresStorage(await fresh_pg_database(pg_server), pool_size=2)
    await src.open()
    await dst.open()
    try:
        store = PhysicsStore()
        await store.bind(src)
        aid = (await asyncio.to_thread(store.put, json.dumps(upload_body()).encode())).id
        await copy_database(src, dst)
        await copy_database(src, dst)  # twice: nothing twice
        assert await dst.assembly_ids() == [aid]
        assert await dst.assembly(aid) == await src.assembly(aid)
    finally:
        await src.close()
        await dst.close()
