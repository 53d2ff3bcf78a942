"""The moulding optimizer against an optimum found independently, on infeasible constraints, and on bad input.

The known optimum: on ``seat-cushion`` with only the shot mass searched, the
cycle falls and the moulded density rises with the shot (checked here with
the reference Radau solver), so the shortest cycle under a density ceiling
is at the shot where the density crosses the ceiling, found by root-finding
with Radau at rtol 1e-10, independent of the optimizer's coarse candidates.
"""

from __future__ import annotations

import asyncio
import json
import math
import select
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from scipy.optimize import brentq

from cloud.process.model import SolverSpec
from cloud.process.optimize import OptimizeSpec, optimize
from cloud.process.pur import builtin_scenarios, simulate
from cloud.process.pur.model import outputs_of
from shared.errors import InputError
from tests.cloud.apiclient import Api, auth, make_api
from tests.cloud.rawhttp import open_request
from tests.cloud.server import CloudServer

REFERENCE = SolverSpec(backend="radau", rtol=1e-10, atol=1e-12)
RHO_MAX = 36.0
INDEX_S = 30.0
BASE = builtin_scenarios()["seat-cushion"]


def reference_run(shot_kg: float) -> dict[str, float]:
    return outputs_of(simulate(BASE.model_copy(update={"shot_mass_kg": shot_kg}), REFERENCE)).scalars


def test_the_optimizer_finds_the_shortest_cycle_under_a_density_ceiling_within_two_percent() -> None:
    scan = [reference_run(m) for m in (0.26, 0.31, 0.36, 0.41, 0.44)]
    assert all(np.diff([s["t_demold"] for s in scan]) < 0)  # a heavier shot demoulds sooner
    assert all(np.diff([s["density_moulded"] for s in scan]) > 0)  # and is denser: the ceiling binds
    m_star = brentq(lambda m: reference_run(m)["density_moulded"] - RHO_MAX, 0.26, 0.44, xtol=1e-7)
    optimum = reference_run(m_star)["t_demold"] + INDEX_S

    spec = OptimizeSpec(bounds={"shot_mass_kg": (0.25, 0.45)}, index_s=INDEX_S, max_candidates=200, seed=3,
                        constraints={"density_max_kg_m3": RHO_MAX, "risk_max": 1.0})
    result = optimize(BASE, spec, name="seat-cushion")

    assert result.feasible and result.best is not None
    assert result.best.cycle_s <= 1.02 * optimum
    assert result.best.cycle_s >= optimum - 0.05  # no better than the true optimum (it is feasible at full accuracy)
    assert result.best.kpis["density_moulded"] <= RHO_MAX
    assert result.best.settings["shot_mass_kg"] == pytest.approx(m_star, rel=0.03)


def test_random_search_the_baseline_finds_a_feasible_cycle_no_better_than_the_optimum() -> None:
    spec = OptimizeSpec(bounds={"shot_mass_kg": (0.25, 0.45)}, index_s=INDEX_S, max_candidates=40, seed=1,
                        method="random", constraints={"density_max_kg_m3": RHO_MAX, "risk_max": 1.0})
    progress = []
    result = optimize(BASE, spec, progress=progress.append)
    assert result.feasible and result.best is not None
    assert [p.evaluated for p in progress] == [20, 40]  # a progress step per batch
    assert result.best.kpis["density_moulded"] <= RHO_MAX


def test_an_unreachable_pressure_limit_is_named_with_the_amount_it_is_missed_by() -> None:
    spec = OptimizeSpec(bounds={"shot_mass_kg": (0.25, 0.45)}, max_candidates=60,
                        constraints={"p_max_bar": 1.1, "risk_max": 1.0})
    result = optimize(BASE, spec)
    assert not result.feasible and result.best is None
    assert [v.name for v in result.binding] == ["p_max"]
    # the least-violating setting is (near) the lightest shot; the amount equals a direct reference run's
    assert result.least_violating is not None
    shot = result.least_violating.settings["shot_mass_kg"]
    assert shot < 0.26
    assert result.binding[0].amount == pytest.approx(reference_run(shot)["p_max"] - 1.1, abs=1e-3)
    assert "p_max" in result.message and "above the maximum 1.1 bar" in result.message


