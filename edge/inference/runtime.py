"""The blocking half of inference: loading and checking a package, and scoring rows. Runs on the engine's thread.

Imported when the first model is loaded, so a gateway without a model never loads numpy or onnxruntime.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edge.inference.drift import ColumnReference
from shared.errors import InputError
from shared.features import batch_features, frame_features
from shared.modelpackage import ModelPackage, read_package
from shared.modelrun import check_signature, open_session, run_test_vectors, score
from shared.modelschema import ModelSchema, check_timestamps

__all__ = ["MAX_PACKAGE", "DeviceRows", "LoadedModel", "Outcome", "load_model", "score_rows"]

MAX_PACKAGE = 64 * 1024 * 1024


@dataclass(eq=False)
class LoadedModel:
    """A package that passed every check, with its open session; shared by every device it scores."""

    name: str
    version: int
    sha256: str
    package: ModelPackage
    session: Any
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


def load_model(path: Path, *, sha256: str | None, threads: int, name: str | None = None,
               version: int = 0) -> LoadedModel:
    """Read, verify and open a package; run its test vectors. ``InputError`` saying what is wrong."""
    try:
        with path.open("rb") as file:
            data = file.read(MAX_PACKAGE + 1)
    except OSError as exc:
        raise InputError(f"cannot read the package {path}: {exc.strerror or exc}") from None
    digest = hashlib.sha256(data).hexdigest()
    if sha256 is not None and digest != sha256:
        raise InputError(f"the package's sha256 is {digest[:12]}…, the assignment says {sha256[:12]}… "
                         f"(a damaged or truncated download, {len(data):,} bytes)")
    package = read_package(data)
    session = open_session(package, threads=threads)
    check_signature(session, package.schema)
    run_test_vectors(session, package)
    return LoadedModel(name=name or package.card.name, version=version, sha256=digest, package=package,
                       session=session, drift_columns=_drift_columns(package))


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
    """Features, scaling and one ``session.run`` for every device's rows (blocking)."""
    scaled = []
    for rows in batch:
        try:
            rows.raw = _raw_inputs(model, rows.readings)
            scaled.append(model.schema.scaling.apply(rows.raw))
        except InputError as exc:
            rows.error = str(exc)
    ready = [rows for rows in batch if rows.error is None]
    outcome = Outcome()
    if not ready:
        return outcome
    inputs = np.concatenate(scaled) if len(scaled) > 1 else scaled[0]
    try:
        result = score(model.session, model.schema, inputs)
    except InputError as exc:
        outcome.error = str(exc)
        return outcome
    values = _values(model, result)
    start = 0
    for rows in ready:
        mine = values[start:start + len(rows.readings)]
        start += len(rows.readings)
        if all(math.isfinite(v) and (c is None or math.isfinite(c)) for v, c in mine):
            outcome.values[rows.device_id] = mine
        else:
            outcome.bad_devices[rows.device_id] = f"the model gave a non-finite output for {rows.device_id}"
    return outcome


def _values(model: LoadedModel, result: Any) -> list[tuple[float, float | None]]:
    if model.kind == "anomaly":
        return [(float(s), None) for s in np.asarray(result.scores, dtype=np.float64).ravel()]
    classes = np.asarray(result.classes).ravel()
    confidence = np.asarray(result.confidence, dtype=np.float64).ravel()
    return [(float(c), float(p)) for c, p in zip(classes, confidence, strict=True)]
