"""What every request handler needs from the running app, in one object on ``app.state.ctx``."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request

from cloud.auth import Authenticator
from cloud.config import CloudConfig, QueryConfig
from cloud.edgeslots import EdgeSlots
from cloud.live import LiveHub
from cloud.metrics import Metrics
from cloud.querygate import QueryGate
from cloud.storage.base import Storage

if TYPE_CHECKING:
    from cloud.api.process_optimize import OptimizerSlots
    from cloud.process.runner import Engine

__all__ = ["AppContext", "Ctx"]


@dataclass
class AppContext:
    config: CloudConfig
    storage: Storage
    auth: Authenticator
    metrics: Metrics
    hub: LiveHub
    sync_slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(8))
    edge_slots: EdgeSlots = field(default_factory=EdgeSlots)
    parser: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="sync-parse"))
    queries: QueryGate = field(default_factory=lambda: QueryGate(QueryConfig()))
    engine: Engine | None = None  # virtual sensors (cloud.process.runner); None where they are not installed
    optimizer: OptimizerSlots | None = None  # optimizer searches (cloud.api.process_optimize)


async def get_ctx(request: Request) -> AppContext:
    """``async`` so that FastAPI calls it on the event loop: a plain function would cost a thread hop."""
    return request.app.state.ctx


Ctx = Annotated[AppContext, Depends(get_ctx)]
