"""What the store keeps of edge ML: model versions, assignments, alerts and model reports, as both backends give them.

The records here are the store's own (times in integer microseconds), apart
from the wire models of ``shared``: the sync route turns a batch's alert
events and its health's model reports into them. The query of the alert list
(filters, newest first, a cursor) is built here once for both backends, and
``MlStore`` declares the store's methods of this part.
"""

from __future__ import annotations

import abc
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from cloud.storage.keyset import Arguments, decode_keyset_cursor, encode_keyset_cursor, newest_first
from shared.errors import InputError

__all__ = [
    "ALERT_STATES",
    "DRIFTED",
    "SCOPES",
    "AlertEventIn",
    "AlertQuery",
    "AlertRecord",
    "Assignment",
    "AssignmentChange",
    "MlCounts",
    "MlStore",
    "ModelInUse",
    "ModelReportRow",
    "ModelVersion",
    "NewModel",
    "UnknownAlert",
    "UnknownModel",
    "UnknownRule",
    "alert_filter",
    "decode_alert_cursor",
    "encode_alert_cursor",
    "in_use",
]

Scope = Literal["device", "edge", "fleet"]
SCOPES: tuple[Scope, ...] = ("device", "edge", "fleet")
ALERT_STATES = ("open", "cleared", "acknowledged", "unacknowledged")
DRIFTED = ("warn", "drift")


class UnknownModel(InputError):
    """No model of this name, or no such version of it."""


class ModelInUse(InputError):
    """A model version that an assignment still names cannot be deleted."""


class UnknownRule(InputError):
    """No assignment rule for this scope and target."""


class UnknownAlert(InputError):
    """No alert has this id."""


@dataclass(frozen=True, slots=True)
class NewModel:
    """An upload to store: the package whole, what its card says, who sent it and when."""

    name: str
    sha256: str
    kind: str
    schema: str  # JSON
    card: str  # JSON
    package: bytes = field(repr=False)
    uploaded_by: str
    uploaded_at: int


@dataclass(frozen=True, slots=True)
class ModelVersion:
    """A stored model version without its package bytes."""

    name: str
    version: int
    sha256: str
    size: int
    kind: str
    schema: str  # JSON
    card: str  # JSON
    uploaded_by: str
    uploaded_at: int

    def card_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = json.loads(self.card)
        return out

    def schema_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = json.loads(self.schema)
        return out


@dataclass(frozen=True, slots=True)
class Assignment:
    """One rule: the model version that scores a device, an edge's devices, or the fleet (target None)."""

    scope: str  # one of SCOPES
    target: str | None
    model: str
    version: int
    sha256: str
    size: int
    assigned_by: str
    assigned_at: int


def in_use(name: str, version: int, rules: list[Assignment]) -> str:
    where = ", ".join("the fleet" if a.scope == "fleet" else f"{a.scope} {a.target}" for a in rules[:10])
    more = f" and {len(rules) - 10} more" if len(rules) > 10 else ""
    return (f"model {name} version {version} is assigned to {where}{more}; assign another version there "
            "(or unassign) first")


@dataclass(frozen=True, slots=True)
class AssignmentChange:
    """One change of a rule: ``model`` None when the rule was removed, ``previous_model`` None when it was new."""

    scope: str
    target: str | None
    model: str | None
    version: int | None
    previous_model: str | None
    previous_version: int | None
    changed_by: str
    at: int


@dataclass(frozen=True, slots=True)
class AlertEventIn:
    """An alert event of a batch as the store takes it: ``ts`` in µs; ``seq`` the edge's alert sequence."""

    seq: int
    alert_id: str
    event: Literal["raised", "cleared"]
    device: str
    ts: int
    model: str
    version: int
    score: float
    threshold: float | None = None
    label: str | None = None
    message: str | None = None


@dataclass(frozen=True, slots=True)
class AlertRecord:
    """An alert as stored: ``at`` orders the list (raised time, or cleared time while the raised event is
    missing); ``score`` is the score at raising, ``peak`` the peak reported at clearing."""

    id: int
    edge: str
    alert_id: str
    device: str
    model: str
    version: int
    at: int
    raised_ts: int | None
    cleared_ts: int | None
    score: float | None
    peak: float | None
    threshold: float | None
    label: str | None
    message: str | None
    acked_by: str | None
    acked_at: int | None
    ack_comment: str | None

    @property
    def state(self) -> Literal["open", "cleared"]:
        return "open" if self.cleared_ts is None else "cleared"


ALERT_COLUMNS = ("id, edge, alert_id, device, model, version, at, raised_ts, cleared_ts, score, peak, threshold, "
                 "label, message, acked_by, acked_at, ack_comment")


@dataclass(frozen=True, slots=True)
class AlertQuery:
    device: str | None = None
    edge: str | None = None
    state: str | None = None  # one of ALERT_STATES
    start: int | None = None  # at >= start (µs)
    stop: int | None = None  # at < stop (µs)
    limit: int = 100
    after: tuple[int, int] | None = None  # (at, id) of the last alert of the previous page


