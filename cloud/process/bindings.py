"""Bindings: what a virtual sensor reads from a device, how it converts units, and what it derives.

A binding is defined once (``BindingSpec``, validated strictly: unknown keys
refused, every number bounded) and compiled against the device's fields and
the model's contract (``compile_binding``): every sensor it reads must be a
field of the device, every unit must convert into the one the model (or the
formula) expects, an output must not be a field the device sends itself, and
the expression must be allowed. Each refusal names the key and the value.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cloud.process.formulas import Formula
from cloud.process.model import ProcessModel, SolverSpec, optional_inputs
from cloud.process.registry import ModelRegistry
from cloud.process.units import check_unit, converter
from shared.errors import InputError, Problem
from shared.frame import DEVICE_ID_PATTERN, KEY_PATTERN
from shared.validation import validation_problems

__all__ = ["BINDING_NAME_PATTERN", "BindingError", "BindingSpec", "Compiled", "FormulaSpec", "InputMap",
           "ModelSpec", "Window", "compile_binding"]

BINDING_NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_-]{0,63}$"
Field_ = Annotated[str, Field(pattern=KEY_PATTERN, description="a field (sensor) of the device")]


class BindingError(InputError):
    """A binding that cannot be defined as given (names the key and the value)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputMap(_Strict):
    sensor: Field_
    unit: str | None = Field(default=None, max_length=64,
                             description="the sensor's unit (pint); needed when the model or 'to' names one")
    to: str | None = Field(default=None, max_length=64, description="formulas: the unit the expression sees")


class Window(_Strict):
    kind: Literal["rolling", "tumbling"]
    seconds: float = Field(ge=0.001, le=7 * 86400,  # readings are dated to the µs: never a window of no width
                           description="rolling: (t - seconds, t]; tumbling: epoch-aligned")


class FormulaSpec(_Strict):
    kind: Literal["formula"] = "formula"
    expression: str = Field(min_length=1, max_length=500)
    output: Field_
    unit: str | None = Field(default=None, max_length=64, description="the output's unit, for people reading it")
    inputs: dict[str, InputMap] = Field(default_factory=dict, max_length=32,
                                        description="name in the expression -> sensor; other names are sensors")
    window: Window | None = None
    trigger: list[str] | None = Field(default=None, max_length=32,
                                      description="sensors whose readings evaluate it ('*': every sensor); "
                                                  "default: every name it reads")


class ModelSpec(_Strict):
    kind: Literal["model"] = "model"
    model: str = Field(min_length=1, max_length=64)
    inputs: dict[str, InputMap] = Field(max_length=32, description="model input -> sensor (and its unit)")
    parameters: dict[str, Any] = Field(default_factory=dict)
    solver: SolverSpec = SolverSpec()
    start_on: Field_ = Field(description="the sensor whose reading opens a run (a shot-start flag or counter)")
    start_when: Literal["rising", "change"] = Field(
        default="rising", description="rising: from <= 0 (or false) to > 0; change: any new value")
    trigger: list[str] | None = Field(default=None, max_length=32,
                                      description="model inputs whose readings re-solve the run (default: all)")
    outputs: dict[str, Field_] | None = Field(default=None, description="model output -> device field "
                                                                        "(default: '<binding>.<output>')")
    max_run_s: float = Field(default=3600.0, gt=0, le=7 * 86400, description="a run closes after this long")


class BindingSpec(_Strict):
    name: str = Field(pattern=BINDING_NAME_PATTERN)
    device: str = Field(pattern=DEVICE_ID_PATTERN)
    spec: FormulaSpec | ModelSpec = Field(discriminator="kind")

    @classmethod
    def parse(cls, data: Any) -> BindingSpec:
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise BindingError(validation_problems(exc, cls)) from None


@dataclass(frozen=True)
class Tags:
    """What every derived point of a binding carries (besides its own input watermark)."""

    model: str
    version: str
    param_hash: str
    backend: str
    rtol: float | None = None
    atol: float | None = None


@dataclass
class Compiled:
    """A binding ready to run: the sensors it reads, their conversions, what triggers it and what it derives."""

    spec: BindingSpec
    names: dict[str, str]  # name (formula input or model input) -> sensor
    convert: dict[str, Callable[[np.ndarray], np.ndarray]]  # name -> conversion
    triggers: frozenset[str]  # sensors
    outputs: dict[str, str]  # formula "value" or model output -> device field
    tags: Tags
    formula: Formula | None = None
    model: ProcessModel | None = None
    params: BaseModel | None = None
    all_sensors: bool = False  # trigger '*': every sensor of the device triggers it
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def sensors(self) -> set[str]:
        out = set(self.names.values()) | set(self.triggers)
        if isinstance(self.spec.spec, ModelSpec):
            out.add(self.spec.spec.start_on)
        return out


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _check_sensors(problems: list[Problem], wanted: dict[str, str], fields: Collection[str]) -> None:
    for path, sensor in wanted.items():
        if sensor not in fields:
            problems.append(Problem(path, f"the device has no field {sensor!r} (known: "
                                          f"{', '.join(sorted(fields)[:20]) or 'none'})"))


def compile_binding(spec: BindingSpec, fields: Collection[str], derived_elsewhere: Collection[str],
                    models: ModelRegistry) -> Compiled:
    """Check ``spec`` against the device's telemetry ``fields`` (derived ones left out) and compile it.

    ``derived_elsewhere``: fields other bindings of the device derive (readable, never an output of this one).
    """
    readable = set(fields) | set(derived_elsewhere)
    if isinstance(spec.spec, FormulaSpec):
        return _compile_formula(spec, spec.spec, readable, set(fields), set(derived_elsewhere))
    return _compile_model(spec, spec.spec, readable, set(fields), set(derived_elsewhere), models)


