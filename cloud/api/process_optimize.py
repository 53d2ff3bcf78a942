"""The moulding optimizer over HTTP: ``POST /api/v1/process/optimize`` (operator role).

A search costs CPU, so it is bounded twice: by its wall-time budget (at most
``MAX_BUDGET_S``) and by its number of candidates (at most
``MAX_CANDIDATES``). It runs in a worker thread, never on the event loop. An
unknown scenario, a setting that cannot be searched, bounds outside the
scenario's ranges or an empty search space answer 422 with one line per
problem; a search that finds nothing feasible answers 200 with
``feasible: false`` and the binding constraints.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from cloud.auth import Operator
from cloud.process.optimize import OptimizeSpec, optimize
from cloud.process.pur import PurScenario
from cloud.process.simreport import get_scenario
from shared.errors import InputError

__all__ = ["MAX_BUDGET_S", "MAX_CANDIDATES", "router"]

router = APIRouter(prefix="/api/v1/process", tags=["process"])
MAX_BUDGET_S = 60.0
MAX_CANDIDATES = 2000


class OptimizeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scenario: str | None = Field(default=None, max_length=64, description="a shipped scenario's name")
    settings: PurScenario | None = Field(default=None, description="a scenario given in full (instead of 'scenario')")
    spec: OptimizeSpec


@router.post("/optimize", responses={
    401: {"description": "no token, or an unknown or revoked one"},
    403: {"description": "the token's role may not do this"},
    422: {"description": "the search cannot run as given; detail names each key and value"}})
async def optimize_moulding(body: OptimizeRequest, _: Operator) -> dict[str, Any]:
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
    result = await asyncio.to_thread(optimize, base, spec, name=body.scenario or "")
    return result.to_dict()
