"""The edge's event log: what an operator must know, recorded once, rate-limited, stored and sent to the cloud.

Parts of the daemon call ``EventRecorder.record`` (a plain call, never waits)
when something a person should hear of happens: a source lost, recovered or
failed, the queue applying its full-disk policy, a model swapped or rejected,
drift changing level, the edge starting and stopping. The recorder's task
writes them to the queue file (``Store.append_events``) in small batches and
tells its listeners (the uplink, `twinedge events --follow`).

Each event has a level, for whom it is written: ``operator`` (plain sentences
for the person at the machine), ``technical`` (for the technician: connections
made, what a policy did), ``developer`` (detail for a bug report).

Repeats are limited per subject (a source, a model, the queue): at most
``burst`` events per ``window`` seconds. Beyond that they are counted, and when
the window ends the last one is recorded with "(and N more like it in the last
60 s)", so that a flapping source writes a handful of events, and the last word
on it is still its present state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from edge.queuefiles import StoreError
from edge.sources.base import SourceHealth, SourceState
from shared.batch import MAX_EVENT_MESSAGE, MAX_NAME, EdgeEvent, EventLevel

__all__ = ["EventRecorder"]

log = logging.getLogger(__name__)

BURST = 5  # events per subject and window before repeats are only counted
WINDOW = 60.0
PENDING_MAX = 1000  # events waiting in memory for the queue file (a burst of many subjects at once)
MAX_DETAILS = 32
MAX_DETAIL_TEXT = 1024
Listener = Callable[[Sequence[EdgeEvent]], Awaitable[None]]


@dataclass
class _Subject:
    """The repeats of one subject within the current window."""

    started: float
    count: int = 0
    held: EdgeEvent | None = None  # the newest event not recorded, and how many were not
    held_count: int = 0


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "\u2026"


def _detail(value: Any) -> str | int | float | bool | None:
    """A detail as plain data the wire takes: numbers out of range and anything else become text."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if abs(value) < 2**63 else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    return _cut(str(value), MAX_DETAIL_TEXT)


