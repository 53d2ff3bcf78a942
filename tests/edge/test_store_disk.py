"""The queue on a real, small filesystem (a 20 MB tmpfs): a budget larger than the disk, a disk that another
program fills, deletes on a full disk, and the WAL inside the budget."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.config import StoreConfig
from edge.store import QueueFull, Store
from shared.frame import TelemetryFrame
from tests.smallfs import fill_up, small_filesystem

T0 = 1_800_000_000.0
FS_MB = 20


@pytest.fixture
def fs(tmp_path: Path) -> Iterator[Path]:
    with small_filesystem(tmp_path / "fs", FS_MB) as mount:
        yield mount


_TEMPLATE = TelemetryFrame(ts=T0, device_id="press-1", sensors={f"s{k}": float(k) + 0.5 for k in range(24)})


def frames(n: int, start: int) -> list[TelemetryFrame]:
    """``n`` frames of about 300 bytes, ts = T0 + start + i (copies of one validated frame: fast to make)."""
    return [_TEMPLATE.model_copy(update={"ts": T0 + start + i}) for i in range(n)]


async def open_store(path: Path, **config: object) -> Store:
    store = Store(path, StoreConfig.model_validate(config))
    await store.open()
    return store


def queue_files(path: Path) -> int:
    """Bytes the queue's files take on disk, the reserve included."""
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


async def drain(store: Store) -> int:
    """Acknowledge everything, as the uplink does when the cloud is back."""
    acked = 0
    while rows := await store.read(limit=500):
        acked += await store.ack(rows[-1].seq, from_seq=rows[0].seq, sent=len(rows))
    return acked


def integrity(path: Path) -> list[str]:
    with sqlite3.connect(path) as db:
        return [r[0] for r in db.execute("PRAGMA integrity_check")]


async def test_a_budget_larger_than_the_disk_is_capped_by_it_and_the_oldest_frames_go(fs: Path) -> None:
    store = await open_store(fs / "q.db", disk_budget="256MB")
    produced = 0
    for batch in range(300):  # about 45 MB of frames into 20 MB of disk
        await store.append(frames(200, start=batch * 200))
        produced += 200
    stats = await store.stats()
    assert stats.disk.capped and stats.full and stats.policy == "drop_oldest"
    assert stats.disk.budget < FS_MB * 1024**2
    dropped = stats.drops["disk_budget_oldest"]
    assert dropped > 0 and dropped + stats.depth == produced
    assert [r.frame_dict()["ts"] for r in await store.read(after_seq=(stats.newest_seq or 0) - 1)] == [
        T0 + produced - 1]  # the newest frames are kept
    assert await drain(store) == stats.depth  # deletes work on this full disk
    await store.close()
    assert integrity(fs / "q.db") == ["ok"]


async def test_drop_newest_on_a_small_disk_refuses_batches_and_takes_them_again_after_a_drain(fs: Path) -> None:
    store = await open_store(fs / "q.db", disk_budget="256MB", when_full="drop_newest")
    stored = refused = 0
    for batch in range(300):
        try:
            stored += await store.append(frames(200, start=batch * 200))
        except QueueFull as exc:
            assert exc.reason == "disk_budget_newest"
            refused += 200
    assert refused > 0 and (await store.stats()).depth == stored
    assert await drain(store) == stored
    assert await store.append(frames(200, start=10**6)) == 200
    await store.close()
    assert integrity(fs / "q.db") == ["ok"]


async def test_acknowledged_frames_can_be_deleted_when_another_program_filled_the_disk(fs: Path) -> None:
    store = await open_store(fs / "q.db", disk_budget="256MB")
    for batch in range(40):
        await store.append(frames(200, start=batch * 200))
    fill_up(fs / "logs", leave=3 * 1024**2)  # another program takes most of what is left ...
    for batch in range(40, 80):  # ... while frames keep coming (the queue's own writes fill the rest)
        await store.append(frames(200, start=batch * 200))
    fill_up(fs / "logs")  # ... and then the last byte
    depth = (await store.stats()).depth
    newest = (await store.stats()).newest_seq or 0
    assert await store.ack(newest) == depth  # one acknowledgement, larger than the reserve
    await store.close()
    assert integrity(fs / "q.db") == ["ok"]


async def test_a_disk_filled_by_another_program_applies_the_policy_and_the_queue_reopens(fs: Path) -> None:
    store = await open_store(fs / "q.db", disk_budget="256MB")
    produced = refused = 0
    for batch in range(40):
        await store.append(frames(200, start=batch * 200))
        produced += 200
    fill_up(fs / "logs")
    for batch in range(40, 80):
        try:
            await store.append(frames(200, start=batch * 200))
        except QueueFull as exc:
            assert exc.reason == "disk_full"
            refused += 200
        produced += 200
    stats = await store.stats()
    assert stats.full and stats.disk.capped
    assert stats.drops.get("disk_budget_oldest", 0) + stats.depth + refused == produced
    await store.close()

    store = await open_store(fs / "q.db", disk_budget="256MB")  # a restart on the full disk
    assert (await store.stats()).depth == stats.depth
    (fs / "logs").unlink()  # room again: the reserve is made again with the next write
    await store.append(frames(10, start=10**6))
    assert (fs / "q.db-reserve").stat().st_size == store.disk.reserve_size
    await drain(store)
    await store.close()
    assert integrity(fs / "q.db") == ["ok"]


async def test_the_queue_files_wal_included_stay_within_the_budget(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    store = await open_store(path, disk_budget="4MiB")
    largest = 0
    for batch in range(200):
        await store.append(frames(100, start=batch * 100))
        largest = max(largest, queue_files(path))
    stats = await store.stats()
    assert stats.drops["disk_budget_oldest"] > 0
    assert largest <= 4 * 1024**2, f"{largest / 1e6:.1f} MB on disk for a 4 MiB budget"
    await store.close()
