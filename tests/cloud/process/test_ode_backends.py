"""The ODE backends against closed-form solutions, their events, and how a failure is reported."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cloud.process.model import SolverSpec
from cloud.process.ode import BackendNotSupportedError, solve

BACKENDS = ["rk4", "lsoda", "bdf", "radau", "cvode"]


def _decay_and_oscillator(_t: float, y: np.ndarray) -> np.ndarray:
    # a stiff-ish decay and an undamped oscillator: y0 = exp(-2t), (y1, y2) = (cos t, -sin t)
    return np.array([-2.0 * y[0], y[2], -y[1]])


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_backend_matches_the_closed_form(backend: str) -> None:
    t_eval = np.linspace(0.0, 10.0, 101)
    spec = SolverSpec(backend=backend, rtol=1e-9, atol=1e-12, max_step_s=0.01 if backend == "rk4" else None)
    res = solve(_decay_and_oscillator, (0.0, 10.0), [1.0, 1.0, 0.0], t_eval, spec)
    assert res.ok, res.message
    assert np.array_equal(res.t, t_eval)
    assert np.max(np.abs(res.y[:, 0] - np.exp(-2.0 * t_eval))) < 1e-7
    assert np.max(np.abs(res.y[:, 1] - np.cos(t_eval))) < 1e-6
    assert res.nfev > 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_event_is_located_where_the_closed_form_crosses(backend: str) -> None:
    # y0 = exp(-2t) falls through 0.3 at t = ln(1/0.3)/2; the event is written rising: 0.3 - y0
    res = solve(_decay_and_oscillator, (0.0, 3.0), [1.0, 1.0, 0.0], np.linspace(0.0, 3.0, 31),
                SolverSpec(backend=backend, rtol=1e-9, atol=1e-12, max_step_s=0.01 if backend == "rk4" else None),
                events=[lambda _t, y: 0.3 - y[0]])
    assert res.ok, res.message
    assert res.t_events[0].size == 1
    assert res.t_events[0][0] == pytest.approx(math.log(1 / 0.3) / 2, abs=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_rate_that_turns_nan_is_a_failed_solve_not_an_exception(backend: str) -> None:
    def rhs(t: float, y: np.ndarray) -> np.ndarray:
        return np.array([math.nan if t > 1.0 else -y[0]])

    res = solve(rhs, (0.0, 5.0), [1.0], np.linspace(0.0, 5.0, 11), SolverSpec(backend=backend))
    assert not res.ok
    assert "non-finite" in res.message
    assert res.t.size == 0  # no shortened series passed off as complete


@pytest.mark.parametrize("backend", ["lsoda", "bdf", "radau", "cvode"])
def test_a_solution_that_blows_up_is_reported(backend: str) -> None:
    # dy/dt = y^2 from y = 1 reaches infinity at t = 1
    res = solve(lambda _t, y: y**2, (0.0, 2.0), [1.0], np.linspace(0.0, 2.0, 5), SolverSpec(backend=backend))
    assert not res.ok
    assert res.message


def test_rk4_refuses_a_step_count_it_cannot_afford() -> None:
    res = solve(lambda _t, y: -y, (0.0, 1e6), [1.0], np.array([0.0, 1e6]), SolverSpec(backend="rk4", max_step_s=0.1))
    assert not res.ok
    assert "max_step_s" in res.message


def test_the_jax_backend_names_the_extra_to_install() -> None:
    with pytest.raises(BackendNotSupportedError, match="install the jax extra") as info:
        solve(lambda _t, y: -y, (0.0, 1.0), [1.0], np.array([0.0, 1.0]), SolverSpec(backend="jax"))
    assert info.value.problems[0].path == "solver.backend"


@pytest.mark.parametrize("backend", ["lsoda", "bdf", "radau", "cvode"])
def test_an_adaptive_solve_that_would_run_for_minutes_is_stopped_and_reported(backend: str) -> None:
    # max_step_s 1e-4 over 1000 s needs ten million steps: the work budget stops it, and says what to change
    res = solve(lambda _t, y: -y, (0.0, 1000.0), [1.0], np.array([0.0, 1000.0]),
                SolverSpec(backend=backend, max_step_s=1e-4))
    assert not res.ok
    assert "max_step_s" in res.message and "evaluations" in res.message
    assert res.t.size == 0
