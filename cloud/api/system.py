"""``GET /health`` (no token: for load balancers and systemd) and ``GET /metrics`` (Prometheus)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from cloud.auth import authenticate, check_role
from cloud.context import Ctx
from cloud.storage.base import StorageError

__all__ = ["router"]

router = APIRouter(tags=["system"])


@router.get("/health", responses={503: {"description": "the database does not answer"}})
async def health(ctx: Ctx) -> JSONResponse:
    """Liveness and readiness: 200 when the database answers, 503 when it does not."""
    try:
        await ctx.storage.ping()
    except StorageError as exc:
        return JSONResponse({"status": "unavailable", "database": ctx.storage.backend, "reason": str(exc)}, 503)
    return JSONResponse({"status": "ok", "database": ctx.storage.backend})


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {}}},
                       401: {"description": "no token"}, 403: {"description": "not a viewer"}})
async def metrics(request: Request, ctx: Ctx) -> Response:
    """Prometheus metrics: this process's, with its ``replica`` label, and the fleet's per-edge counts, alerts
    and drift from the database (a viewer token, unless ``server.metrics_public``)."""
    if not ctx.config.server.metrics_public:
        check_role(await authenticate(request), "viewer")
    try:
        edges = await ctx.storage.edges()
        ml = await ctx.storage.ml_counts()
    except StorageError:
        edges, ml = [], None
    ctx.metrics.live_listening.set(ctx.hub.listening)
    return Response(ctx.metrics.render(edges, ml), media_type=CONTENT_TYPE_LATEST)
