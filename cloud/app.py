"""The cloud aggregator's ASGI app: ``create_app(config)`` wires storage, auth, metrics and routers.

Stateless between requests: everything lives in the database, so several
processes (``server.workers``) or machines can serve one PostgreSQL database.
Each process has its own retention task; their deletes are idempotent. On
PostgreSQL the live feed hears the batches other processes store through
LISTEN/NOTIFY, and polls while it cannot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from cloud import __doc__ as _about
from cloud.api import (
    alerts,
    devices,
    edges,
    events,
    models,
    physics,
    process,
    process_optimize,
    programs,
    sync,
    system,
    twin,
)
from cloud.api.process_optimize import OptimizerSlots
from cloud.apidocs import add_api_docs
from cloud.auth import Authenticator
from cloud.config import CONFIG_ENV, REPLICA_ENV, CloudConfig, load_cloud_config
from cloud.console import add_console
from cloud.context import AppContext
from cloud.errors import install_error_handlers
from cloud.guard import RequestGuard
from cloud.live import LiveHub
from cloud.metrics import Metrics, MetricsMiddleware
from cloud.physics.assembly import AssemblySpec
from cloud.physics.store import PhysicsStore
from cloud.process.runner import Engine
from cloud.querygate import QueryGate
from cloud.storage import open_storage
from cloud.storage.base import StorageError
from shared.batch import SyncBatch

__all__ = ["VERSION", "app_from_env", "apply_retention", "create_app"]

log = logging.getLogger(__name__)
VERSION = "0.1.0"
DAY_US = 86_400_000_000


async def apply_retention(ctx: AppContext, now_us: int) -> int:
    """Delete what is older than the retention settings; returns the rows deleted."""
    cfg = ctx.config.retention
    samples = now_us - cfg.samples_days * DAY_US if cfg.samples_days else None
    rollups = now_us - cfg.rollups_days * DAY_US if cfg.rollups_days else None
    if samples is None and rollups is None:
        return 0
    return await ctx.storage.purge(samples, rollups)


async def _retention_loop(ctx: AppContext) -> None:
    interval = ctx.config.retention.interval
    while True:
        try:
            deleted = await apply_retention(ctx, time.time_ns() // 1000)
            if deleted:
                log.info("retention: removed %d old rows", deleted)
        except StorageError as exc:
            log.warning("retention: could not remove old data (%s); trying again in %.0f s", exc, interval)
        await asyncio.sleep(interval)


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = schema.setdefault("components", {})
    # Bodies the routes read themselves (after the token check), so FastAPI does not see their models.
    bodies: dict[str, type[BaseModel]] = {"SyncBatch": SyncBatch, physics.UPLOAD_SCHEMA: AssemblySpec}
    for name, model in bodies.items():
        body = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.setdefault("schemas", {}).update(body.pop("$defs", {}))
        components["schemas"][name] = body
    components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    schema["security"] = [{"bearer": []}]
    app.openapi_schema = schema
    return schema


def create_app(config: CloudConfig) -> FastAPI:
    metrics = Metrics(config.server.replica or socket.gethostname())
    # Uploads go to the database (every process and replica sees them); loaded ones are cached here.
    store = PhysicsStore(max_upload_bytes=config.physics.max_upload_bytes,
                         time_budget_s=config.physics.time_budget_s,
                         memory_budget_mb=config.physics.memory_budget_mb)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        storage = open_storage(config.database)
        try:
            await storage.open()
            await store.bind(storage, config.physics.store_dir)
        except StorageError as exc:
            log.error("twincloud cannot start: %s", exc)
            raise
        feed = None
        if storage.backend == "postgres":
            from cloud.storage.postgres import PostgresStorage

            assert isinstance(storage, PostgresStorage)
            feed = storage.feed()
        auth = Authenticator(storage, config.server.auth_cache_ttl, console=config.console)
        ctx = AppContext(config, storage, auth, metrics,
                         LiveHub(storage, config.server.live_poll, feed),
                         sync_slots=asyncio.Semaphore(config.sync.max_concurrent),
                         queries=QueryGate(config.queries))
        ctx.engine = Engine(storage, config.process, ctx.hub)
        ctx.optimizer = OptimizerSlots(config.process.max_optimizations)
        app.state.ctx = ctx
        engine = asyncio.create_task(ctx.engine.run(), name="twincloud-virtual-sensors")
        retention = asyncio.create_task(_retention_loop(ctx), name="twincloud-retention")
        live = asyncio.create_task(ctx.hub.run(), name="twincloud-live-feed")
        log.info("twincloud ready: %s storage, schema version %d", storage.backend, await storage.schema_version())
        try:
            yield
        finally:
            for task in (retention, live, engine):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            ctx.parser.shutdown(wait=True)
            ctx.optimizer.close()
            await storage.close()
            metrics.process_ended()

    docs = config.server.api_docs
    app = FastAPI(title="twincloud", version=VERSION, description=(_about or "").strip(), lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None if docs == "off" else "/openapi.json")
    app.add_middleware(RequestGuard, config=config)  # in front of routing: the token and the body's bounds
    app.add_middleware(MetricsMiddleware, metrics=metrics)  # outermost: the guard's refusals are counted too
    install_error_handlers(app)
    add_api_docs(app, docs)
    app.include_router(system.router)
    app.include_router(sync.router)
    app.include_router(twin.router)
    app.include_router(edges.router)
    app.include_router(devices.router)
    app.include_router(models.router)
    app.include_router(alerts.router)
    app.include_router(events.router)
    app.include_router(programs.router)
    app.include_router(physics.router)
    app.include_router(process.router)
    app.include_router(process_optimize.router)
    app.dependency_overrides[physics.get_store] = lambda: store
    if config.console.enabled:
        add_console(app)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def app_from_env() -> FastAPI:
    """For ``uvicorn --factory cloud.app:app_from_env`` (workers): the config named by TWINCLOUD_CONFIG."""
    config = load_cloud_config(os.environ.get(CONFIG_ENV) or None)
    # The workers of a replica count together (cloud.metrics): one name for all of them.
    replica = os.environ.get(REPLICA_ENV) or config.server.replica or socket.gethostname()
    return create_app(config.model_copy(update={"server": config.server.model_copy(update={"replica": replica})}))
