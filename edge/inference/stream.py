"""One device's readings as a model reads them: the last value of every sensor carried forward, and windows.

A Modbus register with a deadband is left out of a frame while it holds still, and an MQTT device may send only
what changed: the value a frame leaves out is the one last seen for that device. A frame whose model sensors have
never all been seen, or hold a value that is not a number, completes no row (counted as ``incomplete``).

In window mode the stream keeps the last ``window.length`` readings in a ring and completes a row every
``window.step`` frames once the ring is full. A frame that is not ``window.interval_s`` after the one before it
(within the tolerance; ``shared.modelschema.check_timestamps``) is a gap: the window restarts at that frame and the
gap is counted. A cycle in which no value moved past its deadband sends no frame at all, which reads as a gap.

The rows a batch completes are gathered in the stream (``push``) and taken as one numpy array (``take``): in frame
mode a row is the carried-forward values, read in one C call and added to one flat list, and whether they are all
numbers is judged once for the whole batch (a batch with a text value among them is judged row by row).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from itertools import chain
from operator import itemgetter
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from shared.frame import TelemetryFrame

__all__ = ["InputStream"]

Reading = list[float]


class InputStream:
    """Turns one device's frames into the readings of complete input rows, in schema sensor order."""

    def __init__(self, sensors: Sequence[str], *, window: int = 1, step: int = 1,
                 check_gap: Callable[[float, float], bool] | None = None) -> None:
        self.sensors = list(sensors)
        self.window = window
        self.step = step
        self._check_gap = check_gap
        self._ring: deque[Reading] = deque(maxlen=window)
        self._last_ts: float | None = None
        self._due = window  # frames until the next row
        self.incomplete = 0  # frames that could complete no row
        self.gaps = 0  # windows restarted at a gap in time
        # the values of the model's sensors, in order, as a tuple (KeyError: one was never seen)
        self._values: Callable[[dict[str, Any]], tuple[Any, ...]] = (
            itemgetter(*self.sensors) if len(self.sensors) > 1 else _one(self.sensors[0]))
        self._indices: list[int] = []  # frames (index in the batch) that completed a row, not taken yet
        # their rows: in frame mode the values one after another (a flat list: numpy reads it fastest, and no
        # object per row is kept), in window mode a window of readings each
        self._rows: list[Any] = []

    def push(self, index: int, ts: float, values: dict[str, Any]) -> bool:
        """Note the row this frame completes, if any. ``values`` are the device's carried-forward readings.

        True when it is the first row since the last ``take``."""
        if self.window == 1:
            try:
                self._rows.extend(self._values(values))
            except KeyError:
                self.incomplete += 1
                return False
            self._indices.append(index)
            return len(self._indices) == 1
        return self._push_window(index, ts, values)

    def push_run(self, frames: Sequence[TelemetryFrame], start: int, values: dict[str, Any], limit: int) -> int:
        """Frame mode: push ``frames[start]`` and the frames right after it of the same device, carrying
        ``values`` forward; stop before a frame (after the first) that brings ``values`` past ``limit`` entries,
        whose values are then already in ``values``. Returns the index of the first frame not pushed.

        The same as ``push`` frame by frame (each frame's sensors added to ``values`` first). This runs for every
        frame a model scores, so the common case, where each frame holds every sensor the model reads and the
        run stays within ``limit``, is done in C loops (``map``) rather than frame by frame."""
        assert self.window == 1
        device_id, end, count = frames[start].device_id, start + 1, len(frames)
        while end < count and frames[end].device_id == device_id:
            end += 1
        sensors = [frame.sensors for frame in frames[start:end]]
        try:
            rows = list(map(self._values, sensors))  # KeyError: a frame leaves a sensor out (deadband)
        except KeyError:
            pass
        else:
            if len(values) + sum(map(len, sensors)) <= limit:
                deque(map(values.update, sensors), maxlen=0)
                self._rows.extend(chain.from_iterable(rows))
                self._indices.extend(range(start, end))
                return end
        update, row, extend, note = values.update, self._values, self._rows.extend, self._indices.append
        for index, readings in enumerate(sensors, start):
            update(readings)
            if len(values) > limit and index > start:
                return index
            try:
                extend(row(values))
            except KeyError:
                self.incomplete += 1
            else:
                note(index)
        return end

    @property
    def pending(self) -> int:
        """Rows pushed and not taken yet."""
        return len(self._indices)

    def _push_window(self, index: int, ts: float, values: dict[str, Any]) -> bool:
        reading = self._reading(values)
        if reading is None:
            self.incomplete += 1
            self._restart()
            return False
        if self._last_ts is not None and self._check_gap is not None and not self._check_gap(self._last_ts, ts):
            self.gaps += 1
            self._restart()
        self._last_ts = ts
        self._ring.append(reading)
        self._due -= 1
        if self._due > 0:
            return False
        self._due = self.step
        self._indices.append(index)
        self._rows.append(list(self._ring))
        return len(self._indices) == 1

    def take(self) -> tuple[list[int], npt.NDArray[np.float64]] | None:
        """The rows pushed since the last call: the frames that completed them (index in the batch) and the rows,
        ``(n, sensors)`` in frame mode, ``(n, length, sensors)`` in window mode. None: no row."""
        import numpy as np

        indices, rows = self._indices, self._rows
        self.discard()
        if self.window > 1:
            return (indices, np.asarray(rows, dtype=np.float64)) if rows else None
        if not rows:
            return None
        k = len(self.sensors)
        matrix = np.array(rows)
        if matrix.dtype.kind not in "biuf":  # a text among the values: judged row by row
            readings = [_numbers(rows[i * k:(i + 1) * k]) for i in range(len(indices))]
            good = [i for i, reading in enumerate(readings) if reading is not None]
            self.incomplete += len(indices) - len(good)
            if not good:
                return None
            indices = [indices[i] for i in good]
            matrix = np.array([readings[i] for i in good])
        return indices, matrix.astype(np.float64, copy=False).reshape(len(indices), k)

    def discard(self) -> None:
        """Forget the rows not taken (a batch whose scoring broke off)."""
        self._indices, self._rows = [], []

    def _restart(self) -> None:
        self._ring.clear()
        self._last_ts = None
        self._due = self.window

    def _reading(self, values: dict[str, Any]) -> Reading | None:
        # ``+ 0.0`` makes a float of a number (a bool too: coils read as 0 and 1) and raises TypeError for a text
        # or a missing value (None): one comprehension, on the data path for every frame of a window model.
        get = values.get
        try:
            return [get(name) + 0.0 for name in self.sensors]  # type: ignore[operator]
        except TypeError:
            return None


def _one(name: str) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    def values(readings: dict[str, Any]) -> tuple[Any, ...]:
        return (readings[name],)

    return values


def _numbers(values: Sequence[Any]) -> Reading | None:
    """The values as floats (a bool reads as 0 or 1); None if one is not a number."""
    try:
        return [value + 0.0 for value in values]
    except TypeError:
        return None