def test_a_density_window_out_of_reach_names_the_density_with_its_shortfall() -> None:
    spec = OptimizeSpec(bounds={"shot_mass_kg": (0.25, 0.30)}, max_candidates=40,
                        constraints={"density_min_kg_m3": 50.0, "density_max_kg_m3": 60.0, "risk_max": 1.0})
    result = optimize(BASE, spec)
    assert not result.feasible
    (only,) = result.binding
    assert only.name == "density_moulded" and only.limit == 50.0
    assert result.least_violating is not None
    shot = result.least_violating.settings["shot_mass_kg"]
    assert shot > 0.29  # the heaviest shot allowed comes closest
    assert only.amount == pytest.approx(50.0 - reference_run(shot)["density_moulded"], abs=0.01)


# coarse candidates (rtol 1e-2, a 60 s grid) under-read p_max by about 0.03 bar: on this narrow range every one
# is feasible on the coarse grid and none at full accuracy, so the re-check tries as many as it may
COARSE_ONLY = {"bounds": {"shot_mass_kg": (0.30, 0.31)}, "method": "random", "batch": 10, "candidate_rtol": 1e-2,
               "candidate_step_s": 60.0, "constraints": {"p_max_bar": 1.29, "risk_max": 1.0}}


def test_the_recheck_tries_the_best_coarse_candidates_while_the_budget_lasts() -> None:
    result = optimize(BASE, OptimizeSpec(**COARSE_ONLY, max_candidates=20))
    assert not result.feasible and result.feasible_count == 20 and result.rechecked == 8
    assert "none of the best 8 stayed feasible" in result.message


def test_the_budget_bounds_the_search_and_the_recheck_together() -> None:
    # the clock jumps past the budget at the first progress step: the search stops there, and of the re-check
    # only its first solve runs (an answer is never left unchecked)
    jumped = [0.0]

    def clock() -> float:
        return time.perf_counter() + jumped[0]

    def progress(_: object) -> None:
        jumped[0] = 100.0

    spec = OptimizeSpec(**COARSE_ONLY, max_candidates=1000, budget_s=30.0)
    result = optimize(BASE, spec, progress=progress, clock=clock)
    assert result.stopped_by == "budget" and result.evaluated == 10
    assert not result.feasible and result.rechecked == 1
    assert "the budget of 30 s ran out after 1" in result.message
    assert result.to_dict()["rechecked"] == 1 and result.elapsed_s > 100.0


@pytest.mark.parametrize(("bounds", "expected"), [
    ({}, "bounds: the search space is empty"),
    ({"mould_temperature_c": (-10.0, 80.0)}, "bounds.mould_temperature_c: must lie within 0..150 (got [-10, 80])"),
    ({"shot_mass_kg": (0.4, 0.3)}, "bounds.shot_mass_kg: low must be below high"),
    ({"shot_mass_kg": (0.3, 0.3)}, "bounds.shot_mass_kg: low must be below high"),
    ({"h_mould_w_m2k": (1.0, 5.0)}, "bounds.h_mould_w_m2k: not a searchable setting"),
    ({"shot_mass_kg": (0.3, 20.0)}, "bounds.shot_mass_kg: 20 is refused by the scenario"),
])
def test_a_search_space_that_cannot_be_searched_is_refused_with_the_key_and_range(bounds, expected) -> None:
    with pytest.raises(InputError) as err:
        optimize(BASE, OptimizeSpec(bounds=bounds))
    assert expected in str(err.value)


@pytest.fixture
async def api(tmp_path) -> AsyncIterator[Api]:
    async with make_api(tmp_path) as client:
        yield client


async def test_the_api_optimizes_a_shipped_scenario_for_an_operator_within_its_limits(api: Api) -> None:
    body = {"scenario": "seat-cushion", "spec": {"bounds": {"shot_mass_kg": [0.25, 0.45]}, "max_candidates": 40,
                                                 "constraints": {"density_max_kg_m3": RHO_MAX, "risk_max": 1.0}}}
    resp = await api.client.post("/api/v1/process/optimize", json=body, headers=auth(api.operator))
    assert resp.status_code == 200, resp.text
    found = resp.json()
    assert found["feasible"] and found["evaluated"] == 40
    assert found["best"]["kpis"]["density_moulded"] <= RHO_MAX
    assert (await api.client.post("/api/v1/process/optimize", json=body, headers=auth(api.viewer))).status_code == 403

    over = {**body, "spec": {**body["spec"], "budget_s": 3600}}
    resp = await api.client.post("/api/v1/process/optimize", json=over, headers=auth(api.operator))
    assert resp.status_code == 422 and "spec.budget_s" in resp.text and "at most 60" in resp.text
    unknown = {**body, "scenario": "dashboard"}
    resp = await api.client.post("/api/v1/process/optimize", json=unknown, headers=auth(api.operator))
    assert resp.status_code == 422 and "known scenarios: rigid-panel-r11" in resp.text
    empty = {**body, "spec": {"bounds": {}}}
    resp = await api.client.post("/api/v1/process/optimize", json=empty, headers=auth(api.operator))
    assert resp.status_code == 422 and "the search space is empty" in resp.text


