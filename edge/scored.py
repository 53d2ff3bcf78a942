"""A batch of frames with the metrics that scoring added, kept beside the frames rather than copied into them.

The inference engine scores a batch before the store writer writes it. Copying every scored frame into a new frame
object that carries its score cost more than the model run itself; instead the engine notes, per frame, the metrics
it adds, and the store merges them into the frame's encoded form as it writes the batch
(``ScoredFrames.encoded``). Whoever reads the batch as frames (the live tail, the MQTT republish) gets each frame
with its metrics, made when it is read.

A frame already holding ``MAX_METRICS`` metrics gets no new one (unless scoring only replaces metrics it holds):
it is stored as it came.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import overload

import msgpack

from shared.frame import MAX_METRICS, TelemetryFrame

__all__ = ["ScoredFrames", "merged_metrics"]


def merged_metrics(metrics: dict[str, float], added: dict[str, float]) -> dict[str, float]:
    """A frame's metrics with ``added`` over them; its own alone where they would pass ``MAX_METRICS``."""
    if not metrics:
        return added
    if len(metrics) + len(added) <= MAX_METRICS or all(k in metrics for k in added):
        return {**metrics, **added}
    return metrics


class ScoredFrames(Sequence[TelemetryFrame]):
    """``frames`` in their order, frame ``i`` with ``added[i]`` (None: nothing added) over its own metrics."""

    __slots__ = ("added", "frames")

    def __init__(self, frames: Sequence[TelemetryFrame]) -> None:
        self.frames = frames
        self.added: list[dict[str, float] | None] = [None] * len(frames)

    def __len__(self) -> int:
        return len(self.frames)

    def _frame(self, index: int) -> TelemetryFrame:
        frame, added = self.frames[index], self.added[index]
        if added is None:
            return frame
        metrics = merged_metrics(frame.metrics, added)
        return frame if metrics is frame.metrics else frame.with_metrics(metrics)

    @overload
    def __getitem__(self, index: int) -> TelemetryFrame: ...

    @overload
    def __getitem__(self, index: slice) -> list[TelemetryFrame]: ...

    def __getitem__(self, index: int | slice) -> TelemetryFrame | list[TelemetryFrame]:
        if isinstance(index, slice):
            return [self._frame(i) for i in range(len(self.frames))[index]]
        return self._frame(index)

    def __iter__(self) -> Iterator[TelemetryFrame]:
        return (self._frame(i) for i in range(len(self.frames)))

    def encoded(self) -> list[bytes]:
        """Each frame as the codec writes it (``shared.codec.encode_frame``), with its added metrics."""
        pack = msgpack.Packer(use_bin_type=True).pack  # one packer for the batch: packb makes one per frame
        out = []
        for frame, added in zip(self.frames, self.added, strict=True):
            wire = frame.to_wire()
            if added is not None:
                wire["metrics"] = merged_metrics(frame.metrics, added) if frame.metrics else added
            out.append(pack(wire))
        return out
