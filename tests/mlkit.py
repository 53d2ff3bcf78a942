"""Small real model packages for tests: ONNX graphs built with ``onnx.helper``, packed by ``build_package``.

The anomaly model scores a row by its mean square (``mean(x**2)``, so a row far from the training mean scores
high); the classifier answers softmax(x @ W). Both are real ONNX files run by onnxruntime; the card's test
vectors are computed by running them, like training does.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from shared.modelpackage import (
    DataSource,
    FeatureStats,
    ModelCard,
    ModelPackage,
    TestVectors,
    TrainingInfo,
    build_package,
    read_package,
)
from shared.modelrun import ModelRunner
from shared.modelschema import ModelSchema, load_schema

__all__ = ["anomaly_graph", "classifier_graph", "make_package", "make_schema"]


def _model(nodes: list[Any], n_inputs: int | str, outputs: list[Any], initializers: Sequence[Any] = ()) -> bytes:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", n_inputs])
    graph = helper.make_graph(nodes, "test", [x], outputs, initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model.SerializeToString()


def anomaly_graph(n_inputs: int, *, scale: float = 1.0) -> bytes:
    """score = scale * mean(x**2) over a row, shape [N]."""
    nodes = [
        helper.make_node("Mul", ["x", "x"], ["sq"]),
        helper.make_node("ReduceMean", ["sq", "axes"], ["ms"], keepdims=0),
        helper.make_node("Mul", ["ms", "k"], ["score"]),
    ]
    inits = [numpy_helper.from_array(np.array([1], dtype=np.int64), "axes"),
             numpy_helper.from_array(np.array(scale, dtype=np.float32), "k")]
    score = helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"])
    return _model(nodes, n_inputs, [score], inits)


def classifier_graph(n_inputs: int, n_labels: int, *, seed: int = 0) -> bytes:
    weights = np.random.default_rng(seed).normal(size=(n_inputs, n_labels)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["logits"]),
             helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1)]
    out = helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", n_labels])
    return _model(nodes, n_inputs, [out], [numpy_helper.from_array(weights, "w")])


def make_schema(sensors: Sequence[str | tuple[str, str]] = ("temp", "vib"), *, kind: str = "anomaly",
                mode: str = "frame", window: dict[str, Any] | None = None, features: Sequence[str] = (),
                threshold: float | None = 1.0, labels: Sequence[str] | None = None,
                mean: float = 0.0, scale: float = 1.0) -> ModelSchema:
    specs = [{"name": s, "unit": None} if isinstance(s, str) else {"name": s[0], "unit": s[1]} for s in sensors]
    n = len(specs) * (len(features) if mode == "window" else 1)
    data: dict[str, Any] = {"kind": kind, "sensors": specs, "mode": mode,
                            "scaling": {"mean": [mean] * n, "scale": [scale] * n}}
    if mode == "window":
        data["window"] = window or {"length": 8, "step": 4, "interval_s": 1.0}
        data["features"] = list(features)
    if kind == "anomaly":
        data["threshold"] = threshold
    else:
        data["labels"] = list(labels or ["idle", "run"])
    return load_schema(data)


def make_package(schema: ModelSchema | None = None, *, model: bytes | None = None, name: str = "test-model",
                 test_rows: Any = None, outputs: Any = None, atol: float = 1e-4) -> tuple[bytes, ModelPackage]:
    """A package's bytes and the package read back. The model defaults to the kind's test graph; the test
    vectors are what the model answers (``outputs`` overrides them, to build a package whose card lies)."""
    schema = schema or make_schema()
    n = schema.n_inputs
    if model is None:
        model = anomaly_graph(n) if schema.kind == "anomaly" else classifier_graph(n, len(schema.labels or []))
    rows = np.asarray(test_rows if test_rows is not None else np.linspace(-2, 2, 4 * n).reshape(4, n),
                      dtype=np.float32)
    stats = [FeatureStats(name=col, mean=0.0, std=1.0, min=-3.0, max=3.0,
                          edges=[-1.0, 0.0, 1.0], expected=[0.16, 0.34, 0.34, 0.16]) for col in schema.input_names]
    placeholder = TestVectors(inputs=rows.tolist(), outputs=[[0.0]] * len(rows), atol=atol)
    card = ModelCard(name=name, kind=schema.kind, created_at=time.time(),
                     source=DataSource(kind="file", path="test.csv", rows=100),
                     training=TrainingInfo(algorithm="test graph", rows_train=80, rows_eval=20, seconds=0.0),
                     feature_stats=stats, test_vectors=placeholder)
    if outputs is None:
        draft = read_package(build_package(model, schema, card, "draft"))
        outputs = ModelRunner(draft).raw(rows).tolist()
    card = card.model_copy(update={"test_vectors": TestVectors(inputs=rows.tolist(), outputs=outputs, atol=atol)})
    data = build_package(model, schema, card, f"# {name}\n\ntest model\n")
    return data, read_package(data)


async def fleet_engine(directory: Any, sensors: Sequence[str], *, mean: float, scale: float) -> Any:
    """An edge inference engine serving one fleet anomaly model (this module's test graph) over ``sensors``:
    what the benchmarks score frames with."""
    from pathlib import Path

    from edge.inference import InferenceConfig, InferenceEngine, LocalAssignment
    from shared.modelpackage import ModelAssignment

    data, package = make_package(make_schema(tuple(sensors), mean=mean, scale=scale), name="bench")
    path = Path(directory) / "bench.twinmodel"
    path.write_bytes(data)
    engine = InferenceEngine(InferenceConfig(), edge_id="bench")
    rule = ModelAssignment(scope="fleet", model="bench", version=1, sha256=package.sha256, size=len(data))
    await engine.set_assignments([LocalAssignment(rule, path)])
    return engine
