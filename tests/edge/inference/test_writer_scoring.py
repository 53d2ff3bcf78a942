"""The store writer's scoring step (its ``enrich`` seam): scored frames are what is stored, a scoring step that
breaks never holds up the data, and alert events reach the after-commit hooks."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path

import pytest

from edge.config import StoreConfig
from edge.store import Store
from edge.writer import StoreWriter
from shared.batch import AlertEvent
from shared.frame import TelemetryFrame

T0 = 1_800_000_000.0


def frame(i: int) -> TelemetryFrame:
    return TelemetryFrame(ts=T0 + i, device_id="press-1", sensors={"temp": 20.0 + i})


async def scored(frames: Sequence[TelemetryFrame]) -> tuple[list[TelemetryFrame], list[AlertEvent]]:
    return [f.model_copy(update={"metrics": {"model.score": f.sensors["temp"] / 10}}) for f in frames], []


async def broken(frames: Sequence[TelemetryFrame]) -> tuple[list[TelemetryFrame], list[AlertEvent]]:
    raise RuntimeError("a bug in scoring")


async def stored(tmp_path: Path, enrich: object, count: int) -> list[dict[str, object]]:
    store = Store(tmp_path / "q.db", StoreConfig())
    await store.open()
    writer = StoreWriter(store, max_frames=100, max_delay=0.005, queue_frames=1000, enrich=enrich)  # type: ignore[arg-type]
    try:
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(writer.run(), name="writer")
            await writer.put([frame(i) for i in range(count)], durable=True)
            task.cancel()
        return [r.frame_dict() for r in await store.read()]
    finally:
        await store.close()


async def test_the_scored_frames_are_what_is_stored(tmp_path: Path) -> None:
    rows = await stored(tmp_path, scored, 3)
    assert [r["metrics"] for r in rows] == [{"model.score": 2.0}, {"model.score": 2.1}, {"model.score": 2.2}]


async def test_a_scoring_step_that_breaks_stores_the_frames_unscored(tmp_path: Path,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, "edge.writer"):
        rows = await stored(tmp_path, broken, 3)
    assert [r["sensors"] for r in rows] == [{"temp": 20.0}, {"temp": 21.0}, {"temp": 22.0}]
    assert all("metrics" not in r for r in rows)
    assert "scoring a batch failed; storing it unscored" in caplog.text
