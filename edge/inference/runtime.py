"""The blocking half of inference: loading and checking a package, and scoring rows. Runs on the engine's thread.

Imported when the first model is loaded, so a gateway without a model never loads numpy or onnxruntime.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edge.inference.drift import ColumnReference
from shared.errors import InputError
from shared.features import batch_features, frame_features
from shared.modelpackage import MAX_PACKAGE, ModelPackage, read_package
from shared.modelrun import ModelRunner, ScoreResult, run_test_vectors
from shared.modelschema import ModelSchema, check_timestamps

__all__ = ["DeviceRows", "LoadedModel", "Outcome", "load_model", "score_rows"]


@dataclass(eq=False)
class LoadedModel:
    """A package that passed every check, with its open session; shared by every device it scores."""

    name: str
    version: int
    sha256: str
    package: ModelPackage
    runner: ModelRunner
    drift_columns: list[ColumnReference]

    @property
    def schema(self) -> ModelSchema:
        return self.package.schema

    @property
    def kind(self) -> str:
        return self.package.schema.kind

    def gap_check(self) -> Any:
        """``(previous_ts, ts) -> True`` when ``ts`` follows at the model's interval (window mode)."""
        schema = self.schema

        def follows(before: float, ts: float) -> bool:
            try:
                check_timestamps(schema, (before, ts))
            except InputError:
                return False
            return True

        return follows


def load_model(path: Path, *, sha256: str | None, threads: int, version: int, name: str | None = None) -> LoadedModel:
    """Read, verify and open a package; run its test vectors. ``InputError`` saying what is wrong."""
    try:
        with path.open("rb") as file:
            data = file.read(MAX_PACKAGE + 1)
    except OSError as exc:
        raise InputError(f"cannot read the package {path}: {exc.strerror or exc}") from None
    digest = hashlib.sha256(data).hexdigest()
    if sha256 is not None and digest != sha256:
        raise InputError(f"the file's sha256 is {digest[:12]}…, the assignment's {sha256[:12]}…: the package "
                         f"({len(data):,} bytes) is damaged, truncated or another one")
    package = read_package(data)
    runner = ModelRunner(package, threads)
    run_test_vectors(runner)
    return LoadedModel(name=name or package.card.name, version=version, sha256=digest, package=package,
                       runner=runner, drift_columns=_drift_columns(package))


def _drift_columns(package: ModelPackage) -> list[ColumnReference]:
    stats = package.card.feature_stats
    return [ColumnReference(s.name, list(s.edges), list(s.expected)) for s in stats]


@dataclass(eq=False)
class DeviceRows:
    """One device's complete rows for one run: the readings of each row (a frame's, or a window's)."""

    device_id: str
    readings: list[list[list[float]]]
    raw: npt.NDArray[np.float32] | None = None  # the model's inputs before scaling (what drift is judged on)
    error: str | None = None  # the readings could not become inputs (e.g. beyond float32)


@dataclass(eq=False)
class Outcome:
    """What one run gave: per device, its rows' outputs, or the error that failed the run."""

    values: dict[str, list[tuple[float, float | None]]] = field(default_factory=dict)  # (score or class, confidence)
    error: str | None = None
    bad_devices: dict[str, str] = field(default_factory=dict)  # a device's rows gave non-finite outputs


def _raw_inputs(model: LoadedModel, readings: list[list[list[float]]]) -> npt.NDArray[np.float32]:
    schema = model.schema
    if schema.window is None:
        return frame_features(np.asarray([r[0] for r in readings], dtype=np.float64))
    return batch_features(np.asarray(readings, dtype=np.float64), schema.features)


def score_rows(model: LoadedModel, batch: list[DeviceRows]) -> Outcome:
    """Features, scaling and one run for every device's rows (blocking).

    A run that fails with the rows of several devices is run again per device, so that only the devices whose
    rows make the model fail are counted against it (a failing run is rare; the common case is one run).
    """
    scaled: dict[str, npt.NDArray[np.float32]] = {}
    for rows in batch:
        try:
            rows.raw = _raw_inputs(model, rows.readings)
            scaled[rows.device_id] = model.schema.scaling.apply(rows.raw)
        except InputError as exc:
            rows.error = str(exc)
    outcome = Outcome()
    if not scaled:
        return outcome
    inputs = list(scaled.values())
    try:
        result = model.runner.score(np.concatenate(inputs) if len(inputs) > 1 else inputs[0])
    except InputError as exc:
        if len(scaled) == 1:
            outcome.error = str(exc)
            return outcome
        for device_id, rows_in in scaled.items():
            try:
                outcome.values[device_id] = _values(model.runner.score(rows_in))
            except InputError as one:
                outcome.bad_devices[device_id] = str(one)
        return outcome
    values = _values(result)
    start = 0
    for device_id, rows_in in scaled.items():
        outcome.values[device_id] = values[start:start + len(rows_in)]
        start += len(rows_in)
    return outcome


def _values(result: ScoreResult) -> list[tuple[float, float | None]]:
    if result.scores is not None:
        return [(float(s), None) for s in result.scores.tolist()]
    assert result.classes is not None and result.confidence is not None
    return [(float(c), float(p)) for c, p in zip(result.classes.tolist(), result.confidence.tolist(), strict=True)]
