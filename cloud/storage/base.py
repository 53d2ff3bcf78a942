"""The storage interface both backends implement, and the query logic they share.

Layout (the same in SQLite and PostgreSQL): ``devices``; ``series`` (one per
device and field, with its latest value kept at ingest); ``frames`` (one row
per reading, unique on ``(device, ts)`` — the dedup key); ``samples`` in long
format ``(series_id, ts, value, text)`` with primary key ``(series_id, ts)``;
``rollups`` (count, exact sum, min, max, first, last per series and bucket of
10 s, 1 min and 1 h, kept at ingest in the same transaction so that an
aggregate over millions of points reads thousands of rows: see
``cloud.storage.rollups``); ``identities`` (hashed tokens of edges and people) and ``edge_status``;
``device_moves`` (who bound which device to which edge, and when);
``assemblies`` (physics uploads, as sent, so that every process finds each);
edge ML (``cloud.storage.registry``): ``model_versions`` (packages whole),
``model_assignments`` and their ``assignment_changes``, ``alerts`` with
``alert_events`` (each event once per edge and alert sequence), and
``model_reports`` (each edge's newest report per device).

Each device belongs to one edge (``devices.owner_edge``): the first edge that
writes it, or the one an admin binds it to. Ingest decides this inside its
transaction and stores nothing of a frame, or an alert, whose device belongs to
another edge.
Times are integer microseconds since the epoch throughout.

A backend implements the small ``_``-free primitives marked abstract; history
paging and aggregate bucketing live here so that both answer alike.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from cloud.documents import DocumentIn
from cloud.storage.derived import BindingRow, DerivedTag, DerivedWrite
from cloud.storage.events import EdgeEventIn, EventQuery, EventRecord
from cloud.storage.registry import AlertEventIn, MlStore, ModelReportRow
from cloud.storage.rollups import LEVELS_US, Partial, RollupRow, exact_float, fold_raw, fold_rollups, plan
from cloud.storage.rows import (
    MINUTE_US,
    CursorError,
    Kind,
    SampleRows,
    build_rows,
    decode_cursor,
    encode_cursor,
    field_kinds,
    frame_columns,
    metric_field,
    us,
)
from shared.batch import EdgeHealth
from shared.errors import InputError, TwinedgeError
from shared.frame import TelemetryFrame

if TYPE_CHECKING:
    from cloud.storage.sessions import SessionRecord

__all__ = [
    "AGG_FUNCS",
    "MINUTE_US",
    "AggRow",
    "AssemblyRecord",
    "AssemblySummary",
    "BadQuery",
    "DeviceExists",
    "DeviceMove",
    "DeviceRecord",
    "DeviceState",
    "EdgeRecord",
    "LEVELS_US",
    "NotSupported",
    "HistoryPage",
    "IngestResult",
    "Ingested",
    "Principal",
    "Readings",
    "RollupRow",
    "SampleRows",
    "SeriesInfo",
    "Storage",
    "StorageError",
    "StorageUnavailable",
    "UnknownDevice",
    "build_rows",
    "field_kinds",
    "frame_columns",
    "metric_field",
    "split_owned",
    "us",
]

AGG_FUNCS = ("mean", "min", "max", "sum", "count", "first", "last")
KNOWN_SERIES_MAX = 100_000  # series whose id a process keeps in memory; past it the cache starts afresh
# What a backend's _ingest returns: the frames newly stored, the sample count, the owner of each
# device of the batch that belongs to another edge, and how many alert events were new.
Ingested = tuple[list[TelemetryFrame], int, dict[str, str], int]
Role = Literal["admin", "operator", "viewer", "edge"]


class StorageError(TwinedgeError):
    """A storage operation failed."""


class StorageUnavailable(StorageError):
    """The database is busy or unreachable right now; the caller may retry later."""


class NotSupported(StorageError):
    """A feature this storage backend does not offer yet."""


class BadQuery(InputError):
    """A query names something the store cannot answer for (a cursor it never handed out, an unknown field)."""


class UnknownDevice(BadQuery):
    """The device has sent no data."""


class DeviceExists(InputError):
    """A device of this name is known already (move it to another edge instead)."""


@dataclass(frozen=True, slots=True)
class SeriesInfo:
    id: int
    field: str
    kind: Kind
    last_ts: int | None = None
    last_value: float | None = None
    last_text: str | None = None

    def render(self, value: float | None, text: str | None) -> bool | float | str | None:
        """A stored value as the API shows it. A field's kind comes from its first value: in a boolean
        field 0 and 1 read as false and true, other numbers stay numbers; in a numeric field a boolean
        reads as 0 or 1."""
        if text is not None:
            return text
        if self.kind == "bool" and (value == 0.0 or value == 1.0):
            return bool(value)
        return value

    def points(self, rows: list[tuple[int, float | str | None]]) -> list[tuple[int, bool | float | str | None]]:
        if self.kind != "bool":
            return rows
        return [(ts, bool(v) if v == 0.0 or v == 1.0 else v) for ts, v in rows]


@dataclass(frozen=True, slots=True)
class IngestResult:
    stored: int
    duplicates: int
    stored_frames: list[TelemetryFrame]
    samples: int = 0
    refused: list[tuple[int, str]] = field(default_factory=list)  # (seq, reason): devices of other edges
    alerts_stored: int = 0
    alerts_duplicate: int = 0
    alerts_refused: list[tuple[int, str]] = field(default_factory=list)  # (alert seq, reason)


@dataclass(frozen=True, slots=True)
class Readings:
    """The frames of a batch, each reading once, in batch order: sequences, frames, timestamps in µs."""

    seqs: list[int]
    frames: list[TelemetryFrame]
    stamps: list[int]

    def __len__(self) -> int:
        return len(self.frames)


@dataclass(frozen=True, slots=True)
class Principal:
    kind: Literal["edge", "user"]
    name: str
    role: Role


@dataclass(frozen=True, slots=True)
class EdgeRecord:
    name: str
    created_at: int
    revoked: bool
    last_seen: int | None = None
    last_seq: int | None = None
    queue_depth: int | None = None
    oldest_age_s: float | None = None
    drops: dict[str, int] = field(default_factory=dict)
    quarantined: int | None = None
    sources: dict[str, str] = field(default_factory=dict)
    frames_stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    clock_skew_s: float | None = None


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    name: str
    owner: str | None  # None: no edge has written it yet; the first one to do so gets it
    last_ts: int | None
    last_edge: str | None


@dataclass(frozen=True, slots=True)
class DeviceMove:
    """One binding of a device to an edge made by an admin (``from_edge`` None: bound before it first sent)."""

    device: str
    from_edge: str | None
    to_edge: str
    by: str
    at: int
    reason: str


@dataclass(frozen=True, slots=True)
class AssemblyRecord:
    """A physics upload as stored: the assembly JSON as sent (meshes inline), its name and checksum."""

    id: str
    name: str
    sha256: str
    size: int
    created: int
    body: bytes = field(repr=False)
    parts: int = 0


@dataclass(frozen=True, slots=True)
class AssemblySummary:
    """One upload as the list shows it: no body."""

    id: str
    name: str
    parts: int
    size: int
    created: int  # µs


@dataclass(frozen=True, slots=True)
class DeviceState:
    device_id: str
    last_ts: int | None
    status: str | None
    edge: str | None
    values: dict[str, tuple[int, bool | float | str | None]]


@dataclass(frozen=True, slots=True)
class HistoryPage:
    device_id: str
    series: list[tuple[SeriesInfo, list[tuple[int, bool | float | str | None]]]]
    next_cursor: str | None


@dataclass(slots=True)
class AggRow:
    """The aggregate of one series in one bucket. ``sum`` is the exact sum rounded once to a double."""

    count: int
    sum: float
    min: float
    max: float
    first_ts: int
    first: float | None
    last_ts: int
    last: float | None

    @classmethod
    def of(cls, p: Partial, first_last: bool) -> AggRow:
        return cls(p[0], exact_float(p[1], p[2]), p[3], p[4], p[5], p[6] if first_last else None, p[7],
                   p[8] if first_last else None)


def split_owned(readings: Readings, edge: str, owners: Mapping[str, str | None]) -> tuple[Readings, dict[str, str]]:
    """The readings of devices that belong to ``edge``, and the owner of each device that belongs to another."""
    refused = {d: o for d, o in owners.items() if o is not None and o != edge}
    if not refused:
        return readings, {}
    kept = Readings([], [], [])
    for seq, frame, stamp in zip(readings.seqs, readings.frames, readings.stamps, strict=True):
        if frame.device_id not in refused:
            kept.seqs.append(seq)
            kept.frames.append(frame)
            kept.stamps.append(stamp)
    return kept, refused


def refusal(device: str, owner: str, edge: str) -> str:
    return (f"device {device} belongs to edge {owner}; an admin can move it with "
            f"`twincloud device move {device} --to {edge}`")


def _first_copies(readings: Readings) -> Readings:
    out = Readings([], [], [])
    seen: set[tuple[str, int]] = set()
    for seq, frame, stamp in zip(readings.seqs, readings.frames, readings.stamps, strict=True):
        if (frame.device_id, stamp) not in seen:
            seen.add((frame.device_id, stamp))
            out.seqs.append(seq)
            out.frames.append(frame)
            out.stamps.append(stamp)
    return out


class Storage(MlStore, abc.ABC):
    """One database behind the API. Every method is a coroutine and never blocks the event loop.
    The edge ML part (models, assignments, alerts, reports) is declared in ``cloud.storage.registry.MlStore``.

    History and aggregates find a device's series (id and kind) in memory after the first query: series
    and devices are never renamed or removed and their ids never change (a device that moves to another
    edge keeps its id). A query that names a field not known yet, or none, looks the device up again, so
    the series that appear later are found.
    """

    backend: str = ""

    def __init__(self) -> None:
        self._known: dict[str, dict[str, SeriesInfo]] = {}  # device -> field -> series (id, field, kind)
        self._known_count = 0

    # --- lifecycle -------------------------------------------------------------------
    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and bring the schema up to date (migrations are versioned and idempotent)."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise StorageUnavailable when the database does not answer."""

    @abc.abstractmethod
    async def schema_version(self) -> int: ...

    # --- ingest ----------------------------------------------------------------------
    async def ingest(
        self,
        edge: str,
        frames: Sequence[tuple[int, TelemetryFrame]],
        health: EdgeHealth | None,
        now_us: int,
        rejected: int = 0,
        last_seq: int | None = None,
        *,
        clock_skew_s: float | None = None,
        check_owner: bool = True,
        alerts: Sequence[AlertEventIn] = (),
        reports: Sequence[ModelReportRow] | None = None,
        events: Sequence[EdgeEventIn] = (),
        documents: Sequence[DocumentIn] = (),
    ) -> IngestResult:
        """Store each reading once (unique on device and timestamp) and record the edge's health.

        Returns how many frames were new and how many were already stored
        (by an earlier batch, or twice in this one), and the frames refused
        because their device belongs to another edge (nothing of them is
        stored). ``last_seq`` is the batch's highest sequence (refused frames
        included), recorded for the edge, with its ``clock_skew_s``.
        ``check_owner=False`` stores frames of any device and binds new ones
        to no edge (copying a database).

        In the same transaction: the ``alerts`` events not stored yet (once per
        edge and alert sequence; refused like frames when their device belongs
        to another edge), and, unless ``reports`` is None, the edge's model
        reports, which replace the ones it sent before; and the edge's ``events`` not stored yet (once per
        edge and event sequence; an event names the edge's own device or source, and is never refused); and the
        edge's ``documents`` not stored yet, with what is read from them (``cloud.storage.documents``).
        """
        readings = Readings([seq for seq, _ in frames], [frame for _, frame in frames],
                            [us(frame.ts) for _, frame in frames])
        per_device: dict[str, list[int]] = {}
        for frame, stamp in zip(readings.frames, readings.stamps, strict=True):
            per_device.setdefault(frame.device_id, []).append(stamp)
        if any(len(set(stamps)) < len(stamps) for stamps in per_device.values()):
            readings = _first_copies(readings)  # the same reading twice in one batch: the first copy counts
        if last_seq is None:
            last_seq = max((seq for seq, _ in frames), default=None)
        if len({a.seq for a in alerts}) < len(alerts):  # an alert sequence twice in one batch: the first counts
            alerts = list({a.seq: a for a in reversed(alerts)}.values())[::-1]
        stored, samples, others, new_alerts = await self._ingest(
            edge, readings, health, now_us, last_seq, rejected, len(frames), clock_skew_s, check_owner, alerts,
            reports, events, documents)
        refused = [(seq, refusal(f.device_id, others[f.device_id], edge))
                   for seq, f in zip(readings.seqs, readings.frames, strict=True) if f.device_id in others]
        alerts_refused = [(a.seq, refusal(a.device, others[a.device], edge)) for a in alerts if a.device in others]
        return IngestResult(len(stored), len(frames) - len(stored) - len(refused), stored, samples, refused,
                            new_alerts, len(alerts) - new_alerts - len(alerts_refused), alerts_refused)

    @abc.abstractmethod
    async def _ingest(
        self, edge: str, readings: Readings, health: EdgeHealth | None,
        now_us: int, last_seq: int | None, rejected: int, received: int,
        clock_skew_s: float | None, check_owner: bool, alerts: Sequence[AlertEventIn],
        reports: Sequence[ModelReportRow] | None, events: Sequence[EdgeEventIn] = (),
        documents: Sequence[DocumentIn] = (),
    ) -> Ingested:
        """Insert the readings, alert events and edge events not stored yet, and the reports, in one transaction;
        return
        the new frames, the sample count, the owner of each device of the batch (its frames' and alerts')
        that belongs to another edge (``split_owned``), and the number of new alert events."""

    # --- identities ------------------------------------------------------------------
    @abc.abstractmethod
    async def create_identity(self, kind: str, name: str, role: str, token_hash: str, now_us: int) -> bool:
        """Add an edge or a person; False when the name is taken (nothing is changed then)."""

    @abc.abstractmethod
    async def set_role(self, name: str, role: str) -> bool:
        """Give a person another role; False when no person has that name."""

    @abc.abstractmethod
    async def set_token(self, kind: str, name: str, token_hash: str) -> bool:
        """Replace the token of an identity (and lift a revocation); False when it does not exist."""

    @abc.abstractmethod
    async def revoke(self, kind: str, name: str, now_us: int) -> bool: ...

    @abc.abstractmethod
    async def principal(self, token_hash: str) -> Principal | None: ...

    @abc.abstractmethod
    async def identities(self, kind: str) -> list[dict[str, Any]]: ...

    @abc.abstractmethod
    async def identity_rows(self) -> list[tuple[str, str, str, str | None, int, int | None]]:
        """Every identity as (kind, name, role, token hash, created, revoked) — for copying a database."""

    @abc.abstractmethod
    async def edges(self) -> list[EdgeRecord]: ...

    # --- console sessions (cloud.storage.sessions) ---------------------------------------
    @abc.abstractmethod
    async def create_session(self, session_hash: str, token_hash: str, csrf: str, now_us: int) -> None:
        """Store a new session opened with the token whose hash is ``token_hash``."""

    @abc.abstractmethod
    async def session(self, session_hash: str, seen_after: int, created_after: int) -> SessionRecord | None:
        """The session, if its token is still a person's valid one, it was used at or after ``seen_after``
        and opened at or after ``created_after`` (µs); None otherwise."""

    @abc.abstractmethod
    async def touch_session(self, session_hash: str, now_us: int, unless_after: int) -> None:
        """Record a use of the session, unless one at or after ``unless_after`` is recorded already."""

    @abc.abstractmethod
    async def end_session(self, session_hash: str) -> bool:
        """Delete the session; False when there was none."""

    @abc.abstractmethod
    async def purge_sessions(self, seen_before: int, created_before: int) -> int:
        """Delete the sessions that can no longer be used (expired, or their token rotated or revoked)."""

    # --- device owners ---------------------------------------------------------------
    @abc.abstractmethod
    async def device_records(self) -> list[DeviceRecord]:
        """Every device with its owner, by name (devices bound before they sent included)."""

    @abc.abstractmethod
    async def bind_device(self, device: str, edge: str, by: str, reason: str, now_us: int, *,
                          create: bool) -> DeviceMove | None:
        """Bind a device to an edge and record it in ``device_moves``, in one transaction.

        ``create``: a device not known yet (DeviceExists when it is); otherwise an
        existing one (UnknownDevice when it is not). None when the device belongs
        to ``edge`` already: nothing is changed or recorded then.
        """

    @abc.abstractmethod
    async def device_moves(self, device: str, limit: int) -> list[DeviceMove]:
        """The newest ``limit`` bindings an admin made of a device, oldest first; UnknownDevice when unknown."""

    # --- query primitives ------------------------------------------------------------
    @abc.abstractmethod
    async def devices(self) -> list[str]: ...

    @abc.abstractmethod
    async def device(self, name: str) -> tuple[int, int | None, str | None, str | None] | None:
        """(id, last ts, last status, last edge) of a device, None when unknown."""

    @abc.abstractmethod
    async def statuses(self, device_id: int, after: int, upto: int) -> dict[int, str]:
        """The status of each frame of a device with after < ts <= upto."""

    @abc.abstractmethod
    async def lookup(self, name: str) -> tuple[tuple[int, int | None, str | None, str | None],
                                               list[SeriesInfo]] | None:
        """A device and its series in one go (one round trip), None when unknown."""

    @abc.abstractmethod
    async def scan(self, series_id: int, start: int, stop: int, limit: int) -> list[tuple[int, float | str | None]]:
        """Samples of one series with start <= ts < stop, oldest first: (ts, number or text)."""

    @abc.abstractmethod
    async def raw_rows(self, series_ids: list[int], ranges: list[tuple[int, int]]) -> list[tuple[int, int, float]]:
        """Numeric samples (series id, ts, value) of the series with ts in one of the [lo, hi) ranges."""

    @abc.abstractmethod
    async def rollup_rows(self, series_ids: list[int], width: int, ranges: list[tuple[int, int]]) -> list[RollupRow]:
        """Rollup rows of one level (series id, bucket, count, m, e, min, max, first_ts, first, last_ts, last)
        of the series with the bucket in one of the [lo, hi) ranges (each aligned to ``width``)."""

    async def scan_many(self, starts: Sequence[tuple[int, int]], stop: int,
                        limit: int) -> list[list[tuple[int, float | str | None]]]:
        """Samples of several series, each (series id, start) with start <= ts < stop, oldest first: one list
        per series, in the order given, with ``limit`` points over all of them (the first in that order).

        A backend may answer in one statement; this one asks ``scan`` series by series.
        """
        out: list[list[tuple[int, float | str | None]]] = []
        left = limit
        for series_id, lo in starts:
            rows = await self.scan(series_id, lo, stop, left) if left > 0 else []
            out.append(rows)
            left -= len(rows)
        return out

    async def aggregate_rows(self, series_ids: list[int], levels: Mapping[int, list[tuple[int, int]]],
                             raw: list[tuple[int, int]]) -> tuple[list[list[RollupRow]], list[tuple[int, int, float]]]:
        """What an aggregate reads (``rollups.plan``): the rollup rows of each level, coarsest first, and the
        numeric samples of the raw ranges. A backend may answer in one statement; this one asks
        ``rollup_rows`` level by level and ``raw_rows``."""
        level_rows = [await self.rollup_rows(series_ids, width, ranges) for width, ranges in levels.items()]
        return level_rows, (await self.raw_rows(series_ids, raw) if raw else [])

    @abc.abstractmethod
    async def select(self, build: Callable[[Callable[[int], str]], tuple[str, list[Any]]]) -> list[tuple[Any, ...]]:
        """The rows of a read-only SELECT that ``build(param)`` writes for this backend (``param(n)`` gives the
        n-th placeholder), as tuples: the queries written once for both (``cloud.storage.programs``)."""

    @abc.abstractmethod
    async def events(self, query: EventQuery) -> list[EventRecord]:
        """The edges' events that pass ``query``, newest first (``cloud.storage.events``)."""

    @abc.abstractmethod
    async def purge(self, samples_before: int | None, rollups_before: int | None) -> int:
        """Delete samples and frames, and rollups of every level, older than the cutoffs (None keeps them);
        alerts (and the records of alert events), edge events and the history of documents (superseded assets
        and device models, refused documents) go with the rollups' cutoff. Rows deleted."""

    # --- documents (cloud.storage.documents) ----------------------------------------------
    async def put_documents(self, edge: str, documents: Sequence[DocumentIn], now_us: int) -> int:
        """Store an edge's documents not stored yet, and what is read from them, in one transaction, without
        touching the edge's sync record (copying a database); returns how many were new."""
        raise NotSupported(f"documents are not supported on {self.backend} storage yet")

    # --- physics assemblies ----------------------------------------------------------
    @abc.abstractmethod
    async def put_assembly(self, record: AssemblyRecord) -> None:
        """Store an upload; an id stored already keeps what it has (uploads never change)."""

    @abc.abstractmethod
    async def assembly(self, assembly_id: str) -> AssemblyRecord | None:
        """An upload by its id, None when unknown."""

    @abc.abstractmethod
    async def assemblies(self, limit: int, before: tuple[int, str] | None = None) -> list[AssemblySummary]:
        """Uploads newest first, at most ``limit``, those stored before ``before`` (created µs, id) when given."""

    @abc.abstractmethod
    async def assembly_ids(self) -> list[str]:
        """The id of every upload, oldest first (for copying a database)."""

    # --- virtual-sensor bindings (cloud.storage.derived) -------------------------------
    async def put_binding(self, name: str, device: str, spec: dict[str, Any], by: str, now_us: int, *,
                          replace: bool, max_per_device: int) -> BindingRow:
        """Define a binding (or replace one, keeping its watermark); BindingExists, or a refusal past the limit."""
        raise NotSupported(f"virtual sensors are not supported on {self.backend} storage yet")

    async def bindings(self, device: str | None = None, *, with_state: bool = True) -> list[BindingRow]:
        """Every binding (of one device), by name; with ``with_state=False`` their states read as empty (not
        read at all: a window's state can be megabytes)."""
        raise NotSupported(f"virtual sensors are not supported on {self.backend} storage yet")

    async def set_binding_enabled(self, name: str, enabled: bool, now_us: int) -> BindingRow:
        raise NotSupported(f"virtual sensors are not supported on {self.backend} storage yet")

    async def advance_binding(self, write: DerivedWrite) -> bool:
        """Store a binding's step (derived points through the ingest rows, their tags, its state) in one
        transaction, if its revision is still ``write.rev``; False (nothing written) when another worker moved it."""
        raise NotSupported(f"virtual sensors are not supported on {self.backend} storage yet")

    async def derived_points(self, name: str, start: int, stop: int, limit: int) -> list[DerivedTag]:
        """A binding's derived points with their tags, oldest first."""
        raise NotSupported(f"virtual sensors are not supported on {self.backend} storage yet")

    # --- shared queries --------------------------------------------------------------
    async def _resolve(self, device: str, fields: Sequence[str] | None) -> list[SeriesInfo]:
        """The series of ``fields`` of a device (all of them when None), by field name."""
        known = self._known.get(device)
        if fields and known is not None and all(f in known for f in fields):
            return sorted({known[f] for f in fields}, key=lambda s: s.field)
        found = await self.lookup(device)
        if found is None:
            raise UnknownDevice(f"device {device!r} has sent no data", "device")
        self._remember(device, found[1])
        known_series = sorted(found[1], key=lambda s: s.field)
        if not fields:
            return known_series
        by_name = {s.field: s for s in known_series}
        missing = [f for f in fields if f not in by_name]
        if missing:
            raise BadQuery(f"device {device!r} has no field {missing[0]!r}"
                           f" (known: {', '.join(sorted(by_name)[:20]) or 'none'})", "fields")
        return sorted({by_name[f] for f in fields}, key=lambda s: s.field)

    def _remember(self, device: str, series: list[SeriesInfo]) -> None:
        if self._known_count + len(series) > KNOWN_SERIES_MAX:
            self._known.clear()
            self._known_count = 0
        self._known_count += len(series) - len(self._known.get(device, ()))
        self._known[device] = {s.field: SeriesInfo(s.id, s.field, s.kind) for s in series}

    async def state(self, device: str) -> DeviceState:
        found = await self.lookup(device)
        if found is None:
            raise UnknownDevice(f"device {device!r} has sent no data", "device")
        row, series = found[0], sorted(found[1], key=lambda s: s.field)
        values = {s.field: (s.last_ts or 0, s.render(s.last_value, s.last_text))
                  for s in series if s.last_ts is not None}
        return DeviceState(device, row[1], row[2], row[3], values)

    async def frames_between(self, device: str, after: int, upto: int, limit: int) -> list[TelemetryFrame]:
        """The frames of a device with after < ts <= upto, oldest first, rebuilt from the stored values."""
        found = await self.lookup(device)
        if found is None:
            return []
        row, series = found
        by_ts: dict[int, dict[str, Any]] = {}
        for info in series:
            for ts, value in info.points(await self.scan(info.id, after + 1, upto + 1, limit)):
                frame = by_ts.setdefault(ts, {"sensors": {}, "metrics": {}})
                if info.field.startswith("metrics."):
                    frame["metrics"][info.field[len("metrics."):]] = value
                else:
                    frame["sensors"][info.field] = value
        kept = sorted(by_ts.items())[:limit]
        if not kept:
            return []
        statuses = await self.statuses(row[0], after, kept[-1][0])  # only up to the last frame returned
        return [TelemetryFrame(ts=ts / 1_000_000, device_id=device, sensors=parts["sensors"],
                               metrics=parts["metrics"], status=statuses.get(ts, "ok"))
                for ts, parts in kept]

    async def history(self, device: str, fields: Sequence[str] | None, start: int, stop: int,
                      limit: int, cursor: str | None) -> HistoryPage:
        """Points in field order, oldest first within a field; ``limit`` counts points over all fields."""
        series = await self._resolve(device, fields)
        try:
            after_field, after_ts = decode_cursor(cursor) if cursor else ("", -1)
        except CursorError as exc:
            raise BadQuery(str(exc), "cursor") from None
        wanted: list[tuple[SeriesInfo, int]] = []
        for info in series:
            lo = max(start, after_ts + 1) if info.field == after_field else start
            if info.field >= after_field and lo < stop:
                wanted.append((info, lo))
        found = await self.scan_many([(info.id, lo) for info, lo in wanted], stop, limit + 1)
        out: list[tuple[SeriesInfo, list[tuple[int, bool | float | str | None]]]] = []
        left = limit
        next_cursor = None
        for (info, _), rows in zip(wanted, found, strict=False):
            if not rows:
                continue
            if len(rows) > left:  # the page is full: the cursor is its last point
                if left:
                    out.append((info, info.points(rows[:left])))
                prev = out[-1]
                next_cursor = encode_cursor(prev[0].field, prev[1][-1][0])
                break
            out.append((info, info.points(rows)))
            left -= len(rows)
        return HistoryPage(device, out, next_cursor)

    async def aggregate(self, device: str, fields: Sequence[str] | None, start: int, stop: int,
                        window: int, first_last: bool = True) -> list[tuple[SeriesInfo, list[tuple[int, AggRow]]]]:
        """Buckets of ``window`` µs aligned to the epoch, from the rollups wherever a level fits (see
        ``cloud.storage.rollups``) and from raw points elsewhere; the answer is the same either way.

        ``first_last=False`` leaves ``first``/``last`` unset.
        """
        series = await self._resolve(device, fields)
        numeric = [s for s in series if s.kind != "text"]
        acc: dict[tuple[int, int], Partial] = {}
        if numeric:
            levels, raw = plan(start, stop, window)
            level_rows, raw_rows = await self.aggregate_rows([s.id for s in numeric], levels, raw)
            for rows in level_rows:
                fold_rollups(acc, rows, window)
            fold_raw(acc, raw_rows, window)
        per_series: dict[int, list[tuple[int, AggRow]]] = {s.id: [] for s in numeric}
        for (sid, bucket), part in sorted(acc.items()):
            per_series[sid].append((bucket, AggRow.of(part, first_last)))
        return [(info, per_series[info.id]) for info in numeric]
