"""Running a model package with onnxruntime: open, check against its schema, run its test vectors, score rows.

onnxruntime is imported when a session is opened, not with this module: an edge with no model never loads it.
Every failure is an ``InputError`` in plain words (onnxruntime's own text is kept after a colon), so a bad model
is refused with a reason and never reaches the data path:

- the model will not load (truncated, not ONNX, an operator this onnxruntime lacks);
- its input is not one float32 ``[N, n_inputs]`` tensor with N free, or its output is not what the kind needs
  (anomaly: a float32 score ``[N]`` or ``[N, 1]``; classifier: float32 probabilities ``[N, n_labels]``);
- its output on the card's test vectors differs from what training recorded by more than ``atol``;
- at run time, it throws, or answers with the wrong shape or with values that are not finite.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from shared.errors import InputError
from shared.modelpackage import ModelPackage
from shared.modelschema import ModelSchema

if TYPE_CHECKING:
    import onnxruntime

__all__ = ["ModelRunner", "ScoreResult", "check_signature", "open_session", "run_test_vectors"]


@dataclass(frozen=True)
class ScoreResult:
    """Per input row: an anomaly model's ``scores``; a classifier's ``classes`` (label index) and ``confidence``."""

    scores: npt.NDArray[np.float32] | None = None
    classes: npt.NDArray[np.int64] | None = None
    confidence: npt.NDArray[np.float32] | None = None

    def __len__(self) -> int:
        rows = self.scores if self.scores is not None else self.classes
        return 0 if rows is None else len(rows)


def open_session(package: ModelPackage, threads: int = 1) -> onnxruntime.InferenceSession:
    """An onnxruntime session on the package's model with ``threads`` intra-op threads and one inter-op."""
    try:
        import onnxruntime
    except ImportError:
        raise InputError("onnxruntime is not installed: install the edge (pip install .[edge]) to run models") from None
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = max(1, int(threads))
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    # No memory arena: the gateway's models are small and their runs tiny, and an arena keeps what a large batch
    # once took for good (RSS on a box with little RAM).
    options.enable_cpu_mem_arena = False
    options.log_severity_level = 3  # errors only: a refused model is reported by us, once, in plain words
    try:
        return onnxruntime.InferenceSession(package.model, sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own classes (and RuntimeError) for a bad file
        raise InputError(f"model.onnx does not load: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:400]


def _free(dim: Any) -> bool:
    return not isinstance(dim, int) or dim <= 0


def check_signature(session: onnxruntime.InferenceSession, schema: ModelSchema) -> None:
    """Does the model take and give what its schema says? ``InputError`` naming the mismatch."""
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise InputError(f"the model takes {len(inputs)} inputs; a package's model takes exactly one "
                         f"(rows of {schema.n_inputs} values)")
    first = inputs[0]
    shape = list(first.shape)
    if first.type != "tensor(float)":
        raise InputError(f"the model's input {first.name!r} is {first.type}; it must be float32 (tensor(float))")
    if len(shape) != 2 or not _free(shape[0]) or shape[1] != schema.n_inputs:
        raise InputError(f"the model's input {first.name!r} has shape {shape}; the schema needs "
                         f"[N, {schema.n_inputs}] (N rows, {schema.n_inputs} inputs each)")
    _output_index(session, schema)


def _output_index(session: onnxruntime.InferenceSession, schema: ModelSchema) -> int:
    outputs = session.get_outputs()
    if schema.kind == "anomaly":
        if not outputs or outputs[0].type != "tensor(float)":
            raise InputError("an anomaly model's first output must be its float32 score")
        shape = list(outputs[0].shape)
        if len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1):
            raise InputError(f"an anomaly model's score has shape {shape}; it must be [N] or [N, 1]")
        return 0
    n = len(schema.labels or [])
    for i, out in enumerate(outputs):
        shape = list(out.shape)
        if out.type == "tensor(float)" and len(shape) == 2 and shape[1] == n:
            return i
    shown = ", ".join(f"{o.name} {o.type} {list(o.shape)}" for o in outputs)
    raise InputError(f"a classifier with {n} labels needs a float32 [N, {n}] probabilities output; the model has "
                     f"{shown or 'no outputs'}")


class ModelRunner:
    """A checked session and how to read its output. ``score(rows)`` is safe to call from one thread at a time."""

    def __init__(self, package: ModelPackage, threads: int = 1) -> None:
        self.package = package
        self.schema = package.schema
        self.session = open_session(package, threads)
        check_signature(self.session, self.schema)
        self._input = self.session.get_inputs()[0].name
        self._output_at = _output_index(self.session, self.schema)
        self._output = self.session.get_outputs()[self._output_at].name

    def raw(self, rows: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """The model's output for these scaled rows as ``(n_rows, width)``; ``InputError`` if it fails."""
        if rows.ndim != 2 or rows.shape[1] != self.schema.n_inputs:
            raise InputError(f"expected rows of {self.schema.n_inputs} inputs, got shape {rows.shape}")
        try:
            (out,) = self.session.run([self._output], {self._input: np.ascontiguousarray(rows, dtype=np.float32)})
        except Exception as exc:  # noqa: BLE001 - whatever the model throws takes it out of the path, never the daemon
            raise InputError(f"the model failed at run time: {_first_line(exc)}") from None
        array = np.asarray(out)
        if array.ndim == 1:
            array = array.reshape(-1, 1)
        width = 1 if self.schema.kind == "anomaly" else len(self.schema.labels or [])
        if array.shape != (rows.shape[0], width):
            raise InputError(f"the model answered {rows.shape[0]} rows with an output of shape {array.shape}; "
                             f"expected ({rows.shape[0]}, {width})")
        if not np.isfinite(array).all():
            raise InputError("the model answered with values that are not finite numbers")
        return array.astype(np.float32, copy=False)

    def score(self, rows: npt.NDArray[np.float32]) -> ScoreResult:
        out = self.raw(rows)
        if self.schema.kind == "anomaly":
            return ScoreResult(scores=out[:, 0])
        return ScoreResult(classes=out.argmax(axis=1).astype(np.int64), confidence=out.max(axis=1))


def run_test_vectors(runner: ModelRunner) -> None:
    """Run the card's test vectors; ``InputError`` if the model's answers differ from training's."""
    vectors = runner.package.card.test_vectors
    rows = np.asarray(vectors.inputs, dtype=np.float32)
    expected = np.asarray(vectors.outputs, dtype=np.float64)
    got = runner.raw(rows).astype(np.float64)
    if got.shape != expected.shape:
        raise InputError(f"the card's test vectors expect outputs of shape {expected.shape}; the model gives "
                         f"{got.shape}")
    worst = float(np.max(np.abs(got - expected)))
    if worst > vectors.atol:
        raise InputError(f"the model's answers to the card's test vectors differ from training's by up to "
                         f"{worst:.6g} (allowed {vectors.atol:g}): the model file does not match its card")
