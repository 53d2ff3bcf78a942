"""The PUR model bound to a device in the real app: mould readings in degF become derived points of the shot."""

from __future__ import annotations

from collections.abc import AsyncIterator

import numpy as np
import pytest

from cloud.process.model import RunInputs, SolverSpec
from cloud.process.pur import PurModel, PurScenario
from tests.cloud.apiclient import T0, Api, make_api
from tests.cloud.process.test_vsensor_engine import define, frame, send, wait_points

SCENARIO = {"material": "water-pentane", "shot_mass_kg": 0.3, "mould_volume_l": 10.0, "horizon_s": 300.0,
            "alpha_demold": 0.6, "hardness_demold": 10.0}
BINDING = {"name": "foam", "device": "press-1", "spec": {
    "kind": "model", "model": "pur-foam", "start_on": "shot", "parameters": SCENARIO,
    "solver": {"backend": "cvode", "rtol": 1e-8, "atol": 1e-10},
    "inputs": {"mould_temperature": {"sensor": "mould_F", "unit": "degF"}},
    "outputs": {"t_core": "T_core", "alpha": "cure", "t_demold": "t_demold"}}}


@pytest.fixture
async def api(tmp_path) -> AsyncIterator[Api]:
    async with make_api(tmp_path) as client:
        yield client


async def test_mould_readings_become_the_shots_core_temperature_cure_and_demould_time(api: Api) -> None:
    await send(api, 1, [frame(0, mould_F=113.0, shot=0)])  # 45 degC
    await define(api, BINDING)
    await send(api, 2, [frame(1, mould_F=113.0, shot=1)])  # the shot opens a run at T0 + 1
    await send(api, 3, [frame(1 + t, mould_F=113.0) for t in (30, 60, 90)])
    points = await wait_points(api, "foam", 12)
    by = {(p["field"], round(p["ts"] - T0 - 1)): p for p in points}
    # the same shot run directly, in degC, at the same reading times
    direct = PurModel().run(RunInputs(start=T0 + 1, series={"mould_temperature": (np.array([-1.0, 0.0, 30.0, 60.0,
                                                                                           90.0]),
                                                                                 np.full(5, 45.0))}),
                            PurScenario(**SCENARIO), SolverSpec(backend="cvode", rtol=1e-8, atol=1e-10))
    assert direct.ok
    for t in (30, 60, 90):
        t_core = float(np.interp(t, *direct.series["t_core"]))
        assert by[("T_core", t)]["value"] == pytest.approx(t_core, abs=1e-3)
        assert by[("cure", t)]["value"] == pytest.approx(float(np.interp(t, *direct.series["alpha"])), abs=1e-5)
    assert by[("t_demold", 90)]["value"] == pytest.approx(direct.scalars["t_demold"], abs=0.01)
    assert 60 < by[("t_demold", 90)]["value"] < 300
    assert by[("T_core", 90)]["backend"] == "cvode"


async def test_a_mould_reading_out_of_range_flags_the_shots_points(api: Api) -> None:
    await send(api, 1, [frame(0, mould_F=113.0, shot=0)])
    await define(api, BINDING)
    await send(api, 2, [frame(1, mould_F=113.0, shot=1), frame(11, mould_F=1200.0)])  # 649 degC: a sensor fault
    points = await wait_points(api, "foam", 6)
    flagged = [p for p in points if round(p["ts"] - T0) == 11]
    assert len(flagged) == 3
    assert all(p["value"] is None for p in flagged)
    assert {p["flag"] for p in flagged} == {"mould_temperature: must be -20..250 degC (got 648.889 at t = 10.0 s)"}


async def test_a_bad_model_parameter_is_refused_naming_its_key_path(api: Api) -> None:
    await send(api, 1, [frame(0, mould_F=113.0, shot=0)])
    body = await define(api, {"name": "foam", "device": "press-1", "spec": {
        "kind": "model", "model": "pur-foam", "start_on": "shot", "parameters": {**SCENARIO, "vent_efficiency": 1.5},
        "inputs": {"mould_temperature": {"sensor": "mould_F", "unit": "degF"}}}}, 422)
    assert [d["path"] for d in body["detail"]] == ["spec.parameters.vent_efficiency"], body
    assert "(got 1.5)" in body["detail"][0]["message"]


async def test_a_reading_past_the_models_horizon_flags_its_series_never_holds_the_last_value(api: Api) -> None:
    # horizon_s 300: at 400 s into the shot the model has no core temperature or cure to give; the last solved
    # value (at 300 s) would be a silent wrong value. The scalars (demould time) are still the shot's.
    await send(api, 1, [frame(0, mould_F=113.0, shot=0)])
    await define(api, BINDING)
    await send(api, 2, [frame(1, mould_F=113.0, shot=1)])
    await send(api, 3, [frame(1 + 200, mould_F=113.0), frame(1 + 400, mould_F=113.0)])
    points = await wait_points(api, "foam", 9)
    by = {(p["field"], round(p["ts"] - T0 - 1)): p for p in points}
    assert by[("T_core", 200)]["value"] is not None
    for field in ("T_core", "cure"):
        assert by[(field, 400)]["value"] is None
        assert "past the model's horizon" in by[(field, 400)]["flag"] and "300" in by[(field, 400)]["flag"]
    assert by[("t_demold", 400)]["value"] == pytest.approx(by[("t_demold", 200)]["value"], abs=1e-6)


async def test_a_measured_vent_efficiency_replaces_the_scenarios_for_the_shot(api: Api) -> None:
    vented = {**BINDING, "spec": {**BINDING["spec"], "outputs": {"p_max": "p_max"}, "inputs": {
        **BINDING["spec"]["inputs"], "vent_efficiency": {"sensor": "vent_pct", "unit": "percent"}}}}
    await send(api, 1, [frame(0, mould_F=113.0, shot=0, vent_pct=0.0)])  # a blocked vent, checked before the shot
    body = await define(api, {**vented, "spec": {**vented["spec"], "inputs": {
        **vented["spec"]["inputs"], "vent_efficiency": {"sensor": "vent_pct", "unit": "bar"}}}}, 422)
    assert [d["path"] for d in body["detail"]] == ["spec.inputs.vent_efficiency.unit"], body
    await define(api, vented)
    await send(api, 2, [frame(1, mould_F=113.0, shot=1), frame(61, mould_F=113.0)])
    points = {round(p["ts"] - T0 - 1): p for p in await wait_points(api, "foam", 2)}

    def p_max(vent_efficiency: float) -> float:
        run = PurModel().run(RunInputs(start=T0 + 1, series={"mould_temperature": (np.array([-1.0, 0.0, 60.0]),
                                                                                   np.full(3, 45.0))}),
                             PurScenario(**{**SCENARIO, "vent_efficiency": vent_efficiency}),
                             SolverSpec(backend="cvode", rtol=1e-8, atol=1e-10))
        return run.scalars["p_max"]

    assert points[60]["value"] == pytest.approx(p_max(0.0), abs=1e-6)
    assert p_max(0.0) > p_max(1.0) + 0.05  # the scenario's clean vents would have hidden the blockage
    await send(api, 3, [frame(62, vent_pct=150.0, mould_F=113.0)])  # a reading no vent can have
    flagged = (await wait_points(api, "foam", 3))[-1]
    assert flagged["value"] is None and flagged["flag"] == "vent_efficiency: must be 0..1, 1 clean and 0 blocked " \
                                                           "(got 1.5 at t = 61.0 s)"
