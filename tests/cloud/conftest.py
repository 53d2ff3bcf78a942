"""Fixtures of the cloud suite: both storage backends, a PostgreSQL server, the app with tokens, chromium."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from playwright.sync_api import Browser

from cloud.storage.base import Storage
from cloud.storage.postgres import PostgresStorage
from cloud.storage.sqlite import SQLiteStorage
from tests.cloud.apiclient import Api, make_api
from tests.cloud.browser import chromium
from tests.cloud.pg import fresh_pg_database
from tests.cloud.server import CloudServer


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def storage(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[Storage]:
    """Each backend in turn, opened on an empty database: the contract suite runs against both."""
    store: Storage
    if request.param == "sqlite":
        store = SQLiteStorage(tmp_path / "cloud.db", readers=2)
    else:
        server = request.getfixturevalue("pg_server")
        store = PostgresStorage(await fresh_pg_database(server), pool_size=4)
    await store.open()
    yield store
    await store.close()


@pytest.fixture
def cloud_server(tmp_path) -> Iterator[CloudServer]:
    """A real twincloud (uvicorn subprocess, SQLite) with tokens: ``.base_url``, ``.edge_token``, ``.admin_token``."""
    server = CloudServer(tmp_path / "cloud", edges=["edge-1"])
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def api(tmp_path) -> AsyncIterator[Api]:
    """The app in-process (SQLite) with tokens: ``api.edge`` (edge-1), ``api.admin``, ``.operator``, ``.viewer``."""
    async with make_api(tmp_path) as client:
        yield client


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's chromium (``tests.cloud.browser``), launched once per test module; a module whose pages need
    WebGL launches its own with ``WEBGL_ARGS``."""
    with chromium() as launched:
        yield launched