class EventRecorder:
    """Records events for one edge; ``run()`` writes them to ``store`` until cancelled, ``flush()`` at stop."""

    def __init__(self, store: Any, *, edge_id: str, burst: int = BURST, window: float = WINDOW,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.edge_id = edge_id
        self.burst = burst
        self.window = window
        self.clock = clock
        self.recorded = 0
        self.suppressed = 0
        self.lost_in_memory = 0
        self._pending: deque[EdgeEvent] = deque()
        self._subjects: dict[str, _Subject] = {}
        self._listeners: list[Listener] = []
        self._wake = asyncio.Event()

    def on_stored(self, listener: Listener) -> None:
        """``listener`` is awaited with the events of each write, once they are in the queue file."""
        self._listeners.append(listener)

    async def announce(self, events: Sequence[EdgeEvent]) -> None:
        """Tell the listeners of events stored by another path (a source's, with its data, by the store writer)."""
        for listener in self._listeners:
            await listener(list(events))

    # --- recording -------------------------------------------------------------

    def record(self, kind: str, level: EventLevel, message: str, *, device: str | None = None,
               source: str | None = None, details: Mapping[str, Any] | None = None,
               subject: str | None = None) -> None:
        """Record an event (rate-limited per ``subject``: by default the kind and what it is about)."""
        now = self.clock()
        event = EdgeEvent(
            ts=now, level=level, kind=kind, edge=self.edge_id, device=device,
            source=_cut(source, MAX_NAME) if source is not None else None,
            message=_cut(message, MAX_EVENT_MESSAGE),
            details={_cut(str(k), MAX_NAME): _detail(v) for k, v in list((details or {}).items())[:MAX_DETAILS]},
        )
        key = subject or f"{kind}\n{source}\n{device}"
        state = self._subjects.get(key)
        if state is not None and now - state.started >= self.window:
            self._release(state)
            state = None
        if state is None:
            state = self._subjects[key] = _Subject(now)
            if len(self._subjects) > 10_000:  # subjects seen once long ago
                self._expire(now, everything=True)
        if state.count < self.burst:
            state.count += 1
            self._queue(event)
        else:
            state.held, state.held_count = event, state.held_count + 1
            self.suppressed += 1

    def source_changed(self, health: SourceHealth, before: SourceState, before_since: float,
                       retry_in: float | None) -> None:
        """A source's state or reason changed (``SourceHealth.observer``): an event in plain words."""
        state, name = health.state, health.name
        where = health.detail.get("endpoint") or health.detail.get("url")
        on = f" on {where}" if where else ""
        retry = f"; retrying in {max(retry_in, 1.0):.0f} s" if retry_in is not None else "; retrying"
        details = {"state": state.value, "previous": before.value, "reason": health.reason,
                   "endpoint": where, "retry_in_s": None if retry_in is None else round(retry_in, 1)}
        subject = f"source\n{name}"
        if state == before:
            if state == SourceState.DISCONNECTED and health.cause == "certificate":
                self.record("certificate_rejected", "operator", f"{name}: {health.reason}", source=name,
                            details=details, subject=subject)
            return
        if state == SourceState.CONNECTED:
            if before == SourceState.STARTING:
                self.record("source_connected", "technical", f"{name} connected{on}", source=name,
                            details=details, subject=subject)
            else:
                down = self.clock() - before_since
                after = f" after {_duration(down)}" if before != SourceState.DEGRADED else ""
                self.record("source_recovered", "operator", f"{name} answers again{on}{after}", source=name,
                            details={**details, "down_s": round(down, 1)}, subject=subject)
        elif state == SourceState.DISCONNECTED:
            if health.cause == "certificate":
                self.record("certificate_rejected", "operator", f"{name}: {health.reason}", source=name,
                            details=details, subject=subject)
            elif before in (SourceState.CONNECTED, SourceState.DEGRADED):
                self.record("source_lost", "operator", f"{name} stopped answering{on}{retry}", source=name,
                            details=details, subject=subject)
            else:
                self.record("source_lost", "operator", f"{name} does not answer{on}{retry} ({health.reason})",
                            source=name, details=details, subject=subject)
        elif state == SourceState.DEGRADED:
            self.record("source_degraded", "operator", f"{name} answers, but not every read: {health.reason}",
                        source=name, details=details, subject=subject)
        elif state == SourceState.FAILED:
            self.record("source_failed", "operator", f"{name} stopped and is not restarted: {health.reason}",
                        source=name, details=details, subject=subject)

    def _queue(self, event: EdgeEvent) -> None:
        if len(self._pending) >= PENDING_MAX:
            self._pending.popleft()
            self.lost_in_memory += 1
        self._pending.append(event)
        self.recorded += 1
        self._wake.set()

    def _release(self, state: _Subject) -> None:
        """The window of a subject ended: its newest held event goes, saying how many were held."""
        if state.held is None:
            return
        more = f" (and {state.held_count - 1} more like it in the last {self.window:.0f} s)" \
            if state.held_count > 1 else ""
        event = state.held
        message = _cut(event.message, MAX_EVENT_MESSAGE - len(more)) + more
        self._queue(event.model_copy(update={"message": message,
                                             "details": {**event.details, "repeats": state.held_count}}))
        state.held, state.held_count = None, 0

    def _expire(self, now: float, *, everything: bool = False) -> float | None:
        """Release and forget the subjects whose window ended; when the next one ends (None: none waits)."""
        due: float | None = None
        for key, state in list(self._subjects.items()):
            if everything or now - state.started >= self.window:
                self._release(state)
                del self._subjects[key]
            elif state.held is not None:
                end = state.started + self.window
                due = end if due is None else min(due, end)
        return due

    # --- writing ---------------------------------------------------------------

    async def run(self) -> None:
        """Write recorded events to the queue file as they come; release held repeats when their window ends."""
        while True:
            due = self._expire(self.clock())
            await self.flush()
            self._wake.clear()
            if self._pending:
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(None if due is None else max(0.05, due - self.clock())):
                    await self._wake.wait()

    async def flush(self) -> None:
        """Write what is recorded now."""
        while self._pending:
            batch = list(self._pending)
            self._pending.clear()
            try:
                await self.store.append_events(batch)
            except StoreError as exc:
                log.warning("edge events are kept in memory for now: %s", exc)
                self._pending.extendleft(reversed(batch))
                await asyncio.sleep(1.0)
                continue
            for listener in self._listeners:
                await listener(batch)

    async def close(self) -> None:
        """At stop: release every held repeat and write everything (bounded by the caller)."""
        self._expire(self.clock(), everything=True)
        await self.flush()


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
