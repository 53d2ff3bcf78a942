"""A model package: the ONNX model, its input schema and its model card in one ZIP file (``*.twinmodel``).

Members, each once and nothing else:

- ``model.onnx``: the served model (INT8 QDQ from training). One input, float32 ``[N, n_inputs]`` with N dynamic,
  fed ``shared.modelschema.model_inputs`` (rows already scaled). An anomaly model's first output is the score,
  float32 ``[N]`` or ``[N, 1]``, higher is more unusual; a classifier has a float32 ``[N, n_labels]`` output of
  class probabilities in ``schema.labels`` order (see ``shared.modelrun``);
- ``schema.json``: the ``ModelSchema``;
- ``card.json``: the ``ModelCard``: where the data came from, how it was trained, FP32 and INT8 metrics side by
  side, file sizes, per-input statistics of the training data (the drift reference) and test vectors;
- ``card.md``: the card as a readable summary.

A package is known by the sha256 of its bytes. ``read_package`` trusts nothing: a file that is not a ZIP, a
missing, extra or oversized member (sizes are checked as declared and again while reading, so a ZIP bomb stops at
the limit), a schema or card that does not validate, or a card that disagrees with its schema is an ``InputError``
that says which.

The cloud and the edge speak of assignments with ``ModelAssignment``: a model version for one device, for every
device of one edge, or for the fleet; a device is scored by the most specific rule (device, then edge, then fleet).
"""

from __future__ import annotations

import hashlib
import io
import lzma
import math
import zipfile
import zlib
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from shared.errors import InputError, Problem
from shared.frame import DEVICE_ID_PATTERN
from shared.modelschema import ModelSchema, load_schema
from shared.validation import validation_problems

__all__ = ["MAX_CARD", "MAX_MODEL", "MAX_PACKAGE", "MEMBERS", "MODEL_NAME_PATTERN", "AssignmentList", "DataSource",
           "FeatureStats", "ModelAssignment", "ModelCard", "ModelPackage", "TestVectors", "TrainingInfo",
           "build_package", "read_package", "sha256_hex"]

MAX_PACKAGE = 64 * 1024 * 1024  # bytes of a whole package
MAX_MODEL = 48 * 1024 * 1024  # bytes of model.onnx, unpacked
MAX_CARD = 4 * 1024 * 1024  # bytes of schema.json, card.json and card.md, unpacked, each
MAX_BINS = 20
MAX_TEST_ROWS = 16
MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
MEMBERS = {"model.onnx": MAX_MODEL, "schema.json": MAX_CARD, "card.json": MAX_CARD, "card.md": MAX_CARD}

Finite = Annotated[float, Field(allow_inf_nan=False)]
ModelName = Annotated[str, Field(pattern=MODEL_NAME_PATTERN)]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class _Card(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataSource(_Card):
    """Where the training data came from."""

    kind: Literal["history", "file"]
    device_id: str | None = Field(None, pattern=DEVICE_ID_PATTERN)
    edge_id: str | None = Field(None, max_length=64)
    start: Finite | None = Field(None, description="first frame's time, s since the epoch")
    end: Finite | None = Field(None, description="last frame's time, s since the epoch")
    path: str | None = Field(None, max_length=1024, description="the file's name as given to training")
    file_sha256: Sha256 | None = None
    rows: int = Field(ge=0, description="rows (frames or file lines) read")
    label_column: str | None = Field(None, max_length=128)


class TrainingInfo(_Card):
    algorithm: str = Field(max_length=256)
    params: dict[str, Any] = Field(default_factory=dict)
    rows_train: int = Field(ge=0)
    rows_eval: int = Field(ge=0)
    seconds: Finite = Field(ge=0)


class FeatureStats(_Card):
    """One model input column of the training data, before scaling: its moments and a binned distribution.

    ``edges`` are the interior cut points of the bins (at most 19, rising), ``expected`` the share of training
    rows in each of the ``len(edges) + 1`` bins (summing to 1): the reference that drift is measured against.
    """

    name: str = Field(max_length=256)
    mean: Finite
    std: Finite = Field(ge=0)
    min: Finite
    max: Finite
    edges: list[Finite] = Field(max_length=MAX_BINS - 1)
    expected: list[Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]] = Field(min_length=1,
                                                                                     max_length=MAX_BINS)

    @model_validator(mode="after")
    def _bins(self) -> FeatureStats:
        if len(self.expected) != len(self.edges) + 1:
            raise ValueError(f"{len(self.edges)} edges make {len(self.edges) + 1} bins, but expected has "
                             f"{len(self.expected)} shares")
        if any(b <= a for a, b in zip(self.edges, self.edges[1:], strict=False)):
            raise ValueError("edges must rise")
        if not math.isclose(sum(self.expected), 1.0, abs_tol=1e-6):
            raise ValueError(f"expected shares sum to {sum(self.expected):.6g}, not 1")
        return self