async def test_one_optimization_runs_at_a_time_and_the_next_is_told_when_to_retry(api: Api) -> None:
    long = {"scenario": "seat-cushion", "spec": {"bounds": {"shot_mass_kg": [0.25, 0.45]}, "method": "random",
                                                 "max_candidates": 2000, "budget_s": 2.0}}
    short = {"scenario": "seat-cushion", "spec": {"bounds": {"shot_mass_kg": [0.25, 0.45]}, "max_candidates": 10}}
    slots = api.app.state.ctx.optimizer
    first = asyncio.create_task(api.client.post("/api/v1/process/optimize", json=long, headers=auth(api.operator)))
    async with asyncio.timeout(10):
        while slots.running == 0:
            await asyncio.sleep(0.01)
    refused = await api.client.post("/api/v1/process/optimize", json=short, headers=auth(api.operator))
    assert refused.status_code == 503, refused.text
    assert 1 <= int(refused.headers["Retry-After"]) <= 4  # the running search's budget and grace, not a default
    assert "process.max_optimizations = 1" in refused.json()["detail"][0]["message"]
    done = await first
    assert done.status_code == 200 and done.json()["stopped_by"] == "budget"
    assert done.json()["rechecked"] == 1  # the budget spent: one re-check past it, no more (not a wall time)
    assert slots.running == 0
    again = await api.client.post("/api/v1/process/optimize", json=short, headers=auth(api.operator))
    assert again.status_code == 200 and again.json()["evaluated"] == 10


def test_the_full_accuracy_recheck_solves_only_as_far_as_the_longest_cycle() -> None:
    # A day-long horizon suits a replay; the re-check past 1.25 x the longest cycle judges nothing and, with a
    # fixed-step backend, cost seconds per re-checked candidate after the budget was spent.
    base = BASE.model_copy(update={"horizon_s": 86_400.0})
    spec = OptimizeSpec(bounds={"shot_mass_kg": (0.25, 0.45)}, index_s=INDEX_S, max_candidates=12, seed=3,
                        backend="rk4", constraints={"density_max_kg_m3": RHO_MAX, "risk_max": 1.0})
    result = optimize(base, spec)
    checked = result.best or result.least_violating
    assert checked is not None and checked.ok
    steps = math.ceil(1.25 * base.cycle_time_s / 0.5)  # rk4 at its default 0.5 s step
    assert 0 < checked.nfev <= 4 * steps + 1
    assert checked.to_dict()["nfev"] == checked.nfev


def test_a_client_that_hangs_up_frees_its_slot_long_before_the_budget(tmp_path: Path) -> None:
    """One search at a time: a client that starts a 60 s search and hangs up must not keep every other operator
    out for that minute (the search is called off at its next candidate)."""
    long = json.dumps({"scenario": "seat-cushion", "spec": {
        "bounds": {"shot_mass_kg": [0.25, 0.45]}, "method": "random", "max_candidates": 2000, "backend": "rk4",
        "budget_s": 60.0}}).encode()  # about 30 ms a candidate: the whole budget
    short = {"scenario": "seat-cushion", "spec": {"bounds": {"shot_mass_kg": [0.25, 0.45]}, "max_candidates": 5}}
    with CloudServer(tmp_path) as server:
        token = server.add_person("op", "operator")
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json",
                   "Content-Length": str(len(long))}
        url = f"{server.base_url}/api/v1/process/optimize"
        sock = open_request(server.port, "POST", "/api/v1/process/optimize", headers, long)
        with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
            for _ in range(100):  # until the long search holds the slot (a short one is refused)
                if client.post(url, json=short).status_code == 503:
                    break
                if select.select([sock], [], [], 0)[0]:  # the short one came first: the long one was refused
                    sock.close()
                    sock = open_request(server.port, "POST", "/api/v1/process/optimize", headers, long)
            else:
                pytest.fail("the long search never held the slot")
            sock.close()
            started = time.monotonic()
            answer = client.post(url, json=short)
            while answer.status_code == 503 and time.monotonic() - started < 20:  # the budget is 60 s
                time.sleep(0.05)
                answer = client.post(url, json=short)
        assert answer.status_code == 200, answer.text
        assert any("hung up" in line for line in server.log), server.log[-20:]
