"""The app in the test process behind httpx.ASGITransport, with its lifespan run and tokens made."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from cloud.app import create_app
from cloud.config import CloudConfig
from cloud.context import AppContext
from cloud.identities import add_edge, add_user
from shared.codec import encode_obj
from shared.frame import TelemetryFrame

__all__ = ["Api", "auth", "batch", "make_api"]

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def batch(edge: str, frames: list[tuple[int, dict[str, Any]]], queue_depth: int = 0) -> dict[str, Any]:
    return {"edge_id": edge, "sent_at": time.time(),
            "frames": [{"seq": s, "frame": f} for s, f in frames],
            "health": {"queue_depth": queue_depth, "oldest_age_s": 0.5, "drops": {"disk_budget": 1},
                       "quarantined": 0, "sources": {"plc": "connected"}}}


def wire(i: int, device: str = "press-1", **sensors: Any) -> dict[str, Any]:
    return TelemetryFrame(ts=T0 + i, device_id=device, sensors=sensors or {"temp": 20.0 + i, "rpm": 1000 + i},
                          metrics={"score": 0.01 * i}).to_wire()


@dataclass
class Api:
    app: FastAPI
    client: httpx.AsyncClient
    edge: str
    admin: str
    operator: str
    viewer: str
    other_edge: str

    @property
    def ctx(self) -> AppContext:
        return self.app.state.ctx  # type: ignore[no-any-return]

    async def sync(self, body: dict[str, Any], token: str | None = None, **headers: str) -> httpx.Response:
        return await self.client.post("/api/v1/sync/batches", content=encode_obj(body),
                                      headers={**auth(token or self.edge), "Content-Type": "application/msgpack",
                                               **headers})


def config_for(directory: Path, **sections: dict[str, Any]) -> CloudConfig:
    # Retention off unless a test sets it: its pass at start-up would race the test's data of fixed past dates.
    data: dict[str, Any] = {"database": {"url": f"sqlite:///{directory / 'api.db'}"},
                            "server": {"auth_cache_ttl": "0s", "replica": "api-1"},
                            "retention": {"samples_days": 0, "rollups_days": 0}}
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return CloudConfig.model_validate(data)


@contextlib.asynccontextmanager
async def make_api(directory: Path, **sections: dict[str, Any]) -> AsyncIterator[Api]:
    app = create_app(config_for(directory, **sections))
    async with app.router.lifespan_context(app):
        storage = app.state.ctx.storage
        tokens = [await add_edge(storage, "edge-1"), await add_user(storage, "root", "admin"),
                  await add_user(storage, "olga", "operator"), await add_user(storage, "vic", "viewer"),
                  await add_edge(storage, "edge-2")]
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://cloud.test") as client:
            yield Api(app, client, *tokens)
