"""The store writer: batching, durable waits, backpressure, draining on shutdown."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from edge.config import StoreConfig
from edge.store import QueueFull, Store
from edge.writer import StoreWriter
from shared.frame import TelemetryFrame

T0 = 1_800_000_000.0


def frame(i: int, device: str = "press-1") -> TelemetryFrame:
    return TelemetryFrame(ts=T0 + i, device_id=device, sensors={"temp": 20.0 + i})


async def make(tmp_path: Path, **kw: int | float) -> tuple[Store, StoreWriter]:
    store = Store(tmp_path / "q.db", StoreConfig())
    await store.open()
    writer = StoreWriter(
        store,
        max_frames=int(kw.get("max_frames", 1000)),
        max_delay=float(kw.get("max_delay", 0.01)),
        queue_frames=int(kw.get("queue_frames", 10_000)),
    )
    return store, writer


async def test_a_durable_put_returns_only_once_the_frames_are_in_the_file(tmp_path: Path) -> None:
    store, writer = await make(tmp_path)
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(writer.run(), name="writer")
        await writer.put([frame(0), frame(1)], durable=True)
        # Read through a second connection: the commit is visible to anyone.
        other = Store(tmp_path / "q.db", StoreConfig())
        await other.open()
        assert [r.frame_dict()["ts"] for r in await other.read()] == [T0, T0 + 1]
        await other.close()
        task.cancel()
    await store.close()


async def test_many_small_puts_become_few_transactions(tmp_path: Path) -> None:
    store, writer = await make(tmp_path, max_frames=500, max_delay=0.05)
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(writer.run(), name="writer")
        await asyncio.gather(*(writer.put([frame(i)], durable=True) for i in range(2000)))
        task.cancel()
    assert writer.committed_frames == 2000
    assert writer.commits <= 20  # not one transaction per frame
    assert (await store.stats()).depth == 2000
    await store.close()


async def test_a_full_queue_makes_producers_wait_instead_of_dropping(tmp_path: Path) -> None:
    store, writer = await make(tmp_path, queue_frames=100)
    await writer.put([frame(i) for i in range(100)])  # fills the queue; the writer is not running
    blocked = asyncio.create_task(writer.put([frame(100)]), name="blocked-producer")
    await asyncio.sleep(0)  # let it run until it blocks
    await asyncio.sleep(0)
    assert not blocked.done() and writer.waits == 1
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(writer.run(), name="writer")
        await blocked
        while writer.committed_frames < 101:
            await asyncio.sleep(0.01)
        task.cancel()
    assert (await store.stats()).depth == 101
    await store.close()


async def test_cancelling_the_writer_commits_what_was_queued(tmp_path: Path) -> None:
    store, writer = await make(tmp_path, max_delay=10.0)  # a long gather window
    task = asyncio.create_task(writer.run(), name="writer")
    await writer.put([frame(0)], durable=True)  # first commit: starts the 10 s window
    await writer.put([frame(i) for i in range(1, 50)])  # waits in memory for the window
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    assert (await store.stats()).depth == 50
    await store.close()


async def test_hooks_see_committed_frames_and_a_failing_hook_does_not_stop_the_writer(tmp_path: Path) -> None:
    store, writer = await make(tmp_path)
    seen: list[float] = []

    async def broken(_frames: object) -> None:
        raise RuntimeError("dashboard publisher broke")

    async def record(frames: list[TelemetryFrame]) -> None:
        seen.extend(f.ts for f in frames)

    writer.on_commit(broken)
    writer.on_commit(record)  # type: ignore[arg-type]
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(writer.run(), name="writer")
        await writer.put([frame(0)], durable=True)
        await writer.put([frame(1)], durable=True)
        task.cancel()
    assert seen == [T0, T0 + 1]
    await store.close()


async def test_a_full_queue_under_drop_newest_refuses_durable_puts_and_counts_the_rest(tmp_path: Path) -> None:
    store = Store(tmp_path / "q.db", StoreConfig(disk_budget=1024**2, when_full="drop_newest"))
    await store.open()
    template = TelemetryFrame(ts=T0, device_id="press-1", sensors={f"s{k}": float(k) for k in range(40)})

    def wide(start: int, n: int) -> list[TelemetryFrame]:
        return [template.model_copy(update={"ts": T0 - 100_000 + start + i}) for i in range(n)]

    with contextlib.suppress(QueueFull):
        for start in range(0, 1000, 100):
            await store.append(wide(start, 100))  # most of the budget, quickly
    writer = StoreWriter(store, max_frames=1000, max_delay=0.01, queue_frames=10_000)
    try:
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(writer.run(), name="writer")
            refused_in_a_row, start = 0, 1000
            while refused_in_a_row < 3 and start < 5000:  # two at a time until the queue keeps refusing
                try:
                    await writer.put(wide(start, 2), durable=True)
                    refused_in_a_row = 0
                except QueueFull:
                    refused_in_a_row += 1
                start += 2
            assert refused_in_a_row == 3, "the queue never filled"
            before = await store.stats()
            # An MQTT QoS 1 publish: the caller learns the frames were not stored, so no PUBACK leaves.
            with pytest.raises(QueueFull):
                await writer.put(wide(start, 2), durable=True)
            # A poller does not wait for the commit: its frames are dropped and counted.
            await writer.put(wide(start + 2, 3))
            async with asyncio.timeout(10):
                while store.drops.get("disk_budget_newest", 0) < 3:
                    await asyncio.sleep(0.01)
            task.cancel()
        stats = await store.stats()
        assert stats.drops == {"disk_budget_newest": 3}
        assert stats.refused_unacked == before.refused_unacked + 2 and stats.full
        assert stats.depth == before.depth  # nothing of the refused batches was stored
    finally:
        await store.close()


class StoreWithABug(Store):
    """The real store, with a bug in its first append (our own seam)."""

    appends = 0

    async def append(self, frames, alerts=(), **rest):  # type: ignore[no-untyped-def]
        StoreWithABug.appends += 1
        if StoreWithABug.appends == 1:
            raise RuntimeError("a bug in the write path")
        return await super().append(frames, alerts=alerts, **rest)


async def crash_and_restart(writer: StoreWriter, frames: list[TelemetryFrame]) -> None:
    """A durable put while the writer crashes with the batch in hand (as the supervisor sees it), then a restarted
    writer; returns once the caller (a QoS 1 publish waiting for its PUBACK) is answered."""
    put = asyncio.create_task(writer.put(frames, durable=True), name="durable-put")
    with pytest.raises(RuntimeError, match="a bug"):
        await writer.run()
    restarted = asyncio.create_task(writer.run(), name="writer-again")
    try:
        async with asyncio.timeout(10):
            await put
    finally:
        restarted.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            async with asyncio.timeout(10):
                await restarted


async def test_a_writer_restarted_after_a_crash_stores_the_batch_it_held_and_answers_its_callers(
    tmp_path: Path,
) -> None:
    store = StoreWithABug(tmp_path / "q.db", StoreConfig())
    await store.open()
    writer = StoreWriter(store, max_frames=1000, max_delay=0.01, queue_frames=10_000)
    await crash_and_restart(writer, [frame(0), frame(1)])
    assert [row.ts for row in await store.read()] == [T0, T0 + 1]
    await store.close()


async def test_an_alert_scored_before_a_crash_is_stored_after_the_restart(tmp_path: Path) -> None:
    """Scoring the batch again raises no alert (the policy already raised it): the writer carries the event."""
    from shared.batch import AlertEvent

    raised = AlertEvent(alert_id="a-1", event="raised", device_id="press-1", ts=T0, model="m", version=1, score=5.0)
    calls = 0

    async def enrich(frames):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        return list(frames), [raised] if calls == 1 else []

    StoreWithABug.appends = 0
    store = StoreWithABug(tmp_path / "q.db", StoreConfig())
    await store.open()
    writer = StoreWriter(store, max_frames=1000, max_delay=0.01, queue_frames=10_000, enrich=enrich)
    await crash_and_restart(writer, [frame(0)])
    assert calls == 2
    assert [a.alert_dict()["alert_id"] for a in await store.read_alerts(limit=10)] == ["a-1"]
    await store.close()
