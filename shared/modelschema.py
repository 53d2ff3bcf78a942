"""The input schema of a model: what a model package says about the readings it takes, checked against a device.

The schema travels inside the model package (as JSON) and is the one place that says how frames become the model's
input, for the edge that scores and the cloud that trains alike:

- ``kind``: ``anomaly`` (one score per input row, higher is more unusual; ``threshold`` is the score from which a
  row is anomalous, calibrated in training on this model's scores, so it belongs to the model; how an alert is
  raised from it, hysteresis and minimum duration, is the edge's alert policy) or ``classifier`` (``labels``, in
  the order of the model's class outputs);
- ``sensors``: names in the order the model reads them, each with the unit it was trained on (where known);
- ``mode``: ``frame`` (each frame's readings are one input row) or ``window`` (``window.length`` consecutive frames,
  a new window every ``window.step`` frames, the frames ``window.interval_s`` apart, give one row of ``features``,
  see ``shared.features``);
- ``scaling``: per input column ``(x - mean) / scale``, applied after the features.

A wrong vector is never produced quietly: a missing sensor, a reading that is not a number, frames of two devices,
out of time order or not at the model's interval, and a unit that differs from the device's are ``InputError``\\ s
that name what is wrong. Extra sensors of a device are ignored; readings are taken by name, never by position.
Booleans (coils, discrete inputs) count as 0 and 1.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Annotated, Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator

from shared.configbase import StrictModel
from shared.errors import InputError, Problem
from shared.features import (
    batch_features,
    feature_names,
    frame_features,
    normalise_feature,
    sliding_windows,
    window_length_problems,
)
from shared.frame import KEY_PATTERN, MAX_SENSORS, TelemetryFrame
from shared.validation import shown, validation_problems

__all__ = ["MAX_FEATURES", "MAX_INPUTS", "MAX_WINDOW", "MAX_WINDOW_VALUES", "ModelSchema", "Scaling", "SensorSpec",
           "WindowSpec", "check_frames", "check_sensors", "check_timestamps", "load_schema", "model_inputs",
           "raw_inputs", "sensor_matrix"]

MAX_WINDOW = 65_536  # readings in a window
MAX_WINDOW_VALUES = 1 << 20  # readings x sensors in a window: 8 MiB of float64 on a gateway with little RAM
MAX_FEATURES = 64
MAX_INPUTS = 4096  # columns of the model's input
MAX_LABELS = 256
MAX_SHOWN_PROBLEMS = 20

Finite = Annotated[float, Field(allow_inf_nan=False)]
Label = Annotated[str, Field(min_length=1, max_length=64)]


class _Schema(StrictModel):
    """Strict types: a schema is written by training, so a number in quotes is a damaged file, not a convenience."""

    model_config = ConfigDict(strict=True)


class SensorSpec(_Schema):
    name: str = Field(pattern=KEY_PATTERN, description="sensor name in the frame")
    unit: str | None = Field(None, min_length=1, max_length=32, description="engineering unit it was trained on")


class WindowSpec(_Schema):
    length: int = Field(ge=2, le=MAX_WINDOW, description="frames in a window")
    step: int = Field(ge=1, le=MAX_WINDOW, description="frames from one window's start to the next")
    interval_s: Finite = Field(gt=0, le=86_400, description="nominal time between frames, s")
    interval_tolerance: Finite = Field(0.25, gt=0, lt=1, description="allowed deviation, as a fraction of interval_s")

    @model_validator(mode="after")
    def _step_within_window(self) -> WindowSpec:
        if self.step > self.length:
            raise ValueError(f"step must be at most the window length {self.length} (got {self.step}): "
                             "frames between windows would never be scored")
        return self


class Scaling(_Schema):
    """Per input column, ``(x - mean) / scale``."""

    mean: list[Finite] = Field(max_length=MAX_INPUTS)
    scale: list[Annotated[float, Field(gt=0, allow_inf_nan=False)]] = Field(max_length=MAX_INPUTS)

    def apply(self, rows: npt.ArrayLike) -> npt.NDArray[np.float32]:
        array = np.asarray(rows, dtype=np.float64)
        if array.ndim != 2 or array.shape[1] != len(self.mean):
            raise InputError(f"expected rows of {len(self.mean)} inputs, got shape {array.shape}")
        with np.errstate(over="ignore"):
            out = ((array - np.asarray(self.mean)) / np.asarray(self.scale)).astype(np.float32)
        if not np.isfinite(out).all():
            raise InputError("a scaled input is beyond float32's range")
        return out


class ModelSchema(_Schema):
    """What a model reads and what its output means (see the module docstring)."""

    format: Literal[1] = Field(1, description="version of this schema's layout")
    kind: Literal["anomaly", "classifier"]
    sensors: list[SensorSpec] = Field(min_length=1, max_length=MAX_SENSORS)
    mode: Literal["frame", "window"]
    window: WindowSpec | None = None
    features: list[str] = Field(default_factory=list, max_length=MAX_FEATURES)
    scaling: Scaling
    labels: list[Label] | None = Field(None, max_length=MAX_LABELS)
    threshold: Finite | None = Field(None, description="anomaly: a score at or above it is anomalous")

    @field_validator("features")
    @classmethod
    def _normalise_features(cls, value: list[str]) -> list[str]:
        try:
            names = [normalise_feature(name) for name in value]
        except InputError as exc:
            raise ValueError(str(exc)) from None
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"features listed twice: {', '.join(repeated)}")
        return names

    @model_validator(mode="after")
    def _consistent(self) -> ModelSchema:
        problems = [*self._sensor_problems(), *self._mode_problems(), *self._output_problems()]
        if not problems and len(self.input_names) > MAX_INPUTS:
            problems.append(f"{len(self.input_names)} inputs; a model takes at most {MAX_INPUTS}")
        if not problems and (len(self.scaling.mean), len(self.scaling.scale)) != (self.n_inputs, self.n_inputs):
            problems.append(f"scaling needs {self.n_inputs} means and scales, one per input "
                            f"(got {len(self.scaling.mean)} and {len(self.scaling.scale)})")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _sensor_problems(self) -> list[str]:
        names = [s.name for s in self.sensors]
        repeated = sorted({n for n in names if names.count(n) > 1})
        return [f"sensors listed twice: {', '.join(repeated)}"] if repeated else []

    def _mode_problems(self) -> list[str]:
        if self.mode == "frame":
            return ["mode 'frame' takes no window and no features"] if self.window or self.features else []
        if self.window is None or not self.features:
            return ["mode 'window' needs a window and at least one feature"]
        problems = window_length_problems(self.window.length, self.features)
        if self.window.length * len(self.sensors) > MAX_WINDOW_VALUES:
            problems.append(f"a window of {self.window.length} frames of {len(self.sensors)} sensors is "
                            f"{self.window.length * len(self.sensors):,} readings; at most {MAX_WINDOW_VALUES:,}")
        return problems

    def _output_problems(self) -> list[str]:
        if self.kind == "anomaly":
            if self.labels is not None:
                return ["an anomaly model has no labels"]
            return [] if self.threshold is not None else ["an anomaly model needs its threshold"]
        if self.threshold is not None:
            return ["a classifier has no threshold"]
        if self.labels is None or len(self.labels) < 2 or len(set(self.labels)) != len(self.labels):
            return ["a classifier needs at least two labels, each once"]
        return []

    @property
    def sensor_names(self) -> list[str]:
        return [s.name for s in self.sensors]

    @property
    def input_names(self) -> list[str]:
        """The model's input columns: sensor names (frame mode) or ``"<sensor>.<feature>"`` (window mode)."""
        if self.mode == "frame":
            return self.sensor_names
        return feature_names(self.sensor_names, self.features)

    @property
    def n_inputs(self) -> int:
        return len(self.sensors) * (len(self.features) if self.mode == "window" else 1)

    @property
    def frames_needed(self) -> int:
        """Frames that make one input row."""
        return self.window.length if self.window is not None else 1


