"""The digital twin's data: history, time-bucket aggregates, latest state and a live WebSocket feed.

Times in requests are seconds since the epoch or ISO 8601 (``2026-01-31T12:00:00Z``);
times in answers are seconds since the epoch. Fields are sensor names, and
``metrics.<name>`` for derived metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse
from pydantic import BaseModel

try:
    import orjson
except ImportError:  # pragma: no cover - the cloud extra installs it
    orjson = None  # type: ignore[assignment]

from cloud.auth import NotAllowed, NotAuthenticated, Viewer, authenticate, check_role
from cloud.context import AppContext, Ctx
from cloud.errors import BadParameter, error_response
from cloud.querygate import client_of
from cloud.storage.base import AGG_FUNCS, AggRow, StorageError, UnknownDevice
from shared.configbase import parse_duration
from shared.errors import TwinedgeError
from shared.frame import TS_MAX, TS_MIN

__all__ = ["router"]

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1/twin", tags=["twin"])
MAX_BUCKETS = 10_000
Value = bool | float | str | None
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "bad parameter (time range, window, field, cursor); detail says which"},
    401: {"description": "no token, or an unknown or revoked one"},
    403: {"description": "the token may not read data"},
    404: {"description": "unknown device"},
    503: {"description": "the database is unavailable, or too many queries are waiting; retry after Retry-After"},
}


class SeriesPoints(BaseModel):
    field: str
    kind: str
    points: list[tuple[float, Value]]


class HistoryOut(BaseModel):
    device_id: str
    series: list[SeriesPoints]
    next_cursor: str | None


class SeriesBuckets(BaseModel):
    field: str
    buckets: list[dict[str, float]]


class AggregateOut(BaseModel):
    device_id: str
    start: float
    stop: float
    window_s: float
    series: list[SeriesBuckets]


class FieldValue(BaseModel):
    ts: float
    value: Value


class StateOut(BaseModel):
    device_id: str
    ts: float | None
    status: str | None
    edge: str | None
    values: dict[str, FieldValue]


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def _json(obj: Any) -> Response:
    """JSON written directly (the response model documents it): validating 10,000 points again costs more
    than the query. A sum can overflow to infinity, which JSON cannot carry: it becomes null."""
    if orjson is not None:  # ten times faster on long lists of floats; writes null for inf
        return Response(orjson.dumps(obj), media_type="application/json")
    try:
        text = json.dumps(obj, separators=(",", ":"), allow_nan=False)
    except ValueError:
        text = json.dumps(_finite(obj), separators=(",", ":"))
    return Response(text, media_type="application/json")


_FUNC: dict[str, Callable[[AggRow], float | None]] = {
    "mean": lambda a: a.sum / a.count, "min": lambda a: a.min, "max": lambda a: a.max, "sum": lambda a: a.sum,
    "count": lambda a: a.count, "first": lambda a: a.first, "last": lambda a: a.last}


def parse_time(name: str, raw: str | None, default: float) -> int:
    """Seconds since the epoch or ISO 8601 -> integer microseconds."""
    if raw is None or raw == "":
        return round(default * 1e6)
    try:
        value = float(raw)
    except ValueError:
        try:
            parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            raise BadParameter(f"expected seconds since the epoch or ISO 8601 such as '2026-01-31T12:00:00Z' "
                               f"(got {raw[:40]!r})", name) from None
        value = (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
    if not math.isfinite(value) or not TS_MIN <= value <= TS_MAX:
        raise BadParameter(f"must be between 2000 and 2100 (got {raw[:40]!r})", name)
    return round(value * 1e6)


def _range(start: str | None, stop: str | None, *, span: float | None = None) -> tuple[int, int]:
    """[start, stop) in µs. A parameter left out or empty takes its default: the stored data's whole range,
    or with ``span``, stop now and start ``span`` seconds before stop."""
    start, stop = (start or "").strip(), (stop or "").strip()
    hi = parse_time("stop", stop, TS_MAX if span is None else time.time())
    lo = parse_time("start", start, TS_MIN if span is None else max(TS_MIN, hi / 1e6 - span))
    if lo >= hi:
        raise BadParameter(f"start must be before stop (got start {lo / 1e6} >= stop {hi / 1e6})", "start")
    return lo, hi


def _fields(raw: str | None) -> list[str] | None:
    if not raw:
        return None
    names = [f.strip() for f in raw.split(",") if f.strip()]
    if len(names) > 200:
        raise BadParameter(f"at most 200 fields at once (got {len(names)})", "fields")
    return names or None


Device = Annotated[str, Query(min_length=1, max_length=64, description="device id")]
Fields = Annotated[str | None, Query(max_length=8000, description="comma-separated field names; all when left out")]
Start = Annotated[str | None, Query(max_length=40, description="from (inclusive): epoch seconds or ISO 8601")]
Stop = Annotated[str | None, Query(max_length=40, description="to (exclusive): epoch seconds or ISO 8601")]


@router.get("/devices", response_model=list[str], responses=_ERRORS)
async def devices(_: Viewer, ctx: Ctx) -> list[str]:
    """Every device that has sent data."""
    return await ctx.storage.devices()


@router.get("/history", response_model=HistoryOut, responses=_ERRORS)
async def history(who: Viewer, ctx: Ctx, device: Device, fields: Fields = None, start: Start = None,
                  stop: Stop = None, limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
                  cursor: Annotated[str | None, Query(max_length=400)] = None) -> Response:
    """Stored points, field by field and oldest first; pass ``next_cursor`` back as ``cursor`` for more.

    Without start (or with it empty): from the oldest point; without stop: to the newest.
    """
    lo, hi = _range(start, stop)
    async with ctx.queries.slot(client_of(who)):
        page = await ctx.storage.history(device, _fields(fields), lo, hi, limit, cursor)
    return _json({"device_id": device, "next_cursor": page.next_cursor, "series": [
        {"field": info.field, "kind": info.kind, "points": [(ts / 1_000_000, v) for ts, v in points]}
        for info, points in page.series]})


@router.get("/history/aggregate", response_model=AggregateOut, responses=_ERRORS)
async def aggregate(who: Viewer, ctx: Ctx, device: Device, start: Start = None, stop: Stop = None,
                    window: Annotated[str, Query(max_length=20, description="bucket width: '10s', '1m', '1h'")] = "1m",
                    funcs: Annotated[str, Query(max_length=100, description="of " + ", ".join(AGG_FUNCS))]
                    = "mean,min,max,count", fields: Fields = None) -> Response:
    """Time buckets aligned to the epoch; text fields are left out. Read from rollups of 10 s, 1 min and
    1 h wherever they fit, with the same answer as from the raw points.

    Without stop (or with it empty): now; without start: 24 hours before stop.
    """
    wanted = [f.strip() for f in funcs.split(",") if f.strip()]
    unknown = [f for f in wanted if f not in AGG_FUNCS]
    if unknown or not wanted:
        raise BadParameter(f"unknown function {unknown[0] if unknown else ''!r}; choose from {', '.join(AGG_FUNCS)}",
                           "funcs")
    lo, hi = _range(start, stop, span=86_400)
    try:
        width = parse_duration(window)
    except ValueError as exc:
        raise BadParameter(str(exc), "window") from None
    width_us = round(width * 1e6)
    if width_us < 1_000_000:
        raise BadParameter(f"must be at least 1s (got {window!r})", "window")
    if (hi - lo) / width_us > MAX_BUCKETS:
        raise BadParameter(f"{window!r} makes {math.ceil((hi - lo) / width_us):,} buckets over this range; "
                           f"at most {MAX_BUCKETS:,} — widen the window or narrow start/stop", "window")
    first_last = "first" in wanted or "last" in wanted
    async with ctx.queries.slot(client_of(who)):
        result = await ctx.storage.aggregate(device, _fields(fields), lo, hi, width_us, first_last)
    pick = [(f, _FUNC[f]) for f in wanted]
    series = [{"field": info.field, "buckets": [{"start": b / 1e6, **{f: get(agg) for f, get in pick}}
                                                for b, agg in buckets]}
              for info, buckets in result]
    return _json({"device_id": device, "start": lo / 1e6, "stop": hi / 1e6, "window_s": width, "series": series})


@router.get("/{device_id}/state", response_model=StateOut, responses=_ERRORS)
async def state(device_id: str, _: Viewer, ctx: Ctx) -> Response:
    """The newest value of every field of a device, and the status of its newest frame."""
    st = await ctx.storage.state(device_id)
    return _json({"device_id": device_id, "ts": None if st.last_ts is None else st.last_ts / 1e6,
                  "status": st.status, "edge": st.edge,
                  "values": {k: {"ts": ts / 1e6, "value": v} for k, (ts, v) in st.values.items()}})


@router.websocket("/ws/{device_id}")
async def live(websocket: WebSocket, device_id: str) -> None:
    """Frames of one device as they are stored: ``{"type": "frame", "frame": {...}}``.

    Token in ``Authorization: Bearer`` or, for browsers, a ``token`` query parameter.
    A client too slow to keep up gets ``{"type": "dropped", "count": n}``. The token or console session is
    checked again while the feed is open: once it has been signed out, rotated or revoked the feed is closed
    (code 4401; 4403 when the role no longer allows it).
    """
    ctx: AppContext = websocket.app.state.ctx
    try:
        check_role(await authenticate(websocket), "viewer")
        row = await ctx.storage.device(device_id)
        if row is None:
            raise UnknownDevice(f"device {device_id!r} has sent no data", "device_id")
    except TwinedgeError as exc:  # the same answers as over HTTP, as the handshake's answer
        await _deny(websocket, error_response(exc, ctx.config.sync.retry_after))
        return
    await websocket.accept()
    sub = ctx.hub.subscribe(device_id, row[1])
    ctx.metrics.ws_clients.inc()
    try:
        async with asyncio.TaskGroup() as tg:
            tasks = {tg.create_task(_until_closed(websocket), name=f"ws-read-{device_id}"),
                     tg.create_task(_pump(websocket, sub), name=f"ws-write-{device_id}"),
                     tg.create_task(_while_allowed(websocket, _recheck_every(ctx)), name=f"ws-auth-{device_id}")}
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in tasks:
                task.cancel()
    finally:
        ctx.hub.unsubscribe(sub)
        ctx.metrics.ws_clients.dec()


async def _deny(websocket: WebSocket, answer: JSONResponse) -> None:
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(answer)
    else:
        await websocket.close(code=4000 + answer.status_code)


def _recheck_every(ctx: AppContext) -> float:
    """How often an open feed checks its token or session again: as often as a checked one is trusted."""
    return min(max(ctx.config.server.auth_cache_ttl, 1.0), 30.0)


async def _while_allowed(websocket: WebSocket, every: float) -> None:
    """Return (closing the feed) once its token or console session no longer lets it read: signed out,
    expired, rotated, revoked or demoted below viewer. A database that does not answer closes nothing."""
    while True:
        await asyncio.sleep(every)
        try:
            check_role(await authenticate(websocket), "viewer")
        except (NotAuthenticated, NotAllowed) as exc:
            log.info("a live feed was closed: %s", exc.problems[0].message)
            code = 4401 if isinstance(exc, NotAuthenticated) else 4403  # as a refused handshake would say
            with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
                await websocket.close(code=code, reason="signed out, or the token was revoked")
            return
        except StorageError:
            continue


async def _until_closed(websocket: WebSocket) -> None:
    try:
        while True:
            await websocket.receive_text()
    except (WebSocketDisconnect, RuntimeError):
        return


async def _pump(websocket: WebSocket, sub: Any) -> None:
    try:
        while True:
            frame = await sub.queue.get()
            if sub.dropped:
                await websocket.send_json({"type": "dropped", "count": sub.dropped})
                sub.dropped = 0
            await websocket.send_json({"type": "frame", "frame": frame.to_wire()})
    except (WebSocketDisconnect, RuntimeError, OSError):
        return
