"""One device's readings as a model reads them: the last value of every sensor carried forward, and windows.

A Modbus register with a deadband is left out of a frame while it holds still, and an MQTT device may send only
what changed: the value a frame leaves out is the one last seen for that device. A frame whose model sensors have
never all been seen, or hold a value that is not a number, completes no row (counted as ``incomplete``).

In window mode the stream keeps the last ``window.length`` readings in a ring and completes a row every
``window.step`` frames once the ring is full. A frame that is not ``window.interval_s`` after the one before it
(within the tolerance; ``shared.modelschema.check_timestamps``) is a gap: the window restarts at that frame and the
gap is counted. A cycle in which no value moved past its deadband sends no frame at all, which reads as a gap.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["Completed", "InputStream"]

Reading = list[float]
# (index of the frame in the batch, the readings that make the row: one frame's, or a window's)
Completed = tuple[int, list[Reading]]


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

    def push(self, index: int, ts: float, values: dict[str, Any]) -> Completed | None:
        """The row this frame completes, if any. ``values`` are the device's carried-forward readings."""
        reading = self._reading(values)
        if reading is None:
            self.incomplete += 1
            if self.window > 1:
                self._restart()
            return None
        if self.window == 1:
            return index, [reading]
        if self._last_ts is not None and self._check_gap is not None and not self._check_gap(self._last_ts, ts):
            self.gaps += 1
            self._restart()
        self._last_ts = ts
        self._ring.append(reading)
        self._due -= 1
        if self._due > 0:
            return None
        self._due = self.step
        return index, list(self._ring)

    def _restart(self) -> None:
        self._ring.clear()
        self._last_ts = None
        self._due = self.window

    def _reading(self, values: dict[str, Any]) -> Reading | None:
        # ``+ 0.0`` makes a float of a number (a bool too: coils read as 0 and 1) and raises TypeError for a text
        # or a missing value (None): one comprehension, on the data path for every frame.
        get = values.get
        try:
            return [get(name) + 0.0 for name in self.sensors]  # type: ignore[operator]
        except TypeError:
            return None