def load_schema(data: Mapping[str, Any] | str | bytes) -> ModelSchema:
    """A schema from its JSON text or plain data; ``InputError`` listing every problem (paths under ``schema``)."""
    try:
        if isinstance(data, str | bytes):
            return ModelSchema.model_validate_json(data)
        return ModelSchema.model_validate(data)
    except ValidationError as exc:
        raise InputError(validation_problems(exc, ModelSchema, prefix="schema")) from None


def _raise(problems: list[Problem]) -> None:
    if len(problems) > MAX_SHOWN_PROBLEMS:
        more = len(problems) - MAX_SHOWN_PROBLEMS
        problems = [*problems[:MAX_SHOWN_PROBLEMS], Problem("", f"and {more:,} more problems")]
    if problems:
        raise InputError(problems)


def check_sensors(schema: ModelSchema, device: Mapping[str, str | None] | Iterable[str]) -> None:
    """Can a device with these sensors (name -> unit, or names alone) feed this model? ``InputError`` if not.

    Units are compared where both the schema and the device state one, as written (``degC`` is not ``°C``).
    """
    units: Mapping[str, str | None] = device if isinstance(device, Mapping) else dict.fromkeys(device)
    problems = []
    for sensor in schema.sensors:
        if sensor.name not in units:
            problems.append(Problem(f"sensors.{sensor.name}", "the device has no such sensor; it has "
                                    f"{shown(sorted(units), 200)}"))
            continue
        unit = units[sensor.name]
        if sensor.unit is not None and unit is not None and unit != sensor.unit:
            problems.append(Problem(f"sensors.{sensor.name}", f"the device reads it in {unit!r}, the model was "
                                    f"trained on {sensor.unit!r}"))
    _raise(problems)


