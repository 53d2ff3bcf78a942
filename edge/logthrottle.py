"""Rate-limited log lines: a flood of one problem gives one line per interval, with a count.

Operators read WARNING. A hostile client, a retry loop or a full descriptor table
must not turn into thousands of identical lines (and megabytes of journal). The
first occurrence of a key is logged at once; repeats within the interval are
counted and summarised in one line when it ends:

    refused a connection from 10.0.0.9:40112 on listener plant: limit 900 reached
    refused a connection from 10.0.0.9:40977 on listener plant: limit 900 reached (811 more like this in the last 60 s)

``install_loop_exception_handler`` routes asyncio's own error reports (a failed
``accept()``, a task that died with nobody awaiting it) through the same limit.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

__all__ = ["Throttle", "install_loop_exception_handler"]

MAX_KEYS = 1000  # keys may come from the network (addresses, user names): bounded


@dataclass
class _Window:
    start: float
    suppressed: int = 0
    level: int = logging.WARNING
    message: str = ""
    args: tuple[Any, ...] = ()
    timer: asyncio.TimerHandle | None = None


class Throttle:
    """At most one line per key per ``interval`` seconds, plus a summary of what was held back."""

    def __init__(self, logger: logging.Logger, interval: float = 60.0) -> None:
        self.logger = logger
        self.interval = interval
        self._windows: dict[str, _Window] = {}

    def warning(self, key: str, message: str, *args: Any, exc_info: Any = None) -> bool:
        return self.log(logging.WARNING, key, message, *args, exc_info=exc_info)

    def log(self, level: int, key: str, message: str, *args: Any, exc_info: Any = None) -> bool:
        """Log now (True) or count it for the summary (False)."""
        now = time.monotonic()
        window = self._windows.get(key)
        if window is not None and now - window.start >= self.interval:
            self._flush(key)  # no event loop ran the timer: summarise late rather than never
            window = self._windows.get(key)
        if window is None:
            if len(self._windows) >= MAX_KEYS:
                self.close()
            self._windows[key] = _Window(start=now)
            self.logger.log(level, message, *args, exc_info=exc_info)
            return True
        window.suppressed += 1
        window.level, window.message, window.args = level, message, args
        if window.timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return False
            window.timer = loop.call_later(max(0.0, window.start + self.interval - now), self._flush, key)
        return False

    def _flush(self, key: str) -> None:
        window = self._windows.get(key)
        if window is None:
            return
        if window.timer is not None:
            window.timer.cancel()
            window.timer = None
        if not window.suppressed:
            del self._windows[key]  # the flood is over: the next one is reported at once
            return
        summary = f"{window.message} (%d more like this in the last %.0f s)"
        self.logger.log(window.level, summary, *window.args, window.suppressed, self.interval)
        window.start, window.suppressed = time.monotonic(), 0

    def close(self) -> None:
        """Write the pending summaries and forget every key."""
        for key in list(self._windows):
            self._flush(key)
            window = self._windows.pop(key, None)
            if window is not None and window.timer is not None:
                window.timer.cancel()


def install_loop_exception_handler(loop: asyncio.AbstractEventLoop, logger: logging.Logger) -> Throttle:
    """asyncio reports without floods: OS resource errors in one line, other errors with one traceback
    per kind and interval (they are bugs, and a developer needs the first one)."""
    throttle = Throttle(logger)

    def handle(_loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        message = str(context.get("message") or "unexpected error in the event loop")
        exc = context.get("exception")
        key = f"{message}|{type(exc).__name__}"
        if isinstance(exc, OSError):
            throttle.warning(key, "%s: %s", message, exc)
        elif isinstance(exc, BaseException):
            throttle.log(logging.ERROR, key, "%s: %s: %s", message, type(exc).__name__, exc, exc_info=exc)
        else:
            throttle.warning(key, "%s", message)

    loop.set_exception_handler(handle)
    return throttle
