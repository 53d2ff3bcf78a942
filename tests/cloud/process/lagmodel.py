"""A small process model at the engine's seam: a first-order thermal lag, dT/dt = (T_mould - T) / tau.

With the mould temperature held constant the answer has a closed form,
T(t) = T_m + (T0 - T_m) exp(-t / tau), which the tests check against.
"""

from __future__ import annotations

import asyncio
from typing import ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy.integrate import solve_ivp

from cloud.process.model import RunInputs, RunOutputs, SolverSpec

_METHODS = {"lsoda": "LSODA", "bdf": "BDF", "radau": "Radau"}


class LagParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tau_s: float = Field(default=30.0, gt=0, le=1e5)
    t0_degC: float = Field(default=20.0, ge=-50, le=500)


class FirstOrderLag:
    name: ClassVar[str] = "lag"
    version: ClassVar[str] = "1.0"
    inputs: ClassVar[dict[str, str]] = {"T_mould": "degC"}
    outputs: ClassVar[dict[str, str]] = {"T_core": "degC"}
    Parameters: ClassVar[type[BaseModel]] = LagParameters

    def run(self, inputs: RunInputs, params: BaseModel, solver: SolverSpec) -> RunOutputs:
        assert isinstance(params, LagParameters)
        t_in, v_in = inputs.series["T_mould"]
        if not np.all(np.isfinite(v_in)):
            return RunOutputs({}, {}, ok=False, message="T_mould is not finite")
        end = float(t_in[-1])
        if end <= 0:
            return RunOutputs({"T_core": (np.array([0.0]), np.array([params.t0_degC]))}, {})

        def rhs(t: float, y: np.ndarray) -> np.ndarray:
            k = max(int(np.searchsorted(t_in, t, side="right")) - 1, 0)  # the mould temperature held
            return (v_in[k] - y) / params.tau_s

        sol = solve_ivp(rhs, (0.0, end), [params.t0_degC], method=_METHODS.get(solver.backend, "LSODA"),
                        rtol=solver.rtol, atol=solver.atol, t_eval=[0.0, end], max_step=solver.max_step_s or np.inf)
        return RunOutputs({"T_core": (sol.t, sol.y[0])}, {}, ok=bool(sol.success), message=sol.message)


class Raising(FirstOrderLag):
    name: ClassVar[str] = "raising"

    def run(self, inputs: RunInputs, params: BaseModel, solver: SolverSpec) -> RunOutputs:
        raise RuntimeError("the model broke")


class OffTheLoop(FirstOrderLag):
    """The lag model, failing its run when called on the event loop's thread (a solve blocks the loop)."""

    name: ClassVar[str] = "off-the-loop"

    def run(self, inputs: RunInputs, params: BaseModel, solver: SolverSpec) -> RunOutputs:
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # no loop in this thread: a worker thread, as it should be
            return super().run(inputs, params, solver)
        return RunOutputs({}, {}, ok=False, message="the model ran on the event loop")


class Malformed(FirstOrderLag):
    """The lag model's contract broken in its answer: a series whose times and values differ in length."""

    name: ClassVar[str] = "malformed"

    def run(self, inputs: RunInputs, params: BaseModel, solver: SolverSpec) -> RunOutputs:
        return RunOutputs({"T_core": (np.array([0.0, 1.0, 2.0]), np.array([20.0, 21.0]))}, {})
