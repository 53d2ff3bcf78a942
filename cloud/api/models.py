"""The model registry over HTTP: upload, list, inspect, download and delete model versions; assign them.

Viewers read, operators upload and assign, admins delete. An edge's token
may read its own assignment list (``GET /edges/{edge_id}/models``) and
download packages; nothing else here. Uploads are the package's bytes as the
body (``application/zip``), at most 64 MiB, refused on their Content-Length
before a byte is read (``cloud.guard``). See ``cloud.models.registry`` for
what an upload must be and how rules apply.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, Field

from cloud.auth import Admin, NotAllowed, Operator, Viewer, ViewerOrEdge
from cloud.body import read_body
from cloud.context import Ctx
from cloud.models import registry
from cloud.storage.registry import Assignment, ModelVersion, UnknownModel, UnknownRule
from shared.frame import DEVICE_ID_PATTERN
from shared.modelpackage import MAX_PACKAGE, MODEL_NAME_PATTERN, AssignmentList, ModelAssignment

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["models"])
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "no token, or an unknown or revoked one"},
    403: {"description": "the token's role may not do this"},
}
_UNKNOWN: dict[int | str, dict[str, Any]] = {404: {"description": "no such model or version"}}
Name = Annotated[str, Path(pattern=MODEL_NAME_PATTERN, description="the model's name (from its card)")]
Version = Annotated[int, Path(ge=1, le=2**31 - 1)]
EdgeId = Annotated[str, Path(pattern=DEVICE_ID_PATTERN)]
_UPLOAD_BODY: dict[str, Any] = {"requestBody": {
    "required": True,
    "description": f"A model package (.twinmodel, a ZIP file) as it is, at most {MAX_PACKAGE:,} bytes; "
                   "Content-Encoding gzip or zstd allowed.",
    "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}}}}


class Uploaded(BaseModel):
    name: str
    version: int
    sha256: str


class VersionOut(BaseModel):
    name: str
    version: int
    kind: str
    sha256: str
    size: int = Field(description="bytes of the package")
    description: str
    created_at: float | None = Field(description="when training made it, epoch seconds")
    uploaded_by: str
    uploaded_at: float = Field(description="epoch seconds")


class ModelOut(BaseModel):
    name: str
    kind: str
    latest: int = Field(description="the newest version")
    versions: list[int]
    description: str = Field(description="the newest version's")


class RuleOut(BaseModel):
    scope: Literal["device", "edge", "fleet"]
    target: str | None = Field(description="the device or edge; null for the fleet")
    model: str
    version: int
    sha256: str
    size: int
    assigned_by: str
    assigned_at: float = Field(description="epoch seconds")


class ModelInfo(VersionOut):
    input_schema: dict[str, Any] = Field(description="the model's input schema (sensors, mode, features, scaling, "
                                                     "threshold or labels)")
    metrics: dict[str, dict[str, float]] = Field(description="fp32 and int8 side by side")
    size_bytes: dict[str, int] = Field(description="model file sizes, fp32 and int8")
    baseline: dict[str, Any] | None
    source: dict[str, Any] = Field(description="where the training data came from")
    training: dict[str, Any]
    feature_stats: list[dict[str, Any]] = Field(
        default_factory=list, description="each input column of the training data before scaling: name, mean, "
                                          "std, min, max, and its bins (edges, expected share) drift is measured by")
    assignments: list[RuleOut] = Field(description="the rules that name this version")


class RuleIn(BaseModel):
    scope: Literal["device", "edge", "fleet"]
    target: str | None = Field(None, max_length=64, description="the device or edge; leave it out for the fleet")
    model: str = Field(pattern=MODEL_NAME_PATTERN)
    version: int = Field(ge=1, le=2**31 - 1)


def _version_out(m: ModelVersion) -> dict[str, Any]:
    card = m.card_dict()
    return {"name": m.name, "version": m.version, "kind": m.kind, "sha256": m.sha256, "size": m.size,
            "description": card.get("description", ""), "created_at": card.get("created_at"),
            "uploaded_by": m.uploaded_by, "uploaded_at": m.uploaded_at / 1e6}


def _rule_out(a: Assignment) -> RuleOut:
    return RuleOut(scope=a.scope, target=a.target, model=a.model, version=a.version,
                   sha256=a.sha256, size=a.size, assigned_by=a.assigned_by, assigned_at=a.assigned_at / 1e6)


async def _version(ctx: Ctx, name: str, version: int) -> ModelVersion:
    found = await ctx.storage.model_version(name, version)
    if found is None:
        raise UnknownModel(f"model {name!r} has no version {version}", "version")
    return found


@router.post("/models", response_model=Uploaded, status_code=201, openapi_extra=_UPLOAD_BODY, responses={
    **_ERRORS, 200: {"model": Uploaded, "description": "this package is stored already: its version"},
    400: {"description": "unreadable body (broken gzip/zstd)"},
    413: {"description": f"more than {MAX_PACKAGE:,} bytes"},
    422: {"description": "not a valid model package; detail says why"}})
async def upload_model(request: Request, operator: Operator, ctx: Ctx, response: Response) -> Uploaded:
    """Upload a model package: checked whole (members, schema against card, and the model run on its test
    vectors), then stored as the next version of its name."""
    data, _wire = await read_body(request, MAX_PACKAGE, MAX_PACKAGE)
    stored, new = await registry.upload(ctx.storage, data, operator.name)
    if not new:
        response.status_code = 200
    return Uploaded(name=stored.name, version=stored.version, sha256=stored.sha256)


@router.get("/models", response_model=list[ModelOut], responses=_ERRORS)
async def list_models(_: Viewer, ctx: Ctx) -> list[ModelOut]:
    """Every model name with its versions."""
    by_name: dict[str, list[ModelVersion]] = {}
    for m in await ctx.storage.models():
        by_name.setdefault(m.name, []).append(m)
    return [ModelOut(name=name, kind=vs[-1].kind, latest=vs[-1].version, versions=[v.version for v in vs],
                     description=vs[-1].card_dict().get("description", "")) for name, vs in by_name.items()]


@router.get("/models/{name}", response_model=list[VersionOut], responses={**_ERRORS, **_UNKNOWN})
async def list_versions(name: Name, _: Viewer, ctx: Ctx) -> list[VersionOut]:
    """The versions of a model, oldest first."""
    found = await ctx.storage.models(name)
    if not found:
        raise UnknownModel(f"no model named {name!r}", "name")
    return [VersionOut(**_version_out(m)) for m in found]


@router.get("/models/{name}/versions/{version}", response_model=ModelInfo, responses={**_ERRORS, **_UNKNOWN})
async def model_info(name: Name, version: Version, _: Viewer, ctx: Ctx) -> ModelInfo:
    """A version's card: input schema, metrics (FP32 and INT8), sizes, source data, training; and where it
    is assigned."""
    m = await _version(ctx, name, version)
    card = m.card_dict()
    rules = [_rule_out(a) for a in await ctx.storage.assignments() if (a.model, a.version) == (name, version)]
    return ModelInfo(**_version_out(m), input_schema=m.schema_dict(), metrics=card.get("metrics", {}),
                     size_bytes=card.get("size_bytes", {}), baseline=card.get("baseline"),
                     source=card.get("source", {}), training=card.get("training", {}),
                     feature_stats=card.get("feature_stats", []), assignments=rules)


@router.get("/models/{name}/versions/{version}/package", response_class=Response, responses={
    200: {"content": {"application/zip": {}}, "description": "the package; ETag is its sha256"},
    304: {"description": "If-None-Match named this package"}, **_ERRORS, **_UNKNOWN})
async def download(name: Name, version: Version, request: Request, who: ViewerOrEdge, ctx: Ctx) -> Response:
    """The package's bytes as uploaded. An edge's token downloads only the versions its rules name."""
    if who.kind == "edge" and not any(a.model == name and a.version == version
                                      for a in await registry.for_edge(ctx.storage, who.name)):
        raise NotAllowed(f"no rule assigns {name} version {version} to edge {who.name!r}; an edge downloads "
                         f"only the models assigned to it", "version")
    found = await ctx.storage.model_package(name, version)
    if found is None:
        raise UnknownModel(f"model {name!r} has no version {version}", "version")
    sha256, data = found
    etag = f'"{sha256}"'
    headers = {"ETag": etag, "Cache-Control": "private, max-age=31536000, immutable"}
    wanted = {t.strip() for t in request.headers.get("if-none-match", "").split(",")}
    if etag in wanted or sha256 in wanted or "*" in wanted:
        return Response(status_code=304, headers=headers)
    headers["Content-Disposition"] = f'attachment; filename="{name}-{version}.twinmodel"'
    return Response(data, media_type="application/zip", headers=headers)


@router.delete("/models/{name}/versions/{version}", status_code=204, responses={
    **_ERRORS, **_UNKNOWN, 409: {"description": "the version is assigned; detail says where"}})
async def delete_version(name: Name, version: Version, _: Admin, ctx: Ctx) -> None:
    """Delete a version that no rule names. Its number is never given again."""
    await ctx.storage.delete_model(name, version)


@router.get("/model-assignments", response_model=list[RuleOut], responses=_ERRORS)
async def list_rules(_: Viewer, ctx: Ctx, device: Annotated[str | None, Query(
        pattern=DEVICE_ID_PATTERN, description="only the rule that scores this device (device, then its edge, "
                                               "then the fleet)")] = None) -> list[RuleOut]:
    """Every rule: which model version scores a device, an edge's devices, or the fleet."""
    rules = await ctx.storage.assignments()
    if device is not None:
        owner = next((d.owner for d in await ctx.storage.device_records() if d.name == device), None)
        rule = registry.effective(rules, device, owner)
        rules = [rule] if rule else []
    return [_rule_out(a) for a in rules]


