"""The contract of a process model: typed inputs, parameters and outputs, one run from inputs to outputs.

A process model is a plain Python object. The virtual-sensor engine feeds it
a run's inputs (each a time series in the model's own units, converted at the
binding) and stores what it returns as derived series of the device. The same
``run`` serves the live path and a replay, so a recomputed range equals the
live values within the solver's tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Backend", "ProcessModel", "RunInputs", "RunOutputs", "SolverSpec", "optional_inputs"]

Backend = Literal["rk4", "lsoda", "bdf", "radau", "cvode", "jax"]


class SolverSpec(BaseModel):
    """How a model's ODEs are solved; chosen per binding."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: Backend = "lsoda"
    rtol: float = Field(default=1e-6, gt=0, le=1e-2)
    atol: float = Field(default=1e-9, gt=0, le=1.0)
    max_step_s: float | None = Field(default=None, gt=0, description="largest step, s (rk4: its fixed step)")


@dataclass(frozen=True)
class RunInputs:
    """One run's inputs: ``start`` (epoch s) opens the run; each series is (t seconds since start, values)."""

    start: float
    series: dict[str, tuple[np.ndarray, np.ndarray]]
    events: list[tuple[float, str]] = field(default_factory=list)  # (t since start, event name)


@dataclass(frozen=True)
class RunOutputs:
    """A run's outputs: series (t since start, values) and scalars; ``ok`` False with ``message`` on failure."""

    series: dict[str, tuple[np.ndarray, np.ndarray]]
    scalars: dict[str, float]
    ok: bool = True
    message: str = ""


class ProcessModel(Protocol):
    """What the engine needs of a model. Units are pint strings (``"degC"``, ``"bar"``, ``"s"``)."""

    name: ClassVar[str]
    version: ClassVar[str]
    inputs: ClassVar[dict[str, str]]  # input name -> unit; a binding maps each
    # A model may also name ``optional_inputs: ClassVar[dict[str, str]]`` (name -> unit): a binding may map them
    # (``optional_inputs`` below reads them; a model without the attribute has none).
    outputs: ClassVar[dict[str, str]]  # output name -> unit (series and scalars)
    Parameters: ClassVar[type[BaseModel]]

    def run(self, inputs: RunInputs, params: BaseModel, solver: SolverSpec) -> RunOutputs:
        """One run. Called in worker threads, possibly two at once (a live step and a replay): keep no state."""
        ...


def optional_inputs(model: ProcessModel) -> dict[str, str]:
    """The inputs a binding may map and may leave out (name -> unit)."""
    return dict(getattr(model, "optional_inputs", {}))
