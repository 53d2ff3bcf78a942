"""Progress of long training steps, as plain lines on stderr (``train: fitting: epoch 40/200, loss 0.0123``)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["Progress"]


class Progress:
    """Prints a step's progress at most every ``every_s`` seconds, and always its first and last line."""

    def __init__(self, stream: TextIO | None = None, every_s: float = 1.0, quiet: bool = False) -> None:
        self._stream = stream
        self._every = every_s
        self._quiet = quiet
        self._last = 0.0

    def say(self, message: str) -> None:
        if not self._quiet:
            print(f"train: {message}", file=self._stream or sys.stderr, flush=True)
        self._last = time.monotonic()

    def tick(self, message: str) -> None:
        """A line of a step whose end is not known in advance, throttled like ``step``."""
        if time.monotonic() - self._last >= self._every:
            self.say(message)

    def step(self, what: str, done: int, total: int, detail: str = "") -> None:
        """``what: done/total (pct)``, throttled; the line for ``done == total`` is always printed."""
        now = time.monotonic()
        if done < total and now - self._last < self._every:
            return
        pct = 100.0 * done / total if total else 100.0
        self.say(f"{what}: {done:,}/{total:,} ({pct:.0f} %){', ' + detail if detail else ''}")
