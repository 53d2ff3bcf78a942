"""The durable queue: sequences, duplicates, acks, disk budget, damaged files."""

from __future__ import annotations

import stat
import time
from pathlib import Path

import pytest

from edge.config import StoreConfig
from edge.store import QueueFull, Store, StoreError
from shared.frame import TelemetryFrame

T0 = 1_800_000_000.0


def frames(n: int, device: str = "press-1", start: float = T0, width: int = 1) -> list[TelemetryFrame]:
    return [
        TelemetryFrame(ts=start + i, device_id=device, sensors={f"s{k}": float(i + k) for k in range(width)})
        for i in range(n)
    ]


async def open_store(path: Path, **config: object) -> Store:
    store = Store(path, StoreConfig.model_validate(config))
    await store.open()
    return store


async def test_frames_get_growing_sequences_and_come_back_in_order(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "q.db")
    assert await store.append(frames(5)) == 5
    rows = await store.read()
    seqs = [r.seq for r in rows]
    assert seqs == sorted(seqs) and len(set(seqs)) == 5
    assert seqs[0] > int((time.time() - 60) * 1_000_000)  # a fresh file starts at "now" in µs
    assert [r.frame_dict()["ts"] for r in rows] == [T0 + i for i in range(5)]
    await store.close()


async def test_the_same_reading_is_stored_once(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "q.db")
    assert await store.append(frames(3)) == 3
    assert await store.append(frames(4)) == 1  # three already queued
    stats = await store.stats()
    assert (stats.depth, stats.duplicates) == (4, 3)
    await store.close()


async def test_ack_deletes_exactly_through_the_acknowledged_sequence(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "q.db")
    await store.append(frames(10))
    rows = await store.read()
    assert await store.ack(rows[3].seq) == 4
    left = await store.read()
    assert [r.seq for r in left] == [r.seq for r in rows[4:]]
    assert (await store.stats()).depth == 6
    await store.close()


async def test_read_respects_the_byte_limit_but_returns_at_least_one(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "q.db")
    await store.append(frames(10, width=20))
    one = len((await store.read(limit=1))[0].payload)
    assert len(await store.read(max_bytes=one * 3)) == 3
    assert len(await store.read(max_bytes=1)) == 1
    await store.close()


async def test_disk_budget_drops_the_oldest_and_counts_them(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "q.db", disk_budget="1MiB")
    for batch in range(40):
        await store.append(frames(100, start=T0 + batch * 100, width=40))
    stats = await store.stats()
    assert stats.used_bytes <= 1024**2 * 1.05
    dropped = stats.drops["disk_budget_oldest"]
    assert dropped > 0 and dropped + stats.depth == 4000
    newest = (await store.read(after_seq=(stats.newest_seq or 0) - 1))[0]
    assert newest.frame_dict()["ts"] == T0 + 3999  # the newest is kept
    await store.close()


async def test_drop_newest_refuses_whole_batches_and_keeps_the_backlog(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "q.db", disk_budget="1MiB", when_full="drop_newest")
    stored = refused = 0
    for batch in range(40):
        try:
            stored += await store.append(frames(100, start=T0 + batch * 100, width=40))
        except QueueFull as exc:
            assert exc.reason == "disk_budget_newest" and "drop_newest" in str(exc)
            refused += 100
    stats = await store.stats()
    # The store counts nothing itself: the writer knows who keeps a refused frame (see test_writer).
    assert refused == 4000 - stored > 0 and stats.depth == stored and stats.drops == {}
    assert (await store.read(limit=1))[0].frame_dict()["ts"] == T0
    await store.close()


async def test_a_damaged_file_is_set_aside_and_sequences_keep_growing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "q.db"
    store = await open_store(path)
    await store.append(frames(3))
    last = (await store.stats()).newest_seq or 0
    await store.close()
    path.write_bytes(b"this is not a database" * 100)
    for leftover in (tmp_path / "q.db-wal", tmp_path / "q.db-shm"):
        leftover.unlink(missing_ok=True)

    store = await open_store(path)
    assert "is damaged" in caplog.text and "NOT sent" in caplog.text
    assert len(list(tmp_path.glob("q.db.corrupt-*"))) == 1
    await store.append(frames(1, start=T0 + 100))
    stats = await store.stats()
    assert stats.resets == 1 and stats.depth == 1
    assert (stats.newest_seq or 0) > last
    await store.close()


async def test_counters_and_quarantine_survive_a_restart(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "q.db")
    await store.append(frames(2))
    await store.append(frames(2))
    await store.quarantine("mqtt:twin/x/telemetry", "ts: must be seconds", b"\x81\xa2ts\xc3")
    await store.refused("disk_full", unacked=3, dropped=5)
    await store.close()

    store = await open_store(tmp_path / "q.db")
    stats = await store.stats()
    assert (stats.duplicates, stats.quarantined, stats.drops["disk_full"], stats.depth) == (2, 1, 5, 2)
    [row] = await store.quarantined()
    assert (row["origin"], row["reason"], row["bytes"]) == ("mqtt:twin/x/telemetry", "ts: must be seconds", 5)
    await store.close()


async def test_a_queue_directory_under_a_regular_file_is_a_store_error_that_says_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "var").write_text("a file where a directory should be")
    store = Store(tmp_path / "var" / "lib" / "queue.db", StoreConfig())
    with pytest.raises(StoreError) as caught:
        await store.open()
    message = str(caught.value)
    assert f"cannot create the queue directory {tmp_path / 'var' / 'lib'}" in message
    assert f"{tmp_path / 'var'} is a file" in message and "set edge.state_dir" in message


async def test_a_queue_path_that_cannot_be_opened_is_a_store_error_and_is_not_set_aside(tmp_path: Path) -> None:
    (tmp_path / "queue.db").mkdir()  # a directory where the file should be: not "damaged", just wrong
    store = Store(tmp_path / "queue.db", StoreConfig())
    with pytest.raises(StoreError, match="queue.db"):
        await store.open()
    assert (tmp_path / "queue.db").is_dir() and not list(tmp_path.glob("*.corrupt-*"))


async def test_queue_files_are_not_readable_by_other_users(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "state" / "q.db")
    await store.append(frames(3))
    assert stat.S_IMODE((tmp_path / "state").stat().st_mode) & 0o007 == 0
    for name in ("q.db", "q.db-wal", "q.db-shm", "q.db-reserve"):
        assert stat.S_IMODE((tmp_path / "state" / name).stat().st_mode) & 0o007 == 0, name
    await store.close()

    # A queue made by an older version (mode 0644) loses other users' access at the next start.
    (tmp_path / "state" / "q.db").chmod(0o644)
    store = await open_store(tmp_path / "state" / "q.db")
    assert stat.S_IMODE((tmp_path / "state" / "q.db").stat().st_mode) == 0o640
    assert (await store.stats()).depth == 3
    await store.close()
