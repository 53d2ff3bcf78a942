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
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BatchPlanner", "Read"]


@dataclass(frozen=True, slots=True)
class Read:
    """One store read: frames with after_seq < seq <= through_seq (None: no upper end)."""

    after_seq: int
    through_seq: int | None
    backlog: bool


class BatchPlanner:
    def __init__(self, *, batch_max_frames: int, split_above: int) -> None:
        self.batch_max_frames = batch_max_frames
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


def _after(lo: int, hi: int | None, skip: tuple[int, int] | None) -> int:
    """Where a read of (lo, hi] starts when the batch ``skip`` is in flight.

    A batch holds the oldest rows of the range it was read from, so the next
    read of that range starts behind it.
    """
    if skip is None:
        return lo
    first, last = skip
    return last if lo < first and (hi is None or first <= hi) else lo
