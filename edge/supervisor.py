"""Keeps the daemon's tasks running: a task that crashes is started again with backoff, within a budget.

Every long-running part of the gateway (store writer, quarantine writer, MQTT
side, uplink, control socket, systemd notifier, each source) runs under a
``Supervisor``. A crash is logged once with its reason and the task is started
again after a jittered delay that grows with each crash. More than ``budget``
crashes within ``window`` seconds mean the cause is not passing: ``run``
returns the last reason and the caller decides (a source is marked failed and
the daemon stays up; a part the daemon cannot work without ends it with exit
status 1, so that systemd restarts the whole service).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable

from edge.sources.base import Backoff
from shared.errors import TwinedgeError

__all__ = ["RESTART_BUDGET", "RESTART_WINDOW", "STEADY_RUN", "GaveUp", "Supervisor"]

log = logging.getLogger(__name__)

RESTART_BUDGET = 5  # crashes allowed within RESTART_WINDOW
RESTART_WINDOW = 600.0
STEADY_RUN = 60.0  # a task that ran this long before it crashed is restarted after the shortest delay


class GaveUp:
    """Why a supervisor stopped restarting its task: the crash count and the last reason."""

    def __init__(self, crashes: int, reason: str) -> None:
        self.crashes = crashes
        self.reason = reason

    def __str__(self) -> str:
        return f"crashed {self.crashes} times in {RESTART_WINDOW / 60:.0f} min (last: {self.reason})"


class Supervisor:
    """Runs one named task again and again while it crashes, up to the restart budget."""

    def __init__(
        self,
        name: str,
        *,
        delay: float = 1.0,
        budget: int = RESTART_BUDGET,
        window: float = RESTART_WINDOW,
        on_restart: Callable[[str, float], None] | None = None,
        fatal: Callable[[Exception], bool] = lambda exc: False,
        steady_run: float = STEADY_RUN,
    ) -> None:
        self.name = name
        self.budget = budget
        self.window = window
        self.backoff = Backoff(initial=delay, maximum=60 * delay)
        self.on_restart = on_restart
        self.fatal = fatal
        self.steady_run = steady_run
        self.restarts = 0
        self._crashes: deque[float] = deque()

    async def run(self, target: Callable[[], Awaitable[None]]) -> GaveUp:
        """Run ``target`` until the budget is spent; CancelledError and fatal errors go through."""
        while True:
            started = time.monotonic()
            try:
                await target()
                reason = "stopped by itself"
            except Exception as exc:  # noqa: BLE001 - the supervisor is where unexpected errors land
                if self.fatal(exc):
                    raise
                reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                log.error("%s crashed: %s", self.name, reason, exc_info=not _ours(exc))
            now = time.monotonic()
            if now - started >= self.steady_run:
                self.backoff.reset()  # it ran well for a while: this crash is not part of a series
            self._crashes.append(now)
            while self._crashes and now - self._crashes[0] > self.window:
                self._crashes.popleft()
            if len(self._crashes) > self.budget:
                return GaveUp(len(self._crashes), reason)
            delay = self.backoff.next_delay()
            self.restarts += 1
            if self.on_restart is not None:
                self.on_restart(reason, delay)
            log.warning("restarting %s in %.1f s", self.name, delay)
            await asyncio.sleep(delay)


def _ours(exc: BaseException) -> bool:
    """Our own errors carry a sentence for the operator; anything else is a bug worth its traceback."""
    return isinstance(exc, TwinedgeError)
