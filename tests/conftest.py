"""Fixtures shared by the suites: a real PostgreSQL server for the cloud's and the end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.cloud.pg import PgServer, PgUnavailable, start_cluster


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """A real PostgreSQL server for the session. Missing PostgreSQL is a test failure, not a skip."""
    try:
        server = start_cluster()
    except PgUnavailable as exc:
        pytest.fail(f"PostgreSQL tests cannot run: {exc}", pytrace=False)
    yield server
    server.stop()