def alert_filter(query: AlertQuery, param: Callable[[int], str]) -> tuple[str, list[Any]]:
    """The WHERE clause (newest first, after the cursor) and its arguments; ``param(n)`` writes the n-th
    placeholder (1-based) in the backend's style."""
    where: list[str] = []
    arg = Arguments(param)
    if query.device is not None:
        where.append(f"device = {arg(query.device)}")
    if query.edge is not None:
        where.append(f"edge = {arg(query.edge)}")
    where += {"open": ["cleared_ts IS NULL"], "cleared": ["cleared_ts IS NOT NULL"],
              "acknowledged": ["acked_at IS NOT NULL"], "unacknowledged": ["acked_at IS NULL"],
              None: []}[query.state]
    if query.start is not None:
        where.append(f"at >= {arg(query.start)}")
    if query.stop is not None:
        where.append(f"at < {arg(query.stop)}")
    return newest_first("alerts", ALERT_COLUMNS, "at", where, arg, query.after, query.limit), arg.values


def encode_alert_cursor(record: AlertRecord) -> str:
    return encode_keyset_cursor("", record.at, record.id)


def decode_alert_cursor(cursor: str) -> tuple[int, int]:
    """(at, id) of an alert cursor; InputError for one this service did not hand out."""
    return decode_keyset_cursor(cursor, "")


@dataclass(frozen=True, slots=True)
class ModelReportRow:
    """An edge's newest report about the model scoring one device (``psi`` largest first)."""

    edge: str
    device: str
    model: str
    version: int
    sha256: str
    state: str
    message: str
    last_score: float | None
    last_scored_at: float | None
    drift: str
    psi: dict[str, float]
    rows: int
    reported_at: int


@dataclass(frozen=True, slots=True)
class MlCounts:
    """What /metrics shows of edge ML, counted in the database."""

    alerts_open: int
    alerts_unacknowledged: int
    drift: dict[str, int]  # drift level -> devices


class MlStore(abc.ABC):
    """The edge ML part of ``cloud.storage.base.Storage`` (the ingest stores alerts and reports)."""

    # --- model registry ---------------------------------------------------------------
    @abc.abstractmethod
    async def put_model(self, model: NewModel, version: int | None = None) -> tuple[ModelVersion, bool]:
        """Store an upload as the next version of its name (numbers are never given twice); the version
        stored already and False when a package with this SHA-256 is stored already.

        ``version`` stores it under that number instead (copying a database); False and the version
        stored when the name has that version already."""

    @abc.abstractmethod
    async def models(self, name: str | None = None) -> list[ModelVersion]:
        """Every stored version (of ``name`` only, unless None), by name and version."""

    @abc.abstractmethod
    async def model_version(self, name: str, version: int) -> ModelVersion | None: ...

    @abc.abstractmethod
    async def model_package(self, name: str, version: int) -> tuple[str, bytes] | None:
        """(SHA-256, package bytes) of a version, None when unknown."""

    @abc.abstractmethod
    async def delete_model(self, name: str, version: int) -> None:
        """Delete a version; UnknownModel when there is none, ModelInUse (saying where) while assigned."""

    @abc.abstractmethod
    async def assignments(self) -> list[Assignment]:
        """Every rule, with its package's SHA-256 and size, by scope (device, edge, fleet) and target."""

    @abc.abstractmethod
    async def assign(self, scope: str, target: str | None, model: str, version: int, by: str,
                     now_us: int) -> Assignment:
        """Set the rule of a scope target (replacing the one it had) and record the change, in one
        transaction; UnknownModel when the version is not stored."""

    @abc.abstractmethod
    async def unassign(self, scope: str, target: str | None, by: str, now_us: int) -> bool:
        """Remove a rule and record it; False when there was none."""

    @abc.abstractmethod
    async def assignment_changes(self, limit: int) -> list[AssignmentChange]:
        """The newest ``limit`` changes of rules, oldest first."""

    # --- alerts and model reports ------------------------------------------------------
    @abc.abstractmethod
    async def alerts(self, query: AlertQuery) -> list[AlertRecord]:
        """Alerts matching the query, newest first (``at``, then id)."""

    @abc.abstractmethod
    async def alert(self, alert_id: int) -> AlertRecord | None: ...

    @abc.abstractmethod
    async def ack_alert(self, alert_id: int, by: str, comment: str, now_us: int) -> AlertRecord:
        """Acknowledge an alert (once: a second ack changes nothing); UnknownAlert when there is none."""

    @abc.abstractmethod
    async def model_reports(self) -> list[ModelReportRow]:
        """Every edge's newest report per device, by device and edge."""

    @abc.abstractmethod
    async def ml_counts(self) -> MlCounts: ...
