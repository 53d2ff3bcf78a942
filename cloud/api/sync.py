"""``POST /api/v1/sync/batches``: an edge hands over a batch of sequenced frames; the answer says what is safe.

Order of checks: the token (401/403, from the headers: ``cloud.guard``),
the declared body size (413), this process's capacity (503), the body's
arrival within ``server.body_timeout`` (408), its size and encoding
(413/415/400), the batch's shape (400/422), that the batch names the token's
edge (403). A newer batch of the same edge supersedes one still on its way
(409 for the old one; see ``cloud.edgeslots``). This process's
``sync.max_concurrent`` slots are taken only once the body is in, so clients
that send slowly hold none of them.
Then each frame is validated on its own — a bad frame is refused with its
reason and never takes the good ones with it — and the good ones are stored
once each. A frame is refused too when it is dated more than
``sync.max_future_skew`` ahead of the cloud's clock, or when its device
belongs to another edge. ``acked_through`` is the batch's highest sequence:
every frame at or below it is stored, was stored before, or is refused for
good. The edge's clock skew (the time it sent the request, ``X-Twinedge-Sent-At``
or else the batch's ``sent_at``, minus the cloud's clock when the request
arrived) is recorded with its health. A health report over the limits
(``EdgeHealth.bounded``) is kept shortened, with a WARNING in the log.

The batch's alert events are stored in the same transaction, each at most
once per edge and alert sequence; ``alerts_acked_through`` is their highest
sequence. An alert event of a device that belongs to another edge, or dated
outside 2000-2100, is refused for good (a WARNING in the log; the ack covers
it). The health report's model reports replace the edge's earlier ones.
The batch's edge events are stored in the same transaction too, each at most
once per edge and event sequence; ``events_acked_through`` is their highest
sequence (an event dated outside 2000-2100 is left out, and acknowledged).
The batch's documents are stored in the same transaction too, each at most once per edge and document sequence,
and checked one by one (``cloud.documents``): a document that is not valid is kept as ``invalid`` with its reason
(a WARNING in the log) and never costs the batch its frames; ``documents_acked_through`` is their highest
sequence. Only a document entry without a sequence makes the whole batch malformed (422).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from pydantic import ValidationError

from cloud.auth import EdgeDep, NotAllowed
from cloud.body import BodyError, BodyTimeout, BodyTooLarge, EncodingRefused, read_body
from cloud.context import Ctx
from cloud.documents import DocumentIn, read_documents
from cloud.edgeslots import Claim
from cloud.errors import Overloaded, Superseded
from cloud.guard import body_guard
from cloud.process.ownership import Dropped, drop_owned
from cloud.storage.base import StorageError, StorageUnavailable
from cloud.storage.events import EdgeEventIn
from cloud.storage.registry import AlertEventIn, ModelReportRow
from shared.batch import (
    EVENT_LEVELS,
    SENT_AT_HEADER,
    EdgeHealth,
    Rejection,
    SequencedAlert,
    SequencedEvent,
    SyncAck,
    SyncBatch,
)
from shared.codec import decode_obj, validate_frames
from shared.errors import CodecError, FrameError, InputError
from shared.frame import TS_MAX, TS_MIN, TelemetryFrame
from shared.validation import validation_problems

__all__ = ["router"]

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1/sync", tags=["sync"])

_MSGPACK_TYPES = {"application/msgpack", "application/x-msgpack", "application/vnd.msgpack"}
_BODY_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "A SyncBatch as MessagePack (preferred) or JSON; Content-Encoding gzip or zstd allowed.",
        "content": {
            "application/msgpack": {"schema": {"$ref": "#/components/schemas/SyncBatch"}},
            "application/json": {"schema": {"$ref": "#/components/schemas/SyncBatch"}},
        },
    }
}
_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "unreadable body (bad MessagePack/JSON, bad gzip/zstd)"},
    408: {"description": "the body did not arrive within server.body_timeout; send the batch again"},
    409: {"description": "a newer batch of this edge superseded this one before it was stored; nothing of it "
                         "is stored"},
    401: {"description": "no token, or an unknown or revoked one"},
    403: {"description": "not an edge token, or the batch names another edge"},
    413: {"description": "body or batch over the size limits"},
    415: {"description": "content type or encoding not accepted"},
    422: {"description": "the batch is not a SyncBatch; detail lists each problem"},
    503: {"description": "overloaded or the database is unavailable; retry after Retry-After seconds"},
}


_last_warning: dict[str, float] = {}
SKEW_WORTH_SAYING = 2.0  # seconds: below this a clock difference is mostly the time the request travelled
MAX_CLOCK_SKEW = 100 * 365.25 * 86400  # seconds: a sent_at further off than a century is no clock reading


def _first_this_minute(key: str) -> bool:
    """True the first time ``key`` (an edge, and what is said about it) comes up in a minute: a WARNING then, and
    DEBUG for the rest of the minute, so a broken device cannot flood the log."""
    now = time.monotonic()
    if now - _last_warning.get(key, -60.0) < 60.0:
        return False
    _last_warning[key] = now
    return True


def _warn_rejected(edge: str, rejected: list[Rejection]) -> None:
    """One WARNING per edge and minute at most (a broken device would flood the log); the rest at DEBUG."""
    first = rejected[0]
    if _first_this_minute(edge):
        log.warning("edge %s sent %d frame(s) that were refused and reported back to it; first: seq %d: %s "
                    "(further ones this minute at DEBUG)", edge, len(rejected), first.seq, first.reason)
    else:
        log.debug("edge %s sent %d refused frame(s); first: seq %d: %s", edge, len(rejected), first.seq, first.reason)


def _warn_alerts(edge: str, refused: list[tuple[int, str]]) -> None:
    """Refused alert events: one WARNING per edge and minute at most, the rest at DEBUG."""
    key = f"{edge}\nalerts"
    seq, why = min(refused)
    if _first_this_minute(key):
        log.warning("edge %s sent %d alert event(s) that were refused and acked; first: alert seq %d: %s "
                    "(further ones this minute at DEBUG)", edge, len(refused), seq, why)
    else:
        log.debug("edge %s sent %d refused alert event(s); first: alert seq %d: %s", edge, len(refused), seq, why)


def _warn_documents(edge: str, invalid: list[tuple[int, str]]) -> None:
    """Documents kept as invalid: one WARNING per edge and minute at most, the rest at DEBUG."""
    key = f"{edge}\ndocuments"
    seq, why = min(invalid)
    if _first_this_minute(key):
        log.warning("edge %s sent %d document(s) that are kept as invalid and acked; first: document seq %d: %s "
                    "(further ones this minute at DEBUG)", edge, len(invalid), seq, why)
    else:
        log.debug("edge %s sent %d invalid document(s); first: document seq %d: %s", edge, len(invalid), seq, why)


def _warn_health(edge: str, notes: list[str]) -> None:
    """A report over the limits is kept shortened: said once per edge and minute, the rest at DEBUG."""
    key = f"{edge}\nhealth"
    if _first_this_minute(key):
        log.warning("edge %s sent a health report over the limits, kept shortened: %s", edge, "; ".join(notes))
    else:
        log.debug("edge %s: health report shortened: %s", edge, "; ".join(notes))


def _warn_owned(edge: str, dropped: list[Dropped]) -> None:
    """Measured values of fields a binding derives: one WARNING per edge and minute at most, the rest at DEBUG."""
    key = f"{edge}\nowned"
    d = dropped[0]
    more = f" (and {len(dropped) - 1} more field(s))" if len(dropped) > 1 else ""
    if _first_this_minute(key):
        log.warning("device %s of edge %s sends %r, a field binding %r derives: %d measured value(s) dropped%s; "
                    "rename the field at the edge or the binding's output (further ones this minute at DEBUG)",
                    d.device, edge, d.field, d.binding, d.count, more)
    else:
        log.debug("device %s of edge %s: %d value(s) of %r (derived by binding %r) dropped%s", d.device, edge,
                  d.count, d.field, d.binding, more)


def clock_skew(sent_at: float, received_at: float) -> float | None:
    """The edge's clock minus the cloud's, in seconds; None when ``sent_at`` is no time at all."""
    skew = sent_at - received_at
    return skew if abs(skew) <= MAX_CLOCK_SKEW else None  # False for NaN


def attempt_sent_at(request: Request, packed_at: float) -> float:
    """When the edge sent this attempt (its ``X-Twinedge-Sent-At``), else when it packed the batch."""
    value = request.headers.get(SENT_AT_HEADER, "")
    try:
        sent_at = float(value) if len(value) <= 32 else math.nan
    except ValueError:
        return packed_at
    return sent_at if math.isfinite(sent_at) else packed_at


def refuse_future(frames: list[tuple[int, TelemetryFrame]], now: float, limit: float,
                  skew: float | None) -> tuple[list[tuple[int, TelemetryFrame]], list[Rejection]]:
    """The frames dated at most ``limit`` seconds after ``now``, and a refusal for each of the others.

    A frame from the future would stay the device's newest reading until the clock catches up.
    """
    latest = now + limit
    if all(frame.ts <= latest for _, frame in frames):
        return frames, []
    note = ""
    if skew is not None and abs(skew) >= SKEW_WORTH_SAYING:
        note = (f"; this edge's clock is {abs(skew):,.0f} s {'ahead of' if skew > 0 else 'behind'} the cloud's: "
                "check its time synchronisation")
    kept, refused = [], []
    for seq, frame in frames:
        if frame.ts <= latest:
            kept.append((seq, frame))
        else:
            when = datetime.fromtimestamp(frame.ts, UTC).isoformat(timespec="seconds")
            refused.append(Rejection(seq=seq, reason=(
                f"ts {when} is {math.ceil(frame.ts - now):,d} s ahead of the cloud's clock; at most {limit:,.0f} s "
                f"(sync.max_future_skew) is accepted{note}")))
    return kept, refused


@dataclass(frozen=True, slots=True)
class _Batch:
    """A SyncBatch as read from the body: the frames still plain data, each with its sequence."""

    edge_id: str
    sent_at: float
    health: EdgeHealth
    seqs: list[int]
    frames: list[Any]
    alerts: list[SequencedAlert]
    events: list[SequencedEvent]
    documents: list[DocumentIn]
    documents_through: int | None


_MAX_SEQ = 2**63 - 1
_MAX_VERSION = 2**31 - 1  # the registry numbers versions from 1; a larger one names no stored version


def _plain_batch(obj: Any) -> _Batch | None:
    """The batch when every frame entry is plainly ``{"seq": <int in range>, "frame": ...}``, else None.

    The same checks SequencedFrame makes, without building thousands of models; anything
    unusual goes to SyncBatch.model_validate, which says exactly what is wrong.
    """
    entries = obj.get("frames") if isinstance(obj, dict) else None
    if type(entries) is not list:
        return None
    seqs: list[int] = []
    frames: list[Any] = []
    for entry in entries:
        if type(entry) is not dict or len(entry) != 2 or "frame" not in entry:
            return None
        seq = entry.get("seq")
        if type(seq) is not int or not 1 <= seq <= _MAX_SEQ:
            return None
        seqs.append(seq)
        frames.append(entry["frame"])
    try:
        envelope = SyncBatch.model_validate({**obj, "frames": [], "documents": []})
    except ValidationError:
        return None
    documents, through = read_documents(obj.get("documents"))
    return _Batch(envelope.edge_id, envelope.sent_at, envelope.health, seqs, frames, envelope.alerts,
                  envelope.events, documents, through)


def _decode(body: bytes, content_type: str, max_frames: int) -> _Batch:
    media = content_type.split(";", 1)[0].strip().lower()
    if media and media not in _MSGPACK_TYPES and media != "application/json":
        raise EncodingRefused(f"{media[:60]!r} is not accepted; use application/msgpack or json", "Content-Type")
    try:
        obj = decode_obj(body, max_bytes=len(body) + 1)
    except CodecError as exc:
        raise BodyError(str(exc), "body") from None
    if isinstance(obj, dict) and isinstance(obj.get("frames"), list) and len(obj["frames"]) > max_frames:
        raise BodyTooLarge(f"{len(obj['frames']):,} frames; the limit is {max_frames:,} per batch", "frames")
    batch = _plain_batch(obj)
    if batch is None:
        # Documents are checked one by one (``cloud.documents``): a bad one never costs the batch its frames.
        documents, through = read_documents(obj.get("documents")) if isinstance(obj, dict) else ([], None)
        try:
            full = SyncBatch.model_validate({**obj, "documents": []} if isinstance(obj, dict) else obj)
        except ValidationError as exc:
            raise InputError(validation_problems(exc, SyncBatch)) from None
        batch = _Batch(full.edge_id, full.sent_at, full.health, [f.seq for f in full.frames],
                       [f.frame for f in full.frames], full.alerts, full.events, documents, through)
    seqs = batch.seqs
    for k in range(1, len(seqs)):
        if seqs[k] <= seqs[k - 1]:
            message = f"sequences must increase within a batch (got {seqs[k]} after {seqs[k - 1]})"
            raise InputError(message, f"frames[{k}].seq")
    return batch


@dataclass(frozen=True, slots=True)
class _Parsed:
    """What the handler needs of a batch: the plain frames are let go as soon as they are validated."""

    edge_id: str
    sent_at: float
    health: EdgeHealth
    last_seq: int | None
    good: list[tuple[int, TelemetryFrame]]
    rejected: list[Rejection]
    health_notes: list[str]
    alerts: list[AlertEventIn]
    alerts_refused: list[tuple[int, str]]
    alerts_through: int | None
    reports: list[ModelReportRow]
    events: list[EdgeEventIn]
    events_through: int | None
    documents: list[DocumentIn]
    documents_through: int | None


def _alert_events(alerts: list[SequencedAlert]) -> tuple[list[AlertEventIn], list[tuple[int, str]]]:
    """The events as the store takes them, and (seq, reason) for those no store can keep."""
    kept: list[AlertEventIn] = []
    refused: list[tuple[int, str]] = []
    for item in alerts:
        a = item.alert
        if not TS_MIN <= a.ts <= TS_MAX:
            refused.append((item.seq, f"alert {a.alert_id}: ts {a.ts:g} is not between 2000 and 2100"))
        elif a.version > _MAX_VERSION:
            refused.append((item.seq, f"alert {a.alert_id}: no model has version {a.version}"))
        else:
            kept.append(AlertEventIn(item.seq, a.alert_id, a.event, a.device_id, round(a.ts * 1e6), a.model,
                                     a.version, a.score, a.threshold, a.label, a.message))
    return kept, refused


def _edge_events(events: list[SequencedEvent]) -> list[EdgeEventIn]:
    """The events as the store takes them; one dated outside 2000-2100 is left out (and acknowledged)."""
    return [EdgeEventIn(item.seq, round(e.ts * 1e6), EVENT_LEVELS.index(e.level), e.kind, e.device, e.source,
                        e.message, e.details)
            for item in events if TS_MIN <= (e := item.event).ts <= TS_MAX]


def _reports(edge: str, health: EdgeHealth, now_us: int) -> list[ModelReportRow]:
    return [ModelReportRow(edge, device, r.model, r.version, r.sha256, r.state, r.message or "", r.last_score,
                           r.last_scored_at, r.drift, dict(sorted(r.psi.items(), key=lambda kv: -kv[1])), r.rows,
                           now_us)
            for device, r in health.models.items() if r.version <= _MAX_VERSION]


def _parse(body: bytes, content_type: str, max_frames: int) -> _Parsed:
    batch = _decode(body, content_type, max_frames)
    good: list[tuple[int, TelemetryFrame]] = []
    rejected: list[Rejection] = []
    for seq, result in zip(batch.seqs, validate_frames(batch.frames), strict=True):
        if isinstance(result, FrameError):
            rejected.append(Rejection(seq=seq, reason=str(result)))
        else:
            good.append((seq, result))
    health, notes = batch.health.bounded()
    alerts, alerts_refused = _alert_events(batch.alerts)
    return _Parsed(batch.edge_id, batch.sent_at, health, batch.seqs[-1] if batch.seqs else None, good, rejected,
                   notes, alerts, alerts_refused, max((a.seq for a in batch.alerts), default=None),
                   _reports(batch.edge_id, health, time.time_ns() // 1000), _edge_events(batch.events),
                   max((e.seq for e in batch.events), default=None), batch.documents, batch.documents_through)


@router.post("/batches", response_model=SyncAck, responses=_RESPONSES, openapi_extra=_BODY_DOC)
async def sync_batches(request: Request, edge: EdgeDep, ctx: Ctx) -> SyncAck:
    """Store a batch of an edge's frames once each; answer with what the edge may delete."""
    if ctx.sync_slots.locked():
        ctx.metrics.sync_batches.labels("overloaded").inc()
        raise Overloaded("the service is busy with other batches")
    with ctx.edge_slots.claim(edge.name, body_guard(request)) as claim:
        return await _handle(request, edge.name, ctx, claim)