def _output_clash(problems: list[Problem], path: str, out: str, telemetry: set[str], others: set[str]) -> None:
    if out in telemetry:
        problems.append(Problem(path, f"{out!r} is a field the device sends itself; name the output otherwise"))
    elif out in others:
        problems.append(Problem(path, f"{out!r} is derived by another binding of this device"))


def _conversions(problems: list[Problem], inputs: dict[str, InputMap], targets: dict[str, str | None],
                 prefix: str) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    out: dict[str, Callable[[np.ndarray], np.ndarray]] = {}
    for name, target in targets.items():
        spec = inputs.get(name)
        path = f"{prefix}.{name}"
        try:
            if target is None:
                if spec is not None and spec.unit is not None:
                    check_unit(spec.unit, f"{path}.unit")
                out[name] = lambda v: v
            elif spec is None or spec.unit is None:
                problems.append(Problem(f"{path}.unit", f"the unit of sensor {spec.sensor if spec else name!r} is "
                                                         f"needed to convert it into {target!r} (the cloud does "
                                                         "not know sensor units)"))
            else:
                out[name] = converter(spec.unit, target, f"{path}.unit")
        except InputError as exc:
            problems.extend(exc.problems)
    return out


def _compile_formula(spec: BindingSpec, f: FormulaSpec, readable: set[str], telemetry: set[str],
                     others: set[str]) -> Compiled:
    problems: list[Problem] = []
    try:
        from cloud.process.formulas import names_of
        used = names_of(f.expression)
    except SyntaxError:
        used = set()
    names = {n: (f.inputs[n].sensor if n in f.inputs else n) for n in sorted(used | set(f.inputs))}
    formula = None
    try:
        formula = Formula(f.expression, list(names), windowed=f.window is not None, path="spec.expression")
    except InputError as exc:
        problems.extend(exc.problems)
    _check_sensors(problems, {f"spec.inputs.{n}.sensor" if n in f.inputs else "spec.expression": s
                              for n, s in names.items()}, readable)
    _output_clash(problems, "spec.output", f.output, telemetry, others)
    if f.output in names.values():
        problems.append(Problem("spec.output", f"{f.output!r} is also an input of this formula"))
    convert = _conversions(problems, f.inputs, {n: (f.inputs[n].to if n in f.inputs else None) for n in names},
                           "spec.inputs")
    all_sensors = f.trigger == ["*"]
    triggers = set(names.values()) if f.trigger is None or all_sensors else set(f.trigger)
    if not all_sensors:
        _check_sensors(problems, {f"spec.trigger[{k}]": s for k, s in enumerate(f.trigger or [])}, readable)
    if problems:
        raise BindingError(problems)
    tags = Tags("formula", "1", _hash(f.model_dump(mode="json")), "simpleeval")
    return Compiled(spec, names, convert, frozenset(triggers), {"value": f.output}, tags, formula=formula,
                    all_sensors=all_sensors)


def _compile_model(spec: BindingSpec, m: ModelSpec, readable: set[str], telemetry: set[str], others: set[str],
                   models: ModelRegistry) -> Compiled:
    model = models.get(m.model, "spec.model")
    problems: list[Problem] = []
    units = {**optional_inputs(model), **model.inputs}
    for name in m.inputs:
        if name not in units:
            problems.append(Problem(f"spec.inputs.{name}", f"model {model.name!r} has no input {name!r} "
                                                           f"(inputs: {', '.join(sorted(units))})"))
    for name in model.inputs:
        if name not in m.inputs:
            problems.append(Problem(f"spec.inputs.{name}", f"model {model.name!r} needs input {name!r}; "
                                                           "map it to a sensor"))
    _check_sensors(problems, {f"spec.inputs.{n}.sensor": i.sensor for n, i in m.inputs.items()}, readable)
    _check_sensors(problems, {"spec.start_on": m.start_on}, readable)
    convert = _conversions(problems, m.inputs, {n: units[n] for n in m.inputs if n in units}, "spec.inputs")
    outputs = dict(m.outputs) if m.outputs is not None else {o: f"{spec.name}.{o}" for o in model.outputs}
    for out, target in outputs.items():
        if out not in model.outputs:
            problems.append(Problem(f"spec.outputs.{out}", f"model {model.name!r} has no output {out!r} "
                                                           f"(outputs: {', '.join(sorted(model.outputs))})"))
        _output_clash(problems, f"spec.outputs.{out}", target, telemetry, others)
    triggers = set(m.trigger) if m.trigger is not None else set(m.inputs)
    for k, name in enumerate(m.trigger or []):
        if name not in m.inputs:
            problems.append(Problem(f"spec.trigger[{k}]", f"{name!r} is not one of the binding's inputs"))
    params = None
    try:
        params = model.Parameters.model_validate(m.parameters)
    except ValidationError as exc:
        problems.extend(validation_problems(exc, model.Parameters, prefix="spec.parameters"))
    if m.solver.backend == "jax":
        problems.append(Problem("spec.solver.backend", "'jax' is not supported: install the jax extra"))
    if problems:
        raise BindingError(problems)
    assert params is not None
    tags = Tags(model.name, model.version, _hash({"p": params.model_dump(mode="json"),
                                                  "i": {k: v.model_dump() for k, v in m.inputs.items()}}),
                m.solver.backend, m.solver.rtol, m.solver.atol)
    names = {n: i.sensor for n, i in m.inputs.items()}
    return Compiled(spec, names, convert, frozenset(names[t] for t in triggers if t in names), outputs, tags,
                    model=model, params=params)
