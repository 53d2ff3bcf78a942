"""Trained MLPs as small hand-built ONNX graphs (opset 18), and their INT8 post-training static quantization.

- Anomaly: an autoencoder. Dense ReLU layers reconstruct the scaled row; the graph itself computes the mean
  squared reconstruction error per row, the score ``[N]`` (higher is more unusual).
- Classifier: dense ReLU layers, then softmax (or, with two classes, a logistic unit as ``[1 - p, p]``): the
  ``probabilities`` output ``[N, n_labels]`` in label order.

Both take one float32 input ``rows`` of shape ``[N, n_inputs]``, N free. Quantization is onnxruntime's
``quantize_static`` in QDQ format with signed 8-bit weights and activations, per tensor, on the MatMul nodes,
calibrated (min-max) on training rows.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["OPSET", "anomaly_graph", "classifier_graph", "quantize_int8"]

OPSET = 18
INPUT = "rows"


def _dense_layers(nodes: list[Any], inits: list[Any], coefs: Sequence[npt.NDArray[Any]],
                  intercepts: Sequence[npt.NDArray[Any]]) -> str:
    """MatMul + Add per layer, ReLU between them; the name of the last layer's (linear) output."""
    from onnx import helper, numpy_helper

    current = INPUT
    for i, (weights, bias) in enumerate(zip(coefs, intercepts, strict=True)):
        inits += [numpy_helper.from_array(np.asarray(weights, np.float32), f"w{i}"),
                  numpy_helper.from_array(np.asarray(bias, np.float32), f"b{i}")]
        nodes += [helper.make_node("MatMul", [current, f"w{i}"], [f"mm{i}"], name=f"matmul{i}"),
                  helper.make_node("Add", [f"mm{i}", f"b{i}"], [f"z{i}"], name=f"add{i}")]
        current = f"z{i}"
        if i < len(coefs) - 1:
            nodes.append(helper.make_node("Relu", [current], [f"h{i}"], name=f"relu{i}"))
            current = f"h{i}"
    return current


def _model(nodes: list[Any], inits: list[Any], n_inputs: int, outputs: list[Any], name: str) -> bytes:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT,
                                                                         ["N", n_inputs])], outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="twinedge")
    model.ir_version = 8  # readable by onnxruntime 1.14 and later, as on older gateways
    onnx.checker.check_model(model, full_check=True)
    return bytes(model.SerializeToString())


def _relu_mlp(model: Any) -> None:
    if getattr(model, "activation", None) != "relu":
        raise ValueError(f"the graph builder takes ReLU MLPs, not activation {model.activation!r}")


def anomaly_graph(model: Any, n_inputs: int) -> bytes:
    """An ``MLPRegressor`` autoencoder (trained to reproduce its input) as ``rows -> score [N]``."""
    from onnx import TensorProto, helper, numpy_helper

    _relu_mlp(model)
    nodes: list[Any] = []
    inits: list[Any] = []
    recon = _dense_layers(nodes, inits, model.coefs_, model.intercepts_)
    inits.append(numpy_helper.from_array(np.asarray([1], np.int64), "axes"))
    nodes += [helper.make_node("Sub", [INPUT, recon], ["error"], name="error"),
              helper.make_node("Mul", ["error", "error"], ["squared"], name="squared"),
              helper.make_node("ReduceMean", ["squared", "axes"], ["score"], keepdims=0, name="mse")]
    score = helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"])
    return _model(nodes, inits, n_inputs, [score], "autoencoder")


def classifier_graph(model: Any, n_inputs: int) -> bytes:
    """An ``MLPClassifier`` as ``rows -> probabilities [N, n_classes]`` in ``model.classes_`` order."""
    from onnx import TensorProto, helper, numpy_helper

    _relu_mlp(model)
    nodes: list[Any] = []
    inits: list[Any] = []
    logits = _dense_layers(nodes, inits, model.coefs_, model.intercepts_)
    n_classes = len(model.classes_)
    if model.out_activation_ == "softmax":
        nodes.append(helper.make_node("Softmax", [logits], ["probabilities"], axis=1, name="softmax"))
    elif model.out_activation_ == "logistic" and n_classes == 2:
        inits.append(numpy_helper.from_array(np.asarray([1.0], np.float32), "one"))
        nodes += [helper.make_node("Sigmoid", [logits], ["p1"], name="sigmoid"),
                  helper.make_node("Sub", ["one", "p1"], ["p0"], name="complement"),
                  helper.make_node("Concat", ["p0", "p1"], ["probabilities"], axis=1, name="both")]
    else:
        raise ValueError(f"an MLP classifier with output {model.out_activation_!r} and {n_classes} classes")
    out = helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", n_classes])
    return _model(nodes, inits, n_inputs, [out], "classifier")


class _Calibration:
    """Feeds calibration rows to onnxruntime's quantizer in one batch (its histogram collectors need equal ones)."""

    def __init__(self, rows: npt.NDArray[np.float32]) -> None:
        self._batches: Iterator[npt.NDArray[np.float32]] = iter([np.ascontiguousarray(rows, np.float32)])

    def get_next(self) -> dict[str, npt.NDArray[np.float32]] | None:
        batch = next(self._batches, None)
        return None if batch is None else {INPUT: batch}

    def rewind(self) -> None:  # part of onnxruntime's CalibrationDataReader interface; one pass is enough here
        return None


def quantize_int8(fp32: bytes, calibration_rows: npt.NDArray[np.float32], percentile: float | None = None) -> bytes:
    """The model with its MatMuls in INT8 QDQ, activation ranges calibrated on these rows.

    Ranges are the calibration rows' minimum and maximum, or with ``percentile`` (e.g. 99.9) that percentile of
    each tensor's absolute values: a few extreme rows then no longer widen every quantization step.
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(_Calibration, CalibrationDataReader):
        pass

    method, extra = CalibrationMethod.MinMax, {}
    if percentile is not None:
        method, extra = CalibrationMethod.Percentile, {"CalibPercentile": percentile}
    with tempfile.TemporaryDirectory(prefix="twinedge-quantize-") as tmp, _quiet():
        source, target = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        source.write_bytes(fp32)
        quantize_static(str(source), str(target), Reader(calibration_rows), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        op_types_to_quantize=["MatMul", "Gemm"], per_channel=False, calibrate_method=method,
                        extra_options=extra)
        return target.read_bytes()


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The quantizer prints its histogram steps on stdout and advice on the root logger: neither is for our user."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logging.disable(previous)
