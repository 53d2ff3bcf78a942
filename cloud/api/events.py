"""The edges' event log over HTTP: what happened on each edge, in plain words, for operators and technicians.

Events arrive with the sync batches (``cloud.api.sync``), once per edge and
event sequence. ``level`` filters by reader: ``operator`` shows operator events
only, ``technical`` adds the technical ones, ``developer`` shows all (the
default); ``levels`` instead names exact levels. Newest first, by the time the
event happened on its edge, a page at a time (``next_cursor``).
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from cloud.api.twin import parse_time
from cloud.auth import Viewer
from cloud.context import Ctx
from cloud.errors import BadParameter
from cloud.storage.events import EventQuery, EventRecord, decode_event_cursor, encode_event_cursor
from shared.batch import EVENT_LEVELS, levels_up_to
from shared.errors import InputError
from shared.frame import DEVICE_ID_PATTERN, TS_MAX, TS_MIN

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["edge events"])
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "no token, or an unknown or revoked one"},
    403: {"description": "the token's role may not do this"},
    400: {"description": "a bad time or cursor"},
}
Level = Literal["operator", "technical", "developer"]


class EventOut(BaseModel):
    id: int = Field(description="the cloud's id of the event")
    edge: str
    seq: int = Field(description="the edge's sequence of the event")
    ts: float = Field(description="when it happened on the edge, epoch seconds")
    level: Level
    kind: str = Field(description="source_lost, source_recovered, model_swapped, queue_full, ... (docs/api.md)")
    device: str | None
    source: str | None
    message: str
    details: dict[str, Any]
    received_at: float = Field(description="when the cloud stored it, epoch seconds")


class EventPage(BaseModel):
    events: list[EventOut] = Field(description="newest first")
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page; null on the last")


def event_out(e: EventRecord) -> EventOut:
    try:
        details = json.loads(e.details)
    except ValueError:
        details = {}
    return EventOut(id=e.id, edge=e.edge, seq=e.seq, ts=e.ts / 1e6, level=e.level_name,
                    kind=e.kind, device=e.device, source=e.source, message=e.message,
                    details=details if isinstance(details, dict) else {}, received_at=e.received_at / 1e6)


Ident = Annotated[str | None, Query(pattern=DEVICE_ID_PATTERN)]


@router.get("/events", response_model=EventPage, responses=_ERRORS)
async def list_events(
    _: Viewer, ctx: Ctx, edge: Ident = None, device: Ident = None,
    level: Annotated[Level, Query(description="operator: operator events only; technical: operator and "
                                              "technical; developer: all")] = "developer",
    levels: Annotated[list[Level] | None, Query(max_length=3, description="exact levels instead (repeat the "
                                                                          "parameter); overrides level")] = None,
    kind: Annotated[str | None, Query(pattern=r"^[a-z][a-z0-9_]{0,31}$")] = None,
    start: Annotated[str | None, Query(alias="from", max_length=40,
                                       description="at or after: epoch seconds or ISO 8601")] = None,
    stop: Annotated[str | None, Query(alias="to", max_length=40,
                                      description="before: epoch seconds or ISO 8601")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=100)] = None,
) -> EventPage:
    """The edges' events, newest first, filtered by edge, device, level, kind and time; a page at a time."""
    lo = parse_time("from", start, TS_MIN) if start else None
    hi = parse_time("to", stop, TS_MAX) if stop else None
    if lo is not None and hi is not None and lo >= hi:
        raise BadParameter("from must be before to", "from")
    try:
        after = decode_event_cursor(cursor) if cursor else None
    except InputError as exc:
        raise BadParameter(str(exc.problems[0].message), "cursor") from None
    shown = tuple(EVENT_LEVELS.index(x) for x in (levels or levels_up_to(level)))
    found = await ctx.storage.events(EventQuery(edge, device, shown, kind, lo, hi, limit + 1, after))
    page = found[:limit]
    return EventPage(events=[event_out(e) for e in page],
                     next_cursor=encode_event_cursor(page[-1]) if len(found) > limit else None)
