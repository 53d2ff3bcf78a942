"""SQLite specifics: short reads run on the event loop, so a lock held by another program must not stall it."""

from __future__ import annotations

import sqlite3
import time

import pytest

from cloud.storage.base import StorageUnavailable
from cloud.storage.sqlite import SQLiteStorage
from shared.frame import TelemetryFrame

T0 = 1_767_225_600.0


async def test_a_read_of_a_database_locked_elsewhere_fails_fast_and_works_once_it_is_free(tmp_path) -> None:
    path = tmp_path / "cloud.db"
    store = SQLiteStorage(path)
    await store.open()
    await store.ingest("edge-a", [(1, TelemetryFrame(ts=T0, device_id="press-1", sensors={"temp": 21.5}))], None, 1)
    await store.close()
    blocker = sqlite3.connect(path, isolation_level=None)
    store = SQLiteStorage(path, busy_timeout=30.0)
    try:
        blocker.execute("PRAGMA locking_mode = EXCLUSIVE")
        blocker.execute("BEGIN EXCLUSIVE")  # another program holds the whole file
        began = time.monotonic()
        with pytest.raises(StorageUnavailable, match="busy"):
            await store.state("press-1")
        with pytest.raises(StorageUnavailable, match="busy"):
            await store.history("press-1", ["temp"], 0, 2**62, 10, None)
        assert time.monotonic() - began < 15, "a read on the event loop waited out the 30 s busy timeout"
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    try:
        state = await store.state("press-1")
        assert state.values == {"temp": (round(T0 * 1e6), 21.5)}
        page = await store.history("press-1", ["temp"], 0, 2**62, 10, None)
        assert [points for _, points in page.series] == [[(round(T0 * 1e6), 21.5)]]
    finally:
        await store.close()