async def _read(request: Request, ctx: Ctx) -> tuple[_Parsed, int, int]:
    """The parsed batch, its size on the wire and decoded; counts the refusals."""
    cfg = ctx.config.sync
    try:
        body, wire = await read_body(request, cfg.max_body_bytes, cfg.max_decoded_bytes)
        args = (body, request.headers.get("content-type", ""), cfg.max_frames)
        # Decoding and validating thousands of frames is CPU work: keep it off the event loop, in one
        # thread (more would only fight over the GIL) that works while the writer thread stores.
        if len(body) > 32_768:
            loop = asyncio.get_running_loop()
            batch = await loop.run_in_executor(ctx.parser, _parse, *args)
        else:
            batch = _parse(*args)
    except BodyTimeout:
        ctx.metrics.sync_batches.labels("timeout").inc()
        raise
    except Superseded:
        ctx.metrics.sync_batches.labels("superseded").inc()
        raise
    except InputError:
        ctx.metrics.sync_batches.labels("refused").inc()
        raise
    return batch, wire, len(body)


async def _handle(request: Request, edge: str, ctx: Ctx, claim: Claim) -> SyncAck:
    cfg = ctx.config.sync
    received_at = time.time()
    batch, wire, decoded = await _read(request, ctx)
    ctx.metrics.sync_bytes.labels("wire").inc(wire)
    ctx.metrics.sync_bytes.labels("decoded").inc(decoded)
    if batch.edge_id != edge:
        ctx.metrics.sync_batches.labels("refused").inc()
        raise NotAllowed(f"this token belongs to edge {edge!r}, not {batch.edge_id!r}", "edge_id")
    if batch.health_notes:
        _warn_health(edge, batch.health_notes)
    acked, skew = batch.last_seq, clock_skew(attempt_sent_at(request, batch.sent_at), received_at)
    good, ahead = refuse_future(batch.good, time.time(), cfg.max_future_skew, skew)
    if ctx.engine is not None:  # a field a binding derives is the binding's (cloud.process.ownership)
        good, dropped = drop_owned(good, await ctx.engine.owned())
        if dropped:
            ctx.metrics.values_dropped.labels(edge, "derived_field").inc(sum(d.count for d in dropped))
            _warn_owned(edge, dropped)
    rejected = batch.rejected + ahead
    try:
        async with ctx.edge_slots.storing(claim), ctx.sync_slots:
            started = time.perf_counter()
            ctx.metrics.sync_inflight.inc()
            try:
                result = await ctx.storage.ingest(edge, good, batch.health, time.time_ns() // 1000, len(rejected),
                                                  acked, clock_skew_s=skew, alerts=batch.alerts,
                                                  reports=batch.reports, events=batch.events,
                                                  documents=batch.documents)
            finally:
                ctx.metrics.sync_inflight.dec()
    except Superseded:
        ctx.metrics.sync_batches.labels("superseded").inc()
        raise
    except StorageUnavailable as exc:
        ctx.metrics.storage_errors.labels("unavailable").inc()
        ctx.metrics.sync_batches.labels("unavailable").inc()
        log.warning("cannot store a batch of edge %s now: %s", edge, exc)
        raise
    except StorageError:  # the error handler logs it and answers 503: the edge sends the batch again
        ctx.metrics.storage_errors.labels("error").inc()
        ctx.metrics.sync_batches.labels("unavailable").inc()
        raise
    ctx.metrics.ingest_seconds.observe(time.perf_counter() - started)
    if result.refused or ahead:
        rejected = sorted(rejected + [Rejection(seq=seq, reason=why) for seq, why in result.refused],
                          key=lambda r: r.seq)
    if rejected:
        _warn_rejected(edge, rejected)
    alerts_refused = batch.alerts_refused + result.alerts_refused
    if alerts_refused:
        _warn_alerts(edge, alerts_refused)
    invalid = [(d.seq, d.reason or "") for d in batch.documents if d.status != "ok"]
    if invalid:
        _warn_documents(edge, invalid)
    ctx.metrics.sync_alerts.labels("stored").inc(result.alerts_stored)
    ctx.metrics.sync_alerts.labels("duplicate").inc(result.alerts_duplicate)
    ctx.metrics.sync_alerts.labels("rejected").inc(len(alerts_refused))
    ctx.metrics.sync_batches.labels("stored").inc()
    ctx.metrics.frames.labels(edge, "stored").inc(result.stored)
    ctx.metrics.frames.labels(edge, "duplicate").inc(result.duplicates)
    ctx.metrics.frames.labels(edge, "rejected").inc(len(rejected))
    ctx.metrics.samples.inc(result.samples)
    missed = ctx.hub.publish(result.stored_frames)
    if ctx.engine is not None and result.stored_frames:  # virtual sensors run in the background, not here
        ctx.engine.notify({f.device_id for f in result.stored_frames})
    if missed:
        ctx.metrics.ws_dropped.inc(missed)
    log.debug("edge %s: %d stored, %d duplicate, %d rejected, acked through %s", edge, result.stored,
              result.duplicates, len(rejected), acked)
    return SyncAck(acked_through=acked, stored=result.stored, duplicates=result.duplicates, rejected=rejected,
                   alerts_acked_through=batch.alerts_through, events_acked_through=batch.events_through,
                   documents_acked_through=batch.documents_through)
