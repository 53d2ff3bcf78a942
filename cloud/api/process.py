"""Virtual sensors over HTTP: define, list, enable, disable and test bindings; read a binding's derived points.

Viewers list bindings and read derived points; operators define, enable,
disable and test them (a test runs a model, which costs CPU). A binding that
cannot run as given (an unknown device or sensor, units that do not convert,
an expression that is not allowed, a loop through another binding) is refused
with 422 and one line per problem, naming the key and the value.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from cloud.api.twin import parse_time
from cloud.auth import Operator, Viewer
from cloud.context import AppContext, Ctx
from cloud.errors import BadParameter
from cloud.process.bindings import BINDING_NAME_PATTERN, BindingSpec
from cloud.process.engine import now_us
from cloud.process.runner import Engine
from cloud.storage.base import NotSupported
from cloud.storage.derived import BindingRow
from shared.frame import TS_MAX, TS_MIN

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/process", tags=["process"])
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "no token, or an unknown or revoked one"},
    403: {"description": "the token's role may not do this"},
}
_UNKNOWN: dict[int | str, dict[str, Any]] = {404: {"description": "no binding of that name"}}
_REFUSED: dict[int | str, dict[str, Any]] = {
    404: {"description": "unknown device or process model"},
    422: {"description": "the binding cannot run as given; detail names each key and value"}}
Name = Annotated[str, Path(pattern=BINDING_NAME_PATTERN, description="the binding's name")]
MAX_TEST_POINTS = 10_000


class BindingOut(BaseModel):
    name: str
    device: str
    kind: str = Field(description="formula or model")
    enabled: bool
    spec: dict[str, Any] = Field(description="the definition as given (BindingSpec)")
    watermark: float | None = Field(description="the newest reading processed, epoch seconds")
    points: int = Field(description="points derived so far")
    flagged: int = Field(description="points flagged (no value: a failed solve, a missing or NaN input)")
    last_flag: str | None
    created_by: str
    created_at: float
    updated_at: float


class PointOut(BaseModel):
    field: str
    ts: float = Field(description="epoch seconds")
    value: float | None = Field(description="null when flagged")
    flag: str | None = Field(description="why there is no value")
    watermark: float = Field(description="the newest input reading this value depends on, epoch seconds")
    model: str | None = None
    version: str | None = None
    param_hash: str | None = None
    backend: str | None = None
    rtol: float | None = None
    atol: float | None = None


class TestRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    binding: BindingSpec | None = Field(default=None, description="a definition to try (else 'name')")
    name: str | None = Field(default=None, pattern=BINDING_NAME_PATTERN, description="a defined binding")
    start: str = Field(max_length=40, description="epoch seconds or ISO 8601")
    stop: str = Field(max_length=40, description="epoch seconds or ISO 8601")
    max_points: int = Field(default=1000, ge=1, le=MAX_TEST_POINTS)


class TestOut(BaseModel):
    points: list[PointOut]
    truncated: bool


def _engine(ctx: AppContext) -> Engine:
    if ctx.engine is None:
        raise NotSupported("virtual sensors are not running in this process")
    return ctx.engine


def binding_out(row: BindingRow) -> BindingOut:
    return BindingOut(name=row.name, device=row.device, kind=row.spec.get("spec", {}).get("kind", "?"),
                      enabled=row.enabled, spec=row.spec,
                      watermark=None if row.watermark is None else row.watermark / 1e6, points=row.points,
                      flagged=row.flagged, last_flag=row.last_flag, created_by=row.created_by,
                      created_at=row.created_at / 1e6, updated_at=row.updated_at / 1e6)


@router.post("/bindings", response_model=BindingOut, status_code=201, responses={
    **_ERRORS, **_REFUSED, 409: {"description": "a binding of that name exists (replace=true replaces it)"}})
async def define(body: BindingSpec, operator: Operator, ctx: Ctx,
                 replace: Annotated[bool, Query(description="replace a binding of the same name")] = False,
                 ) -> BindingOut:
    """Define a binding: checked against the device's fields, the model's contract and the limits, then run
    over the device's stored readings, the oldest first, and every new one (a replaced binding keeps its
    watermark)."""
    return binding_out(await _engine(ctx).define(body, operator.name, replace=replace))


@router.get("/bindings", response_model=list[BindingOut], responses=_ERRORS)
async def list_bindings(_: Viewer, ctx: Ctx, device: Annotated[str | None, Query(max_length=64)] = None,
                        ) -> list[BindingOut]:
    """Every binding (of one device), by name, with its progress."""
    return [binding_out(r) for r in await ctx.storage.bindings(device)]


@router.get("/bindings/{name}", response_model=BindingOut, responses={**_ERRORS, **_UNKNOWN})
async def show(name: Name, _: Viewer, ctx: Ctx) -> BindingOut:
    return binding_out(await _engine(ctx).binding(name))


async def _switch(name: str, enabled: bool, ctx: AppContext) -> BindingOut:
    row = await ctx.storage.set_binding_enabled(name, enabled, now_us())
    if enabled:
        _engine(ctx).notify([row.device])
    return binding_out(row)


@router.post("/bindings/{name}/enable", response_model=BindingOut, responses={**_ERRORS, **_UNKNOWN})
async def enable(name: Name, _: Operator, ctx: Ctx) -> BindingOut:
    """Run the binding again: it catches up from its watermark."""
    return await _switch(name, True, ctx)


@router.post("/bindings/{name}/disable", response_model=BindingOut, responses={**_ERRORS, **_UNKNOWN})
async def disable(name: Name, _: Operator, ctx: Ctx) -> BindingOut:
    """Stop running the binding; what it derived stays."""
    return await _switch(name, False, ctx)


@router.get("/bindings/{name}/points", response_model=list[PointOut], responses={**_ERRORS, **_UNKNOWN})
async def points(name: Name, _: Viewer, ctx: Ctx,
                 start: Annotated[str | None, Query(max_length=40)] = None,
                 stop: Annotated[str | None, Query(max_length=40)] = None,
                 limit: Annotated[int, Query(ge=1, le=10_000)] = 1000) -> list[PointOut]:
    """The binding's derived points with their tags (flagged ones included), oldest first."""
    lo, hi = parse_time("start", start, TS_MIN), parse_time("stop", stop, TS_MAX)
    rows = await ctx.storage.derived_points(name, lo, hi, limit)
    return [PointOut(field=r.field, ts=r.ts / 1e6, value=r.value, flag=r.flag, watermark=r.watermark / 1e6,
                     model=r.model, version=r.version, param_hash=r.param_hash, backend=r.backend, rtol=r.rtol,
                     atol=r.atol) for r in rows]


@router.post("/test", response_model=TestOut, responses={**_ERRORS, **_REFUSED, **_UNKNOWN})
async def test(body: TestRequest, _: Operator, ctx: Ctx) -> TestOut:
    """Run a binding (a defined one, or a definition to try) over a stored range; nothing is stored."""
    engine = _engine(ctx)
    if (body.binding is None) == (body.name is None):
        raise BadParameter("give either 'binding' (a definition) or 'name' (a defined binding)", "binding")
    spec = body.binding or BindingSpec.model_validate((await engine.binding(body.name or "")).spec)
    lo, hi = parse_time("start", body.start, TS_MIN), parse_time("stop", body.stop, TS_MAX)
    if lo >= hi:
        raise BadParameter("start must be before stop", "start")
    found = await engine.replay(spec, lo, hi, body.max_points + 1)
    return TestOut(points=[PointOut(field=p.field, ts=p.ts / 1e6, value=p.value, flag=p.flag or None,
                                    watermark=p.watermark / 1e6) for p in found[:body.max_points]],
                   truncated=len(found) > body.max_points)
