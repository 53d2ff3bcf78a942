"""The store writer's scoring step (its ``enrich`` seam): scored frames are what is stored, a scoring step that
breaks never holds up the data, and alert events reach the after-commit hooks."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path

import pytest

from edge.config import StoreConfig
from edge.scored import ScoredFrames
from edge.store import Store
from edge.writer import StoreWriter
from shared.batch import AlertEvent
from shared.codec import encode_frame
from shared.frame import MAX_METRICS, TelemetryFrame

T0 = 1_800_000_000.0


def frame(i: int) -> TelemetryFrame:
    return TelemetryFrame(ts=T0 + i, device_id="press-1", sensors={"temp": 20.0 + i})


async def scored(frames: Sequence[TelemetryFrame]) -> tuple[list[TelemetryFrame], list[AlertEvent]]:
    return [f.model_copy(update={"metrics": {"model.score": f.sensors["temp"] / 10}}) for f in frames], []


async def broken(frames: Sequence[TelemetryFrame]) -> tuple[list[TelemetryFrame], list[AlertEvent]]:
    raise RuntimeError("a bug in scoring")


async def scored_beside(frames: Sequence[TelemetryFrame]) -> tuple[ScoredFrames, list[AlertEvent]]:
    """As the inference engine scores: the scores kept beside the frames, every second frame scored."""
    out = ScoredFrames(frames)
    for i in range(0, len(frames), 2):
        out.added[i] = {"model.score": frames[i].sensors["temp"] / 10}
    return out, []


async def stored(tmp_path: Path, enrich: object, count: int | list[TelemetryFrame],
                 seen: list[TelemetryFrame] | None = None) -> list[dict[str, object]]:
    store = Store(tmp_path / "q.db", StoreConfig())
    await store.open()
    writer = StoreWriter(store, max_frames=100, max_delay=0.005, queue_frames=1000, enrich=enrich)  # type: ignore[arg-type]

    async def hook(frames: Sequence[TelemetryFrame]) -> None:
        if seen is not None:
            seen.extend(frames)

    writer.on_commit(hook)
    try:
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(writer.run(), name="writer")
            await writer.put([frame(i) for i in range(count)] if isinstance(count, int) else count, durable=True)
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


async def test_scores_kept_beside_the_frames_are_stored_and_seen_by_the_hooks(tmp_path: Path) -> None:
    own = {f"m{i}": float(i) for i in range(MAX_METRICS)}
    frames = [frame(0).with_metrics({"plc.cycle_ms": 4.0}), frame(1), frame(2).with_metrics(own),
              frame(3), frame(4).with_metrics({**own, "model.score": 0.0})]
    seen: list[TelemetryFrame] = []
    rows = await stored(tmp_path, scored_beside, frames, seen)
    assert [r.get("metrics") for r in rows] == [
        {"plc.cycle_ms": 4.0, "model.score": 2.0},  # its own metrics kept beside the score
        None,  # not scored
        own,  # already holding MAX_METRICS metrics: stored as it came
        None,
        {**own, "model.score": 2.4},  # a score it holds is replaced
    ]
    assert [f.metrics for f in seen] == [r.get("metrics", {}) for r in rows]
    assert [f.sensors for f in seen] == [f.sensors for f in frames]


def test_scored_frames_encode_as_the_codec_encodes_the_scored_frame() -> None:
    frames = [frame(0), frame(1).with_metrics({"plc.cycle_ms": 4.0})]
    out = ScoredFrames(frames)
    out.added[1] = {"model.class": 2.0, "model.confidence": 0.75}
    scored_frame = frames[1].with_metrics({"plc.cycle_ms": 4.0, "model.class": 2.0, "model.confidence": 0.75})
    assert out.encoded() == [encode_frame(frames[0]), encode_frame(scored_frame)]
    assert out[1] == scored_frame and out[0] is frames[0] and out[-1] == scored_frame
    assert out[0:2] == [frames[0], scored_frame] and list(out) == out[:] and len(out) == 2