@router.put("/model-assignments", response_model=RuleOut, responses={
    **_ERRORS, 404: {"description": "unknown model, version or edge"},
    422: {"description": "the target does not fit the scope"}})
async def put_rule(body: RuleIn, operator: Operator, ctx: Ctx) -> RuleOut:
    """Set the model version of a device, an edge's devices, or the fleet (replacing the one it had).
    Rolling back is assigning the previous version."""
    rule = await registry.assign(ctx.storage, body.scope, body.target, body.model, body.version, operator.name)
    return _rule_out(rule)


@router.delete("/model-assignments", status_code=204, responses={
    **_ERRORS, 404: {"description": "no such rule"}})
async def delete_rule(operator: Operator, ctx: Ctx, scope: Literal["device", "edge", "fleet"],
                      target: Annotated[str | None, Query(max_length=64)] = None) -> None:
    """Remove a rule: its devices fall back to the next rule (edge, then fleet), or to no model."""
    if not await registry.unassign(ctx.storage, scope, target, operator.name):
        raise UnknownRule(f"no {scope} rule{'' if scope == 'fleet' else f' for {target!r}'}", "target")


@router.get("/edges/{edge_id}/models", response_model=AssignmentList,
            responses={**_ERRORS, 404: {"description": "no such edge"}})
async def edge_rules(edge_id: EdgeId, who: ViewerOrEdge, ctx: Ctx) -> AssignmentList:
    """The rules that apply to an edge: device rules of the devices it owns (or that no edge owns yet), its
    edge rule and the fleet rule. The edge picks the most specific one per device. An edge's token reads
    only its own list."""
    if who.kind == "edge" and who.name != edge_id:
        raise NotAllowed(f"this token belongs to edge {who.name!r}; it may read only its own models", "edge_id")
    rules = await registry.for_edge(ctx.storage, edge_id)
    return AssignmentList(assignments=[ModelAssignment(scope=a.scope, target=a.target,
                                                       model=a.model, version=a.version, sha256=a.sha256,
                                                       size=a.size) for a in rules])

