"""The edge's event log: events kept in the queue file beside frames and alerts, marked synced (not deleted)
through the cloud's ack, capped by ``store.events_max``, never dropped for frames at the disk budget; and the
recorder's words for a source that stops answering, with repeats of a flapping source counted, not written."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from edge.config import StoreConfig
from edge.eventqueue import EventFilter
from edge.events import EventRecorder
from edge.sources.base import SourceHealth, SourceState
from edge.store import Store
from shared.batch import EdgeEvent
from shared.frame import TelemetryFrame

T0 = 1_800_000_000.0


def frames(n: int, start: int = 0, width: int = 40) -> list[TelemetryFrame]:
    return [TelemetryFrame(ts=T0 + start + i, device_id="press-1",
                           sensors={f"s{k}": float(i + k) for k in range(width)}) for i in range(n)]


def event(n: int, level: str = "operator", device: str | None = "press-1") -> EdgeEvent:
    return EdgeEvent(ts=T0 + n, level=level, kind="source_lost", edge="edge-1", device=device, source="plc-1",
                     message=f"plc-1 stopped answering ({n})", details={"n": n})


async def open_store(path: Path, **config: object) -> Store:
    store = Store(path, StoreConfig.model_validate(config))
    await store.open()
    return store


async def test_events_survive_a_restart_and_the_ack_marks_them_synced_but_keeps_them(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "q.db")
    await store.append(frames(3))
    await store.append_events([event(1), event(2, "technical"), event(3, "developer", device=None)])
    await store.close()
    store = await open_store(tmp_path / "q.db")
    waiting = await store.read_events()
    assert [EdgeEvent.model_validate(e.event_dict()) for e in waiting] == [
        event(1), event(2, "technical"), event(3, "developer", device=None)]
    assert store.event_depth == 3 and store.depth == 3
    await store.ack_events(waiting[1].seq)
    assert store.event_depth == 1 and [e.seq for e in await store.read_events()] == [waiting[2].seq]
    shown = await store.recent_events(EventFilter())
    assert [(e.seq, e.synced) for e in shown] == [(waiting[0].seq, True), (waiting[1].seq, True),
                                                  (waiting[2].seq, False)]
    await store.close()
    store = await open_store(tmp_path / "q.db")
    assert store.event_depth == 1 and (await store.stats()).as_dict()["events"] == {"pending": 1, "dropped": {}}
    await store.close()


async def test_twinedge_events_filters_by_level_device_and_time(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "q.db")
    await store.append_events([event(1), event(2, "technical"), event(3, "developer"),
                               event(4, device="lathe-2")])
    def messages(which: EventFilter) -> list[str]:
        return [e.event_dict()["message"][-3:] for e in shown[which]]
    shown = {f: await store.recent_events(f) for f in (
        EventFilter("operator"), EventFilter("technical"), EventFilter("developer"),
        EventFilter(device="lathe-2"), EventFilter(since=T0 + 3), EventFilter(limit=2))}
    assert messages(EventFilter("operator")) == ["(1)", "(4)"]
    assert messages(EventFilter("technical")) == ["(1)", "(2)", "(4)"]
    assert messages(EventFilter("developer")) == ["(1)", "(2)", "(3)", "(4)"]
    assert messages(EventFilter(device="lathe-2")) == ["(4)"]
    assert messages(EventFilter(since=T0 + 3)) == ["(3)", "(4)"]
    assert messages(EventFilter(limit=2)) == ["(3)", "(4)"]  # the newest, oldest first
    await store.close()


async def test_past_the_cap_the_oldest_go_and_only_those_the_cloud_lacked_are_counted(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "q.db", events_max=100)
    await store.append_events([event(n) for n in range(60)])
    await store.ack_events((await store.read_events(limit=1000))[-1].seq)  # the cloud has these 60
    await store.append_events([event(n) for n in range(60, 150)])
    kept = await store.recent_events(EventFilter(limit=1000))
    assert len(kept) == 100 and kept[0].event_dict()["details"] == {"n": 50}
    assert store.event_drops == {}  # only synced events went
    await store.append_events([event(n) for n in range(150, 170)])
    assert store.event_drops == {"over_cap": 10} and store.event_depth == 100  # every one kept now is unsynced
    await store.close()


async def test_past_the_cap_an_event_the_cloud_lacks_stays_while_frames_wait(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "q.db", events_max=100)
    await store.append(frames(10))
    await store.append_events([event(n) for n in range(150)])
    assert store.event_depth == 150 and store.event_drops == {}  # telemetry is still queued: no event goes
    await store.ack((await store.read(limit=100))[-1].seq)  # the frames reach the cloud
    await store.append_events([event(150)])
    assert store.event_depth == 100 and store.event_drops == {"over_cap": 51}
    assert (await store.recent_events(EventFilter(limit=1000)))[0].event_dict()["details"] == {"n": 51}
    await store.close()


@pytest.mark.parametrize("value", [0, 99, 10**7, "many"])
def test_a_bad_event_cap_is_refused(value: object) -> None:
    with pytest.raises(ValueError, match="events_max"):
        StoreConfig.model_validate({"events_max": value})


async def test_at_the_disk_budget_frames_are_dropped_and_every_event_kept(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "q.db", disk_budget="1MiB")
    for batch in range(40):
        await store.append(frames(100, start=batch * 100))
        await store.append_events([event(batch * 10 + k) for k in range(10)])
    stats = await store.stats()
    assert stats.drops["disk_budget_oldest"] > 0 and stats.used_bytes <= 1024**2 * 1.05
    assert store.event_depth == 400 and store.event_drops == {}
    await store.close()


async def test_drop_newest_refuses_frames_and_still_takes_events(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "q.db", disk_budget="1MiB", when_full="drop_newest")
    refused = 0
    for batch in range(40):
        try:
            await store.append(frames(100, start=batch * 100))
        except Exception:  # noqa: BLE001 - QueueFull: the policy refuses frames
            refused += 1
        await store.append_events([event(batch)])
    assert refused > 0 and store.event_depth == 40
    await store.close()


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


async def test_a_lost_source_is_an_operator_sentence_and_its_recovery_says_how_long(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "q.db")
    clock = Clock()
    recorder = EventRecorder(store, edge_id="edge-1", clock=clock)
    health = SourceHealth(name="machine-2", kind="modbus", detail={"endpoint": "10.0.0.12:502"})
    health.observer = recorder.source_changed
    health.set_state(SourceState.CONNECTED)
    health.set_state(SourceState.DISCONNECTED, "Modbus device machine-2 at 10.0.0.12:502 unit 1 lost the connection",
                     retry_in=4.6)
    health.set_state(SourceState.DISCONNECTED, "Modbus device machine-2 at 10.0.0.12:502 unit 1 lost the connection",
                     retry_in=9.0)  # a retry: no new event
    clock.now = T0 + 42
    health.since = T0  # the outage began at T0 by the recorder's clock
    health.set_state(SourceState.CONNECTED)
    await recorder.flush()
    shown = [e.event_dict() for e in await store.recent_events(EventFilter())]
    assert [(e["kind"], e["level"], e["message"]) for e in shown] == [
        ("source_connected", "technical", "machine-2 connected on 10.0.0.12:502"),
        ("source_lost", "operator", "machine-2 stopped answering on 10.0.0.12:502; retrying in 5 s"),
        ("source_recovered", "operator", "machine-2 answers again on 10.0.0.12:502 after 42 s"),
    ]
    assert shown[1]["details"]["reason"].endswith("lost the connection") and shown[1]["source"] == "machine-2"
    assert operator_only(shown) == 2
    await store.close()


def operator_only(events: list[dict[str, object]]) -> int:
    return sum(1 for e in events if e["level"] == "operator")


async def test_a_flapping_source_writes_a_handful_of_events_and_then_and_n_more(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "q.db")
    clock = Clock()
    recorder = EventRecorder(store, edge_id="edge-1", clock=clock, burst=5, window=60)
    health = SourceHealth(name="machine-2", kind="modbus", detail={"endpoint": "10.0.0.12:502"})
    health.observer = recorder.source_changed
    task = asyncio.create_task(recorder.run(), name="event log")
    try:
        for n in range(1000):
            clock.now = T0 + n * 0.05
            health.set_state(SourceState.CONNECTED if n % 2 else SourceState.DISCONNECTED, "gone", retry_in=1)
        clock.now = T0 + 61  # the window ends: the last state is told, with the count of what was held back
        recorder.record("edge_started", "developer", "nudge")  # wakes the writer at once
        async with asyncio.timeout(5):
            while len(await store.recent_events(EventFilter(limit=100))) < 7:
                await asyncio.sleep(0.01)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    shown = [e.event_dict() for e in await store.recent_events(EventFilter(limit=100))]
    source = [e for e in shown if e["source"] == "machine-2"]
    assert len(source) == 6
    assert source[-1]["kind"] == "source_recovered"  # the 1000th change: connected
    assert source[-1]["message"].endswith("(and 994 more like it in the last 60 s)")
    assert source[-1]["details"]["repeats"] == 995
    await store.close()
