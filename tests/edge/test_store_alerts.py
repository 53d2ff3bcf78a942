"""Model alerts in the durable queue: their own sequence, acks, the row cap, and a full disk budget that drops
and refuses frames while every alert is kept."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.config import StoreConfig
from edge.store import QueueFull, Store
from shared.batch import AlertEvent
from shared.frame import TelemetryFrame
from tests.smallfs import fill_up, small_filesystem

T0 = 1_800_000_000.0


def frames(n: int, start: int = 0, width: int = 40) -> list[TelemetryFrame]:
    return [TelemetryFrame(ts=T0 + start + i, device_id="press-1",
                           sensors={f"s{k}": float(i + k) for k in range(width)}) for i in range(n)]


def alert(n: int, event: str = "raised", device: str = "press-1") -> AlertEvent:
    return AlertEvent(alert_id=f"a-{n}", event=event, device_id=device, ts=T0 + n, model="bearing", version=3,
                      score=0.9 + n / 1e6, threshold=0.8, message=f"vibration unusual ({n})")


def alerts(n: int, start: int = 0) -> list[AlertEvent]:
    return [alert(start + i) for i in range(n)]


async def open_store(path: Path, **config: object) -> Store:
    store = Store(path, StoreConfig.model_validate(config))
    await store.open()
    return store


async def test_alerts_get_their_own_growing_sequence_and_come_back_in_order(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "q.db")
    assert await store.append(frames(3), alerts=[alert(1), alert(1, "cleared")]) == 3
    assert await store.append([], alerts=[alert(2)]) == 0  # an alert without frames
    rows = await store.read_alerts()
    assert [(r.alert_dict()["alert_id"], r.alert_dict()["event"]) for r in rows] == [
        ("a-1", "raised"), ("a-1", "cleared"), ("a-2", "raised")]
    seqs = [r.seq for r in rows]
    assert seqs == sorted(seqs) and seqs[0] > int((time.time() - 60) * 1_000_000)
    assert AlertEvent.model_validate(rows[0].alert_dict()) == alert(1)  # the event comes back whole
    stats = await store.stats()
    assert (stats.depth, stats.alerts) == (3, 3)
    assert stats.as_dict()["alerts"]["pending"] == 3
    await store.close()


async def test_acking_alerts_deletes_through_the_sequence_and_leaves_frames(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "q.db")
    await store.append(frames(2), alerts=alerts(5))
    rows = await store.read_alerts()
    assert await store.ack_alerts(rows[2].seq) == 3
    assert [r.seq for r in await store.read_alerts()] == [r.seq for r in rows[3:]]
    assert [r.seq for r in await store.read_alerts(after_seq=rows[3].seq)] == [rows[4].seq]
    assert (store.alert_depth, store.depth) == (2, 2)
    await store.close()


async def test_alerts_and_their_counts_survive_a_reopen_and_an_event_waiting_is_stored_once(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "q.db")
    await store.append([], alerts=alerts(4))
    await store.append([], alerts=alerts(2))  # the same two events again (a writer retried a batch)
    first = await store.read_alerts()
    await store.close()
    store = await open_store(tmp_path / "q.db")
    assert store.alert_depth == 4
    await store.append([], alerts=[alert(9)])
    again = await store.read_alerts()
    assert [r.seq for r in again[:4]] == [r.seq for r in first] and again[4].seq > first[-1].seq
    await store.close()


async def test_past_the_row_cap_the_oldest_alerts_go_and_are_counted(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "q.db", alerts_max=100)
    for start in range(0, 250, 50):
        await store.append([], alerts=alerts(50, start=start))
    rows = await store.read_alerts(limit=1000)
    assert [r.alert_dict()["alert_id"] for r in rows] == [f"a-{n}" for n in range(150, 250)]
    stats = await store.stats()
    assert stats.alerts == 100 and stats.alert_drops == {"over_cap": 150}
    assert stats.drops == {}  # no frame was dropped
    await store.close()


@pytest.mark.parametrize("value", [0, 99, "many", 10**9])
def test_a_bad_alert_cap_is_refused(value: object) -> None:
    with pytest.raises(ValueError, match="alerts_max"):
        StoreConfig.model_validate({"alerts_max": value})


async def test_at_the_budget_drop_oldest_drops_frames_and_keeps_every_alert(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "q.db", disk_budget="1MiB")
    for batch in range(40):
        await store.append(frames(100, start=batch * 100), alerts=alerts(5, start=batch * 5))
    stats = await store.stats()
    assert stats.used_bytes <= 1024**2 * 1.05
    assert stats.drops["disk_budget_oldest"] > 0 and stats.drops["disk_budget_oldest"] + stats.depth == 4000
    assert stats.alerts == 200 and stats.alert_drops == {}
    await store.close()


async def test_alerts_alone_at_the_budget_push_out_the_oldest_frames(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "q.db", disk_budget="1MiB")
    for batch in range(30):
        await store.append(frames(100, start=batch * 100))
    before = (await store.stats()).drops.get("disk_budget_oldest", 0)
    for start in range(0, 2000, 100):
        await store.append([], alerts=alerts(100, start=start))
    stats = await store.stats()
    assert stats.alerts == 2000
    assert stats.drops["disk_budget_oldest"] > before  # room was made from frames
    assert stats.used_bytes <= 1024**2 * 1.05
    await store.close()


async def test_drop_newest_refuses_the_frames_of_a_batch_and_stores_its_alerts(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "q.db", disk_budget="1MiB", when_full="drop_newest")
    refused = 0
    for batch in range(40):
        try:
            await store.append(frames(100, start=batch * 100), alerts=alerts(5, start=batch * 5))
        except QueueFull as exc:
            assert exc.reason == "disk_budget_newest"
            refused += 1
    stats = await store.stats()
    assert refused > 0 and stats.depth == (40 - refused) * 100
    assert stats.alerts == 200  # the refused batches' alerts too
    await store.close()


async def test_when_alerts_fill_the_budget_frames_are_refused_and_alerts_still_kept(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "q.db", disk_budget="1MiB", alerts_max=1_000_000)
    n = 0
    while store.alert_depth < 6000:
        await store.append([], alerts=alerts(500, start=n))
        n += 500
    with pytest.raises(QueueFull) as refused:
        await store.append(frames(100), alerts=alerts(10, start=n))
    assert refused.value.reason == "disk_budget_alerts" and "alerts are kept" in str(refused.value)
    assert store.alert_depth == n + 10 and store.depth == 0
    await store.close()


# --- on a real, small filesystem --------------------------------------------------------------------------------

@pytest.fixture
def fs(tmp_path: Path) -> Iterator[Path]:
    with small_filesystem(tmp_path / "fs", 20) as mount:
        yield mount


def integrity(path: Path) -> list[str]:
    with sqlite3.connect(path) as db:
        return [r[0] for r in db.execute("PRAGMA integrity_check")]


async def test_a_disk_smaller_than_the_budget_drops_frames_and_keeps_every_alert(fs: Path) -> None:
    store = await open_store(fs / "q.db", disk_budget="256MB")
    for batch in range(150):  # about 45 MB of frames into 20 MB of disk
        await store.append(frames(200, start=batch * 200), alerts=alerts(20, start=batch * 20))
    stats = await store.stats()
    assert stats.disk.capped and stats.drops["disk_budget_oldest"] > 0
    assert stats.alerts == 3000 and stats.alert_drops == {}
    await store.close()
    assert integrity(fs / "q.db") == ["ok"]


async def test_a_disk_filled_by_another_program_refuses_frames_but_takes_alerts(fs: Path) -> None:
    store = await open_store(fs / "q.db", disk_budget="256MB", when_full="drop_newest")
    for batch in range(20):
        await store.append(frames(200, start=batch * 200))
    fill_up(fs / "logs", leave=512 * 1024)
    refused = 0
    for batch in range(20, 40):
        try:
            await store.append(frames(200, start=batch * 200), alerts=alerts(5, start=batch * 5))
        except QueueFull as exc:
            assert exc.reason in ("disk_full", "disk_budget_newest")
            refused += 1
    assert refused > 0
    stats = await store.stats()
    assert stats.alerts == 100 and stats.alert_drops == {}
    rows = await store.read_alerts(limit=1000)
    assert await store.ack_alerts(rows[-1].seq) == 100  # and they leave again on a full disk
    await store.close()
    assert integrity(fs / "q.db") == ["ok"]
