"""The edges' alerts and their models' drift over HTTP: list and acknowledge alerts; list the devices' drift.

Alerts arrive with the sync batches (``cloud.api.sync``): one alert per edge
and alert id, filled in by its raised and cleared events in whichever order
they come. Its state is ``open`` until the cleared event is in, then
``cleared``; acknowledging (operators) is apart from that and happens once.
The drift list is each edge's newest report per device of the model scoring
it; ``drift`` is judged by the largest population stability index (PSI) over
the model's inputs (below 0.1 ok, from 0.1 warn, from 0.25 drift).
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from cloud.api.twin import parse_time
from cloud.auth import Operator, Viewer
from cloud.context import Ctx
from cloud.errors import BadParameter
from cloud.storage.registry import (
    DRIFTED,
    AlertQuery,
    AlertRecord,
    decode_alert_cursor,
    encode_alert_cursor,
)
from shared.errors import InputError
from shared.frame import DEVICE_ID_PATTERN, TS_MAX, TS_MIN

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["alerts and drift"])
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "no token, or an unknown or revoked one"},
    403: {"description": "the token's role may not do this"},
}
MAX_COMMENT = 500


class AlertOut(BaseModel):
    id: int = Field(description="the cloud's id of the alert (acknowledge with it)")
    edge: str
    alert_id: str = Field(description="the edge's id of the alert")
    device: str
    model: str
    version: int
    state: Literal["open", "cleared"]
    at: float = Field(description="when it was raised (or cleared, while the raised event is missing), epoch s")
    raised_at: float | None
    cleared_at: float | None
    score: float | None = Field(description="the score when it was raised")
    peak: float | None = Field(description="the highest score, reported when it cleared")
    threshold: float | None
    label: str | None
    message: str | None
    acknowledged: bool
    acked_by: str | None
    acked_at: float | None
    ack_comment: str | None


class AlertPage(BaseModel):
    alerts: list[AlertOut] = Field(description="newest first")
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page; null on the last")


class Ack(BaseModel):
    comment: str = Field("", max_length=MAX_COMMENT, description="why, what was done (one line)")


class FeaturePsi(BaseModel):
    name: str
    psi: float


class DriftOut(BaseModel):
    edge: str
    device: str
    model: str
    version: int
    sha256: str
    state: str = Field(description="serving, rejected or failed, as the edge reported")
    message: str
    drift: Literal["ok", "warn", "drift", "unknown"]
    features: list[FeaturePsi] = Field(description="the inputs that moved most, largest PSI first")
    rows: int = Field(description="scored rows the drift statistics cover")
    last_score: float | None
    last_scored_at: float | None
    reported_at: float = Field(description="when the edge sent this report, epoch seconds")


def _s(us: int | None) -> float | None:
    return None if us is None else us / 1e6


def alert_out(a: AlertRecord) -> AlertOut:
    return AlertOut(id=a.id, edge=a.edge, alert_id=a.alert_id, device=a.device, model=a.model, version=a.version,
                    state=a.state, at=a.at / 1e6, raised_at=_s(a.raised_ts), cleared_at=_s(a.cleared_ts),
                    score=a.score, peak=a.peak, threshold=a.threshold, label=a.label, message=a.message,
                    acknowledged=a.acked_at is not None, acked_by=a.acked_by, acked_at=_s(a.acked_at),
                    ack_comment=a.ack_comment)


Ident = Annotated[str | None, Query(pattern=DEVICE_ID_PATTERN)]


@router.get("/alerts", response_model=AlertPage, responses={
    **_ERRORS, 400: {"description": "a bad time or cursor"}})
async def list_alerts(
    _: Viewer, ctx: Ctx, device: Ident = None, edge: Ident = None,
    state: Annotated[Literal["open", "cleared", "acknowledged", "unacknowledged"] | None, Query(
        description="open: not cleared yet; cleared; acknowledged; unacknowledged")] = None,
    start: Annotated[str | None, Query(alias="from", max_length=40,
                                       description="raised at or after: epoch seconds or ISO 8601")] = None,
    stop: Annotated[str | None, Query(alias="to", max_length=40,
                                      description="raised before: epoch seconds or ISO 8601")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=100)] = None,
) -> AlertPage:
    """Alerts, newest first, filtered by device, edge, state and time; a page at a time."""
    lo = parse_time("from", start, TS_MIN) if start else None
    hi = parse_time("to", stop, TS_MAX) if stop else None
    if lo is not None and hi is not None and lo >= hi:
        raise BadParameter("from must be before to", "from")
    try:
        after = decode_alert_cursor(cursor) if cursor else None
    except InputError as exc:
        raise BadParameter(str(exc.problems[0].message), "cursor") from None
    found = await ctx.storage.alerts(AlertQuery(device, edge, state, lo, hi, limit + 1, after))
    page = found[:limit]
    return AlertPage(alerts=[alert_out(a) for a in page],
                     next_cursor=encode_alert_cursor(page[-1]) if len(found) > limit else None)


@router.post("/alerts/{alert_id}/ack", response_model=AlertOut, responses={
    **_ERRORS, 404: {"description": "no such alert"}})
async def acknowledge(alert_id: Annotated[int, Path(ge=1, le=2**63 - 1)], body: Ack, operator: Operator,
                      ctx: Ctx) -> AlertOut:
    """Acknowledge an alert: who and when are recorded. A second acknowledgement changes nothing."""
    if any(ord(c) < 32 or ord(c) == 127 for c in body.comment):
        raise InputError("a comment is one line of text without control characters", "comment")
    return alert_out(await ctx.storage.ack_alert(alert_id, operator.name, body.comment, time.time_ns() // 1000))


@router.get("/drift", response_model=list[DriftOut], responses=_ERRORS)
async def drift(_: Viewer, ctx: Ctx, drifted: Annotated[bool, Query(
        description="only the devices whose model's inputs moved (warn or drift)")] = False) -> list[DriftOut]:
    """Each device's model as its edge last reported it: state, drift and the inputs that moved, by PSI."""
    return [DriftOut(edge=r.edge, device=r.device, model=r.model, version=r.version, sha256=r.sha256, state=r.state,
                     message=r.message, drift=r.drift,
                     features=[FeaturePsi(name=k, psi=v) for k, v in sorted(r.psi.items(), key=lambda kv: -kv[1])],
                     rows=r.rows, last_score=r.last_score, last_scored_at=r.last_scored_at,
                     reported_at=r.reported_at / 1e6)
            for r in await ctx.storage.model_reports() if not drifted or r.drift in DRIFTED]
