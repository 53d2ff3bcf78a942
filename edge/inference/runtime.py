"""The blocking half of inference: loading and checking a package, and scoring rows. Runs on the engine's thread.

Imported when the first model is loaded, so a gateway without a model never loads numpy or onnxruntime.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
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
    # CPU seconds per row of the last run (``timed``); unknown (infinite) until the first
    row_cost: float = math.inf

    @property
    def schema(self) -> ModelSchema:
        return self.package.schema

    @property
    def kind(self) -> str:
        return self.package.schema.kind

    def timed(self, score: Callable[[LoadedModel, list[DeviceRows]], Outcome], batch: list[DeviceRows]) -> Outcome:
        """``score(self, batch)``, noting its CPU time per row in ``row_cost``."""
        start = time.thread_time()
        try:
            return score(self, batch)
        finally:
            rows = sum(len(rows.inputs) for rows in batch)
            self.row_cost = (time.thread_time() - start) / max(rows, 1)

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
    """One device's complete rows for one run, and what the run gave them."""

    device_id: str
    inputs: npt.NDArray[np.float64]  # (rows, sensors) in frame mode, (rows, length, sensors) in window mode
    raw: npt.NDArray[np.float32] | None = None  # the model's inputs before scaling (what drift is judged on)
    error: str | None = None  # the readings could not become inputs (e.g. beyond float32)
    values: list[float] | None = None  # per row: the score, or the class index
    confidence: list[float] | None = None  # per row, a classifier's
    failure: str | None = None  # these rows made the model fail, or give non-finite outputs


@dataclass(eq=False)
class Outcome:
    """What one run gave beyond each device's rows: the error that failed it (the rows of one device)."""

    error: str | None = None


def _raw_inputs(model: LoadedModel, inputs: npt.NDArray[np.float64]) -> npt.NDArray[np.float32]:
    schema = model.schema
    if schema.window is None:
        return frame_features(inputs)
    return batch_features(inputs, schema.features)


def score_rows(model: LoadedModel, batch: list[DeviceRows]) -> Outcome:
    """Features, scaling and one run for every device's rows (blocking); the outputs go to each ``DeviceRows``.

    A run that fails with the rows of several devices is run again per device, so that only the devices whose
    rows make the model fail are counted against it (a failing run is rare; the common case is one run).
    """
    scaled: list[tuple[DeviceRows, npt.NDArray[np.float32]]] = []
    for rows in batch:
        try:
            rows.raw = _raw_inputs(model, rows.inputs)
            scaled.append((rows, model.schema.scaling.apply(rows.raw)))
        except InputError as exc:
            rows.error = str(exc)
    outcome = Outcome()
    if not scaled:
        return outcome
    try:
        result = model.runner.score(np.concatenate([s for _, s in scaled]) if len(scaled) > 1 else scaled[0][1])
    except InputError as exc:
        if len(scaled) == 1:
            outcome.error = str(exc)
            return outcome
        for rows, inputs in scaled:
            try:
                _put(rows, model.runner.score(inputs), 0, len(inputs))
            except InputError as one:
                rows.failure = str(one)
        return outcome
    start = 0
    for rows, inputs in scaled:
        _put(rows, result, start, start + len(inputs))
        start += len(inputs)
    return outcome


def _put(rows: DeviceRows, result: ScoreResult, start: int, end: int) -> None:
    if result.scores is not None:
        rows.values = result.scores[start:end].astype(np.float64).tolist()
        return
    assert result.classes is not None and result.confidence is not None
    rows.values = result.classes[start:end].astype(np.float64).tolist()
    rows.confidence = result.confidence[start:end].astype(np.float64).tolist()
