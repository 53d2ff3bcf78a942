"""The moulding optimizer over HTTP: ``POST /api/v1/process/optimize`` (operator role).

A search costs CPU, so it is bounded three ways: by its wall-time budget (at
most ``MAX_BUDGET_S``, the full-accuracy re-check included: see
``cloud.process.optimize``), by its number of candidates (at most
``MAX_CANDIDATES``), and by how many run at once in this process
(``process.max_optimizations``, default 1). Each runs in a thread of the
optimizer's own pool, never on the event loop nor in the shared worker
threads (uploads, replays). A request past the limit is answered 503 at once,
with Retry-After the time the running search may still take. A client that
hangs up calls its search off: it ends at its next candidate (one more
full-accuracy solve at most) and frees its slot; so does every running search
when the service stops. An unknown
scenario, a setting that cannot be searched, bounds outside the scenario's
ranges or an empty search space answer 422 with one line per problem; a
search that finds nothing feasible answers 200 with ``feasible: false`` and
the binding constraints.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from cloud.auth import Operator
from cloud.context import Ctx
from cloud.errors import Busy
from cloud.process.optimize import OptimizeSpec, optimize
from cloud.process.pur import PurScenario
from cloud.process.simreport import get_scenario
from shared.errors import InputError

__all__ = ["MAX_BUDGET_S", "MAX_CANDIDATES", "OptimizerBusy", "OptimizerSlots", "router"]

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1/process", tags=["process"])
MAX_BUDGET_S = 60.0
MAX_CANDIDATES = 2000
_GRACE_S = 2.0  # a search may end this much past its budget (one candidate and one full-accuracy solve)
T = TypeVar("T")


class OptimizerBusy(Busy):
    """As many optimizations run as this process takes at once."""


class OptimizerSlots:
    """At most ``limit`` searches at once, each in a thread of this pool of its own.

    A slot is held until the search's thread is done. Each search gets a ``threading.Event`` to watch
    (``optimize(stop=...)``): the route sets it when its client hangs up, ``close`` sets them all.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._pool = ThreadPoolExecutor(limit, thread_name_prefix="optimizer")
        self._lock = threading.Lock()
        self._ends: dict[int, float] = {}  # running search -> the monotonic time it ends by
        self._stops: dict[int, threading.Event] = {}
        self._ids = itertools.count()

    @property
    def running(self) -> int:
        with self._lock:
            return len(self._ends)

    async def run(self, fn: Callable[[threading.Event], T], budget_s: float) -> T:
        """``fn(stop)`` in the pool, or ``OptimizerBusy`` at once when every slot is taken; ``stop`` is set when
        this call is cancelled or the pool is closed."""
        now = time.monotonic()
        with self._lock:
            if len(self._ends) >= self.limit:
                wait = max(1.0, math.ceil(min(self._ends.values()) - now))
                raise OptimizerBusy(f"{len(self._ends)} optimization(s) running, the most this service runs at "
                                    f"once (process.max_optimizations = {self.limit}); retry after {wait:.0f} s",
                                    retry_after_s=wait)
            key = next(self._ids)
            self._ends[key] = now + budget_s + _GRACE_S
            stop = self._stops[key] = threading.Event()
        try:
            future: Future[T] = self._pool.submit(fn, stop)
        except BaseException:
            self._release(key)
            raise
        future.add_done_callback(lambda _: self._release(key))
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            stop.set()
            raise

    def _release(self, key: int) -> None:
        with self._lock:
            self._ends.pop(key, None)
            self._stops.pop(key, None)

    def close(self) -> None:
        with self._lock:
            for stop in self._stops.values():
                stop.set()
        self._pool.shutdown(wait=False, cancel_futures=True)


async def _hung_up(request: Request) -> None:
    """Returns when the client has gone (its body is read: the next message is the disconnect)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


class OptimizeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scenario: str | None = Field(default=None, max_length=64, description="a shipped scenario's name")
    settings: PurScenario | None = Field(default=None, description="a scenario given in full (instead of 'scenario')")
    spec: OptimizeSpec


@router.post("/optimize", responses={
    401: {"description": "no token, or an unknown or revoked one"},
    403: {"description": "the token's role may not do this"},
    422: {"description": "the search cannot run as given; detail names each key and value"},
    503: {"description": "as many optimizations run as the service takes at once; retry after Retry-After "
                         "seconds"}})
async def optimize_moulding(body: OptimizeRequest, _: Operator, ctx: Ctx, request: Request) -> dict[str, Any]:
    """Search the bounded settings for the shortest cycle meeting the constraints (docs/process-models.md)."""
    if (body.scenario is None) == (body.settings is None):
        raise InputError("give either 'scenario' (a shipped scenario's name) or 'settings' (a scenario)",
                         path="scenario")
    spec = body.spec
    if spec.budget_s > MAX_BUDGET_S:
        raise InputError(f"must be at most {MAX_BUDGET_S:g} s over HTTP (got {spec.budget_s:g})",
                         path="spec.budget_s")
    if spec.max_candidates > MAX_CANDIDATES:
        raise InputError(f"must be at most {MAX_CANDIDATES} over HTTP (got {spec.max_candidates})",
                         path="spec.max_candidates")
    base = body.settings if body.settings is not None else get_scenario(str(body.scenario))
    assert ctx.optimizer is not None
    optimizer = ctx.optimizer
    # A client that hangs up calls its search off. Both tasks are over before the route returns; the search's
    # own errors (a bad spec) reach the error handler as they are.
    search = asyncio.create_task(optimizer.run(lambda stop: optimize(base, spec, name=body.scenario or "", stop=stop),
                                               spec.budget_s), name="optimize")
    gone = asyncio.create_task(_hung_up(request), name="optimize-client")
    try:
        await asyncio.wait([search, gone], return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not search.done():
            log.info("the client of an optimization of %r hung up; the search stops at its next candidate",
                     body.scenario or "a given scenario")
        search.cancel()
        gone.cancel()
        await asyncio.wait([search, gone])
    if search.cancelled():
        return {}  # nobody is left to read it
    return search.result().to_dict()
