"""Model packages on disk for the edge's inference tests: real ONNX graphs (``tests.mlkit``), written as files
and assigned like the downloader does; plus graphs that fail at run time."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edge.inference import InferenceConfig, InferenceEngine, LocalAssignment
from shared.frame import TelemetryFrame
from shared.modelpackage import ModelAssignment
from shared.modelschema import ModelSchema
from tests.mlkit import make_package, make_schema

__all__ = ["T0", "assign", "engine", "frame", "log_graph", "make_schema", "reshape_graph", "write_package"]

T0 = 1_800_000_000.0


def write_package(tmp: Path, name: str = "press-anomaly", schema: ModelSchema | None = None, **kwargs: Any) -> Path:
    data, package = make_package(schema, name=name, **kwargs)
    path = tmp / f"{name}-{package.sha256[:8]}.twinmodel"
    path.write_bytes(data)
    return path


def assign(path: Path, version: int = 1, *, scope: str = "device", target: str | None = "press-1",
           model: str = "press-anomaly", sha256: str | None = None) -> LocalAssignment:
    """An assignment of the package at ``path``, with its own sha256 unless told otherwise."""
    data = path.read_bytes()
    return LocalAssignment(ModelAssignment(scope=scope, target=target, model=model, version=version,
                                           sha256=sha256 or hashlib.sha256(data).hexdigest(),
                                           size=max(1, len(data))), path)


def engine(**config: Any) -> InferenceEngine:
    return InferenceEngine(InferenceConfig.model_validate(config), edge_id="edge-1")


def frame(i: float, device: str = "press-1", **sensors: Any) -> TelemetryFrame:
    return TelemetryFrame(ts=T0 + i, device_id=device, sensors=sensors)


def _graph(nodes: list[Any], n_inputs: int, inits: list[Any]) -> bytes:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", n_inputs])
    score = helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"])
    graph = helper.make_graph(nodes, "failing", [x], [score], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model.SerializeToString()


def reshape_graph(n_inputs: int) -> bytes:
    """mean(x**2), but through a Reshape to one row: fine for one row, throws for a batch of more."""
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["one"]),
             helper.make_node("Mul", ["one", "one"], ["sq"]),
             helper.make_node("ReduceMean", ["sq", "axes"], ["score"], keepdims=0)]
    inits = [numpy_helper.from_array(np.array([1, n_inputs], dtype=np.int64), "shape"),
             numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")]
    return _graph(nodes, n_inputs, inits)


def log_graph(n_inputs: int) -> bytes:
    """mean(log(x)): finite for positive readings, NaN as soon as one is negative."""
    nodes = [helper.make_node("Log", ["x"], ["lg"]),
             helper.make_node("ReduceMean", ["lg", "axes"], ["score"], keepdims=0)]
    return _graph(nodes, n_inputs, [numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")])