class TestVectors(_Card):
    """Scaled input rows and the served model's output for them: the edge refuses a model that disagrees."""

    __test__ = False  # not a pytest class

    inputs: list[list[Finite]] = Field(min_length=1, max_length=MAX_TEST_ROWS)
    outputs: list[list[Finite]] = Field(min_length=1, max_length=MAX_TEST_ROWS)
    atol: Finite = Field(gt=0, description="largest allowed absolute difference of an output")

    @model_validator(mode="after")
    def _rows(self) -> TestVectors:
        if len(self.inputs) != len(self.outputs):
            raise ValueError(f"{len(self.inputs)} input rows but {len(self.outputs)} output rows")
        for what, rows in (("input", self.inputs), ("output", self.outputs)):
            if len({len(row) for row in rows}) != 1:
                raise ValueError(f"the {what} rows differ in length ({sorted({len(row) for row in rows})}); "
                                 "every row has the same number of values")
        return self


class ModelCard(_Card):
    name: ModelName
    kind: Literal["anomaly", "classifier"]
    created_at: Finite
    description: str = Field("", max_length=4096)
    source: DataSource
    training: TrainingInfo
    metrics: dict[Literal["fp32", "int8"], dict[str, Finite]] = Field(
        default_factory=dict, description="per variant: roc_auc, f1, accuracy, macro_f1, latency_p95_ms, ...")
    size_bytes: dict[Literal["fp32", "int8"], int] = Field(default_factory=dict)
    baseline: dict[str, Any] | None = Field(None, description="{name, metrics} of a baseline on the same split")
    feature_stats: list[FeatureStats] = Field(min_length=1, max_length=4096)
    test_vectors: TestVectors


@dataclass(frozen=True)
class ModelPackage:
    model: bytes
    schema: ModelSchema
    card: ModelCard
    card_md: str
    sha256: str
    size: int

    @property
    def name(self) -> str:
        return self.card.name


