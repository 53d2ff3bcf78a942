"""What every source shares: the sink it feeds, its health record, and backoff.

A source is one unit: a config model with ``kind: Literal[...]``, a class with
``async def run(self) -> None`` that polls or subscribes until cancelled and
reconnects by itself, and a sample config under docs/examples/.
"""

from __future__ import annotations

import abc
import enum
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from shared.configbase import StrictModel
from shared.errors import TwinedgeError
from shared.frame import TelemetryFrame

if TYPE_CHECKING:
    from shared.batch import Document, EdgeEvent

__all__ = ["Backoff", "FrameSink", "Position", "QueueFull", "Source", "SourceHealth", "SourceState"]

log = logging.getLogger(__name__)


class QueueFull(TwinedgeError):
    """The queue refused frames: nothing of them was stored.

    ``reason`` is the drop reason the refused frames are counted under when
    nobody keeps them: ``disk_budget_newest`` (policy drop_newest at the
    budget) or ``disk_full`` (the disk had no room even after the policy).
    """

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Position:
    """Where a source is in its input (an MTConnect agent's instance and next sequence, ...).

    Handed to ``FrameSink.put`` with the data it covers and committed in the same SQLite transaction, so a
    crash or a kill resumes with neither gap nor duplicate. ``key`` names the source's position
    (``mtconnect:<source name>``); ``value`` is the source's own text (JSON), at most 64 KiB.
    """

    key: str
    value: str


class FrameSink(Protocol):
    """Where sources hand their frames. Implemented by the gateway (and by fakes in tests)."""

    async def put(self, frames: Sequence[TelemetryFrame], *, durable: bool = False,
                  events: Sequence[EdgeEvent] = (), documents: Sequence[Document] = (),
                  position: Position | None = None) -> None:
        """Queue frames (and the events, documents and position that go with them) for the store writer.

        ``events``, ``documents`` and ``position`` are stored in the same transaction as ``frames``: all or
        nothing. A position is only ever handed with ``durable=True``.

        Waits while the writer is behind (backpressure: a source that awaits this
        slows down instead of losing data). With ``durable=True`` it also waits
        until the frames' SQLite transaction committed, and raises ``QueueFull``
        when the queue refused them (the caller must not acknowledge them to
        anyone: an MQTT device then keeps them and sends them again).
        """
        ...

    async def reject(self, origin: str, reason: str, payload: bytes | None = None) -> None:
        """Count, log (once per burst) and quarantine input that failed validation."""
        ...

    async def position(self, key: str) -> str | None:
        """The last committed position under ``key``, or None when none was ever stored."""
        ...


class SourceState(enum.StrEnum):
    STARTING = "starting"
    CONNECTED = "connected"
    DEGRADED = "degraded"  # connected, but some devices, registers or nodes fail
    DISCONNECTED = "disconnected"  # retrying
    FAILED = "failed"  # gave up (restart budget spent); the daemon stays up


@dataclass
class SourceHealth:
    """A source's state for `twinedge status`; state changes are logged once."""

    name: str
    kind: str
    state: SourceState = SourceState.STARTING
    since: float = field(default_factory=time.time)
    reason: str | None = None
    last_success: float | None = None
    frames: int = 0
    values: int = 0
    errors: int = 0
    reconnects: int = 0
    retry_at: float | None = None  # when the next attempt is due (epoch), if the source says
    detail: dict[str, Any] = field(default_factory=dict)
    cause: str | None = None  # what kind of reason it is, where the source knows: "certificate"
    # Told of every change that is logged: (health, state before, since when, retry_in). The gateway's event log.
    observer: Callable[[SourceHealth, SourceState, float, float | None], None] | None = field(
        default=None, repr=False, compare=False)

    def set_state(self, state: SourceState, reason: str | None = None, *, retry_in: float | None = None,
                  cause: str | None = None) -> None:
        """Record the state; logged only when state or reason change, so a retry loop logs once.

        ``retry_in`` (seconds to the next attempt) is kept apart from the reason for that purpose.
        ``cause`` says what kind of reason it is, where the source knows ("certificate": the server
        rejected our certificate).
        """
        self.retry_at = None if retry_in is None else time.time() + retry_in
        if state == self.state and reason == self.reason:
            return
        before, before_since = self.state, self.since
        self.state, self.reason, self.since, self.cause = state, reason, time.time(), cause
        level = logging.INFO if state in (SourceState.CONNECTED, SourceState.STARTING) else logging.WARNING
        retry = f"; retrying in {retry_in:.1f} s" if retry_in is not None else ""
        if reason:
            log.log(level, "source %s is %s: %s%s", self.name, state.value, reason, retry)
        else:
            log.log(level, "source %s is %s%s", self.name, state.value, retry)
        if self.observer is not None:
            self.observer(self, before, before_since, retry_in)

    def record_success(self, frames: int, values: int) -> None:
        self.frames += frames
        self.values += values
        self.last_success = time.time()

    def snapshot(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "state": self.state.value,
            "since": self.since,
            "reason": self.reason,
            "last_success": self.last_success,
            "frames": self.frames,
            "values": self.values,
            "errors": self.errors,
            "reconnects": self.reconnects,
            "retry_at": self.retry_at,
            "detail": self.detail,
        }


class Backoff:
    """Capped exponential backoff with full jitter in [delay/2, delay]."""

    def __init__(self, initial: float = 0.5, maximum: float = 30.0, factor: float = 2.0) -> None:
        self.initial, self.maximum, self.factor = initial, maximum, factor
        self._next = initial

    def next_delay(self) -> float:
        delay = self._next
        self._next = min(self.maximum, self._next * self.factor)
        return random.uniform(delay / 2, delay)

    def reset(self) -> None:
        self._next = self.initial


class Source(abc.ABC):
    """A data source. ``run`` returns only when cancelled; transport errors are retried inside."""

    kind: ClassVar[str]

    def __init__(self, config: StrictModel, sink: FrameSink) -> None:
        self.config = config
        self.sink = sink
        self.health = SourceHealth(name=self.name, kind=self.kind)

    @property
    def name(self) -> str:
        return str(getattr(self.config, "name"))  # noqa: B009 - every source config has a name

    @abc.abstractmethod
    async def run(self) -> None:
        """Poll or subscribe until cancelled; reconnect with backoff on transport errors."""