def check_timestamps(schema: ModelSchema, ts: npt.ArrayLike) -> None:
    """In window mode, the frames' times (s) must rise at ``window.interval_s`` (within its tolerance)."""
    if schema.window is None:
        return
    times = np.asarray(ts, dtype=np.float64)
    gaps = np.diff(times)
    spec = schema.window
    low, high = spec.interval_s * (1 - spec.interval_tolerance), spec.interval_s * (1 + spec.interval_tolerance)
    problems = []
    for i in np.flatnonzero(~((gaps >= low) & (gaps <= high))):
        gap = float(gaps[i])
        message = (f"not after the frame before it ({times[i + 1]!r} <= {times[i]!r}); frames must be in time order"
                   if gap <= 0 else f"{gap:.6g} s after the frame before it; the model reads one frame every "
                   f"{spec.interval_s:g} s (±{spec.interval_tolerance:.0%})")
        problems.append(Problem(f"frames[{i + 1}].ts", message))
    _raise(problems)


def _reading(frame: TelemetryFrame, name: str) -> float | str:
    """The reading as a float, or why it cannot be one."""
    if name not in frame.sensors:
        return "missing: the model reads this sensor"
    value = frame.sensors[name]
    if isinstance(value, bool | int | float):
        return float(value)
    return f"not a number (got {shown(value)})"


def sensor_matrix(schema: ModelSchema, frames: Sequence[TelemetryFrame]) -> npt.NDArray[np.float64]:
    """The schema's sensors of these frames of one device, ``(n_frames, n_sensors)`` in schema order.

    ``InputError`` naming every missing or non-numeric reading, frames of more than one device and, in window mode,
    frames out of time order or off the model's interval.
    """
    if not frames:
        raise InputError("no frames")
    devices = sorted({f.device_id for f in frames})
    if len(devices) > 1:
        raise InputError(f"frames of more than one device ({shown(devices, 120)}); a model reads one at a time")
    names = schema.sensor_names
    out = np.empty((len(frames), len(names)), dtype=np.float64)
    problems = []
    for i, frame in enumerate(frames):
        for j, name in enumerate(names):
            reading = _reading(frame, name)
            if isinstance(reading, str):
                problems.append(Problem(f"frames[{i}].sensors.{name}", reading))
            else:
                out[i, j] = reading
    _raise(problems)
    check_timestamps(schema, [f.ts for f in frames])
    return out


def check_frames(schema: ModelSchema, frames: Sequence[TelemetryFrame]) -> None:
    """Can these frames feed this model? ``InputError`` naming what is wrong (see ``sensor_matrix``)."""
    sensor_matrix(schema, frames)


def raw_inputs(schema: ModelSchema, readings: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """Unscaled input rows from ``(n_frames, n_sensors)`` readings in schema order, float32.

    Frame mode: one row per frame. Window mode: one row per window of ``window.length`` frames, a window every
    ``window.step`` frames from the first (frames after the last whole window are left out).
    """
    array = np.asarray(readings)
    if array.ndim != 2 or array.shape[1] != len(schema.sensors):
        raise InputError(f"expected readings of {len(schema.sensors)} sensors as (frames, sensors), "
                         f"got shape {array.shape}")
    if schema.window is None:
        return frame_features(array)
    return batch_features(sliding_windows(array, schema.window.length, schema.window.step), schema.features)


def model_inputs(schema: ModelSchema, frames: Sequence[TelemetryFrame]) -> npt.NDArray[np.float32]:
    """The model's scaled input rows for these frames of one device: checked, featured and scaled, float32."""
    return schema.scaling.apply(raw_inputs(schema, sensor_matrix(schema, frames)))
