"""Which stored frames the uplink sends next: live data first while a backlog drains behind it.

Pure logic, no I/O: the planner turns its state (where the backlog ends, the
batch size) into the store reads to try, in order. The uplink runs them and
sends the first batch that is not empty.

- Normally one read: the oldest frames.
- After an outage (a retry), if more than ``split_above`` frames wait, the
  queue is split at its newest frame: frames stored later are *live* and go
  first; frames up to the split are the *backlog*, sent when no live frame waits.
- While one batch is in flight, the next one is read ahead: the same reads,
  skipping the rows in flight (the cloud acknowledges them, so the store will
  no longer have them).
- A batch the cloud refuses as too large or invalid halves the batch size, down
  to single frames; each acknowledged batch doubles it again up to the maximum.
- Model alerts go ahead of frames: every batch carries the oldest waiting alerts
  first (up to ``alerts_max``), and a batch of alerts alone goes when no frame
  waits. A refused batch that carried both is narrowed in turn: its alerts
  alone first (halved down to a single alert, which alone is quarantined), then
  its frames alone; once those are acknowledged, alerts ride along again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["ALERTS_PER_BATCH", "BatchPlanner", "Read"]

ALERTS_PER_BATCH = 500  # about 150 kB: ahead of every batch, without crowding the frames out


@dataclass(frozen=True, slots=True)
class Read:
    """One store read: frames with after_seq < seq <= through_seq (None: no upper end)."""

    after_seq: int
    through_seq: int | None
    backlog: bool


class BatchPlanner:
    def __init__(self, *, batch_max_frames: int, split_above: int, alerts_max: int = ALERTS_PER_BATCH) -> None:
        self.batch_max_frames = batch_max_frames
        self.alerts_max = alerts_max
        self.alert_limit = alerts_max  # alerts per batch now
        # While a refused batch is narrowed down: which of its parts goes alone (None: both together).
        self.alone: Literal["alerts", "frames"] | None = None
        self.split_above = split_above
        self.limit = batch_max_frames  # frames per batch now
        self.backlog_through: int | None = None  # the newest seq of the backlog while one drains
        self._outage = True  # at start, as after an outage: look at the queue before choosing

    # --- what to read ----------------------------------------------------------

    def reads(self, skip: tuple[int, int] | None = None) -> list[Read]:
        """The reads to try in order; ``skip`` is the (first, last) seq of a batch in flight."""
        split = self.backlog_through
        if split is None:
            return [Read(_after(0, None, skip), None, backlog=False)]
        return [
            Read(_after(split, None, skip), None, backlog=False),
            Read(_after(0, split, skip), split, backlog=True),
        ]

    # --- what happened ---------------------------------------------------------

    @property
    def outage(self) -> bool:
        """True until the planner has looked at the queue after an outage (see ``split_due``)."""
        return self._outage

    def on_retry(self) -> None:
        """A send failed and is retried: the queue may have grown; look again before the next batch."""
        self._outage = True

    def split_due(self, depth: int) -> bool:
        """After an outage: is the queue long enough (``depth`` frames) to send live data ahead of it?"""
        self._outage = False
        return depth > self.split_above

    def start_backlog(self, newest_seq: int | None) -> None:
        """Frames up to ``newest_seq`` are the backlog; later ones are live."""
        self.backlog_through = newest_seq

    def backlog_delivered(self) -> None:
        self.backlog_through = None

    def on_refused(self, batch_frames: int) -> bool:
        """The cloud refused a batch for good. True when it was halved (try again smaller); False: quarantine it."""
        if batch_frames <= 1:
            return False
        self.limit = max(1, batch_frames // 2)
        return True

    def on_acknowledged(self) -> None:
        self.limit = min(self.batch_max_frames, self.limit * 2)

    # --- alerts ahead of frames ------------------------------------------------

    @property
    def sends_alerts(self) -> bool:
        return self.alone != "frames"

    @property
    def sends_frames(self) -> bool:
        return self.alone != "alerts"

    def nothing_alone(self) -> None:
        """Nothing of the part that goes alone is waiting: go on with the other part, then with both."""
        self.alone = "frames" if self.alone == "alerts" else None

    def on_batch_refused(self, alerts: int, frames: int) -> bool:
        """The cloud refused a batch of ``alerts`` and ``frames`` for good.

        True: try again smaller (or with one part alone); False: the batch is down to one alert
        or one frame, which goes to the quarantine.
        """
        if alerts and frames:
            self.alone = "alerts"  # the alerts alone first: if they go through, the frames are narrowed next
            return True
        if alerts:
            if alerts <= 1:
                return False
            self.alert_limit = max(1, alerts // 2)
            return True
        return self.on_refused(frames)

    def on_batch_acknowledged(self, alerts: int, frames: int) -> None:
        if alerts:
            self.alert_limit = min(self.alerts_max, self.alert_limit * 2)
        if frames:
            self.on_acknowledged()
        if self.alone == "alerts" and not frames:
            self.alone = "frames"
        elif self.alone == "frames" and frames:
            self.alone = None

    def on_quarantined(self, alerts: int, frames: int) -> None:
        """A single alert or frame went to the quarantine: the narrowing of that part is done."""
        if frames and self.alone == "frames":
            self.alone = None


def _after(lo: int, hi: int | None, skip: tuple[int, int] | None) -> int:
    """Where a read of (lo, hi] starts when the batch ``skip`` is in flight.

    A batch holds the oldest rows of the range it was read from, so the next
    read of that range starts behind it.
    """
    if skip is None:
        return lo
    first, last = skip
    return last if lo < first and (hi is None or first <= hi) else lo
