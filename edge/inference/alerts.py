"""The alert policy of an anomaly model on one device: threshold crossings with a minimum duration and hysteresis.

Scores arrive with their frames' timestamps; the policy never reads a clock, so a replay gives the same alerts.

- **Raise** once the score has stayed at or above the model's threshold for ``min_duration_s`` (0: the first such
  row). The raised event's ``ts`` is when the score first reached the threshold, its ``score`` the one at raising.
- **Clear** once the score has stayed below the clearing level for ``clear_duration_s`` (0: the first such row).
  The clearing level is ``threshold * clear_ratio``; for a negative threshold, the same distance below it
  (``threshold - |threshold| * (1 - clear_ratio)``), so the level is always at or under the threshold. A score
  between the two keeps the alert as it is: a score that hovers at the threshold raises one alert, not a flurry.
  The cleared event's ``ts`` is when the score first went under the level, its ``score`` the peak of the alert.
- An alert still raised when its model leaves the device (replaced, rolled back, taken out after failures) is
  cleared then, with the reason in its message.

Both events of an alert carry the same ``alert_id``, a random 128-bit hex string.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from shared.batch import AlertEvent

__all__ = ["AlertPolicy", "AlertSettings", "clear_level"]

_MESSAGE = 256


@dataclass(frozen=True, slots=True)
class AlertSettings:
    min_duration_s: float = 0.0
    clear_ratio: float = 0.8
    clear_duration_s: float = 0.0


def clear_level(threshold: float, clear_ratio: float) -> float:
    """The score under which a raised alert starts to clear (see the module docstring)."""
    return threshold - abs(threshold) * (1.0 - clear_ratio)


def _seconds(value: float) -> str:
    return f"{value:.0f} s" if value >= 10 else f"{value:.3g} s"


def _score(value: float) -> str:
    return f"{value:.4g}"


class AlertPolicy:
    """Feed ``(ts, score)`` rows in time order; get the raised and cleared events they cause."""

    def __init__(self, device_id: str, model: str, version: int, threshold: float, settings: AlertSettings) -> None:
        self.device_id = device_id
        self.model = model
        self.version = version
        self.threshold = threshold
        self.settings = settings
        self.clear_below = clear_level(threshold, settings.clear_ratio)
        self._above_since: float | None = None  # the score reached the threshold then (not yet raised)
        self._alert_id: str | None = None  # the raised alert, if one is
        self._raised_at = 0.0
        self._peak = 0.0
        self._below_since: float | None = None  # a raised alert's score went under the clearing level then
        self._last_ts: float | None = None

    @property
    def active(self) -> bool:
        return self._alert_id is not None

    def feed(self, ts: float, score: float) -> AlertEvent | None:
        """The event this row causes, if any."""
        self._last_ts = ts
        if self._alert_id is None:
            return self._while_quiet(ts, score)
        return self._while_raised(ts, score)

    def feed_rows(self, ts_of: Callable[[int], float], scores: Sequence[float]) -> list[AlertEvent]:
        """``feed`` for each row in order (``ts_of(i)`` is row i's time): the events they cause. A run of rows that
        changes nothing (all under the threshold while quiet, all at or above the clearing level while raised) is
        judged at once."""
        if not scores:
            return []
        quiet = self._alert_id is None and max(scores) < self.threshold
        if quiet or (self._alert_id is not None and min(scores) >= self.clear_below):
            if quiet:
                self._above_since = None
            else:
                self._peak, self._below_since = max(self._peak, max(scores)), None
            self._last_ts = ts_of(len(scores) - 1)
            return []
        return [event for i, score in enumerate(scores) if (event := self.feed(ts_of(i), score)) is not None]

    def _while_quiet(self, ts: float, score: float) -> AlertEvent | None:
        if score < self.threshold:
            self._above_since = None
            return None
        if self._above_since is None:
            self._above_since = ts
        lasted = ts - self._above_since
        if lasted < self.settings.min_duration_s:
            return None
        self._alert_id = uuid.uuid4().hex
        self._raised_at, self._peak, self._below_since = self._above_since, score, None
        self._above_since = None
        held = f" for {_seconds(lasted)}" if lasted > 0 else ""
        return self._event("raised", self._raised_at, score, f"{self.device_id}: anomaly score {_score(score)} at or "
                           f"above {_score(self.threshold)} (model {self.model} v{self.version}){held}")

    def _while_raised(self, ts: float, score: float) -> AlertEvent | None:
        self._peak = max(self._peak, score)
        if score >= self.clear_below:
            self._below_since = None
            return None
        if self._below_since is None:
            self._below_since = ts
        if ts - self._below_since < self.settings.clear_duration_s:
            return None
        return self._clear(self._below_since, f"{self.device_id}: anomaly score back under "
                           f"{_score(self.clear_below)} (model {self.model} v{self.version}) after "
                           f"{_seconds(max(0.0, self._below_since - self._raised_at))}; peak {_score(self._peak)}")

    def close(self, reason: str) -> AlertEvent | None:
        """The model leaves the device: a raised alert is cleared now (at the last row's time), saying why."""
        if self._alert_id is None or self._last_ts is None:
            self._above_since = None
            return None
        return self._clear(self._last_ts, f"{self.device_id}: alert of model {self.model} v{self.version} closed: "
                           f"{reason}; peak {_score(self._peak)}")

    def _clear(self, ts: float, message: str) -> AlertEvent:
        event = self._event("cleared", ts, self._peak, message)
        self._alert_id, self._below_since, self._above_since = None, None, None
        return event

    def _event(self, kind: str, ts: float, score: float, message: str) -> AlertEvent:
        assert self._alert_id is not None
        return AlertEvent(
            alert_id=self._alert_id, event=kind, device_id=self.device_id, ts=ts, model=self.model,
            version=self.version, score=score, threshold=self.threshold, message=message[:_MESSAGE],
        )