class ModelAssignment(BaseModel):
    """A model version served to one device (``scope="device"``), every device of one edge, or the fleet."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scope: Literal["device", "edge", "fleet"]
    target: str | None = Field(None, pattern=DEVICE_ID_PATTERN, description="device or edge id; none for fleet")
    model: ModelName
    version: int = Field(ge=1)
    sha256: Sha256
    size: int = Field(ge=1, le=MAX_PACKAGE)

    @model_validator(mode="after")
    def _target(self) -> ModelAssignment:
        if (self.scope == "fleet") != (self.target is None):
            raise ValueError("a fleet assignment has no target; a device or edge assignment names one")
        return self


class AssignmentList(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    assignments: list[ModelAssignment] = Field(default_factory=list, max_length=100_000)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _card_problems(schema: ModelSchema, card: ModelCard) -> list[str]:
    problems = []
    if card.kind != schema.kind:
        problems.append(f"card.json says kind {card.kind!r}, schema.json says {schema.kind!r}")
    names = schema.input_names
    stats = [s.name for s in card.feature_stats]
    if stats != names:
        problems.append(f"card.json has statistics for {len(stats)} inputs {stats[:3]}..., the schema's inputs are "
                        f"{len(names)} {names[:3]}...; they must match one for one, in order")
    widths = {len(row) for row in card.test_vectors.inputs}
    if widths != {schema.n_inputs}:
        problems.append(f"card.json's test vectors have rows of {sorted(widths)} inputs; the schema has "
                        f"{schema.n_inputs}")
    return problems


def build_package(model: bytes, schema: ModelSchema, card: ModelCard, card_md: str) -> bytes:
    """The package's bytes; ``InputError`` if the parts disagree or exceed the limits."""
    problems = _card_problems(schema, card)
    if problems:
        raise InputError([Problem("", p) for p in problems])
    parts = {"model.onnx": model, "schema.json": schema.model_dump_json(indent=2).encode(),
             "card.json": card.model_dump_json(indent=2).encode(), "card.md": card_md.encode()}
    for name, data in parts.items():
        if len(data) > MEMBERS[name]:
            raise InputError(f"{name} is {len(data):,} bytes; a package member holds at most {MEMBERS[name]:,}")
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in parts.items():
            info = zipfile.ZipInfo(name, date_time=(2000, 1, 1, 0, 0, 0))  # same parts, same bytes, same sha256
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    data = out.getvalue()
    if len(data) > MAX_PACKAGE:
        raise InputError(f"the package is {len(data):,} bytes; at most {MAX_PACKAGE:,}")
    return data


def _member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    limit = MEMBERS[info.filename]
    if info.file_size > limit:
        raise InputError(f"{info.filename} unpacks to {info.file_size:,} bytes; at most {limit:,}")
    with archive.open(info) as member:
        data = member.read(limit + 1)  # the declared size may lie: read one byte past the limit at most
    if len(data) > limit:
        raise InputError(f"{info.filename} unpacks to more than {limit:,} bytes")
    return data


def read_package(data: bytes) -> ModelPackage:
    """The package in these bytes, checked; ``InputError`` saying what is wrong with it."""
    if len(data) > MAX_PACKAGE:
        raise InputError(f"the package is {len(data):,} bytes; at most {MAX_PACKAGE:,}")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError) as exc:
        raise InputError(f"not a model package: not a readable ZIP file ({exc}); a package is the .twinmodel "
                         "file that `twincloud model train` writes") from None
    with archive:
        infos = archive.infolist()
        names = [i.filename for i in infos]
        extra = sorted(set(names) - set(MEMBERS))
        missing = sorted(set(MEMBERS) - set(names))
        repeated = sorted({n for n in names if names.count(n) > 1})
        problems = []
        if extra:
            problems.append(f"unexpected members {', '.join(repr(n) for n in extra[:5])}")
        if missing:
            problems.append(f"missing {', '.join(missing)}")
        if repeated:
            problems.append(f"members listed twice: {', '.join(repeated)}")
        if problems:
            raise InputError("not a model package: " + "; ".join(problems))
        try:
            parts = {info.filename: _member(archive, info) for info in infos}
        except (zipfile.BadZipFile, EOFError, OSError, NotImplementedError, RuntimeError, ValueError, zlib.error,
                lzma.LZMAError) as exc:
            raise InputError(f"the package is damaged: {exc}") from None
    schema = load_schema(parts["schema.json"])
    try:
        card = ModelCard.model_validate_json(parts["card.json"])
    except ValidationError as exc:
        raise InputError(validation_problems(exc, ModelCard, prefix="card")) from None
    try:
        card_md = parts["card.md"].decode("utf-8")
    except UnicodeDecodeError:
        raise InputError("card.md is not UTF-8 text") from None
    problems = _card_problems(schema, card)
    if problems:
        raise InputError([Problem("", p) for p in problems])
    if not parts["model.onnx"]:
        raise InputError("model.onnx is empty")
    return ModelPackage(model=parts["model.onnx"], schema=schema, card=card, card_md=card_md,
                        sha256=sha256_hex(data), size=len(data))
