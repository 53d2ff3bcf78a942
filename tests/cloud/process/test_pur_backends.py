"""Every ODE backend gives the same shot as a tight Radau reference, on each material system."""

from __future__ import annotations

import math
from functools import cache

import numpy as np
import pytest

from cloud.process.model import SolverSpec
from cloud.process.pur import PurScenario, builtin_scenarios, material_names, simulate
from cloud.process.pur.model import Trajectory

BACKENDS = ["rk4", "lsoda", "bdf", "radau", "cvode"]
REFERENCE = SolverSpec(backend="radau", rtol=1e-11, atol=1e-12)


def _scenario_for(material: str) -> PurScenario:
    """The first shipped scenario of the material: mould exchange, vents and the agent all active."""
    return next(s for _, s in sorted(builtin_scenarios().items()) if s.material == material)


@cache
def _reference(material: str) -> Trajectory:
    traj = simulate(_scenario_for(material), REFERENCE)
    assert traj.ok, traj.message
    return traj


@pytest.mark.parametrize("material", material_names())
@pytest.mark.parametrize("backend", BACKENDS)
def test_backend_agrees_with_the_radau_reference(material: str, backend: str) -> None:
    ref = _reference(material)
    traj = simulate(_scenario_for(material), SolverSpec(backend=backend))  # the binding defaults
    assert traj.ok, traj.message
    assert np.array_equal(traj.t, ref.t)
    assert np.max(np.abs(traj.y[:, 2] - ref.y[:, 2])) < 0.1  # T_core, K
    assert math.isfinite(ref.t_gel)
    assert abs(traj.t_gel - ref.t_gel) < 0.1  # gel time, s
