"""Evaluation of a model's FP32 and INT8 graphs side by side: quality on held-out rows, file size, and speed.

Speed is measured with one onnxruntime thread, as the edge runs: the 95th percentile of the time to score one row
(``latency_p95_ms``, after a warm-up) and the rows per second in batches of 64 (``batch64_rows_per_s``).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["anomaly_metrics", "classifier_metrics", "run", "session", "speed"]


def session(model: bytes, threads: int = 1) -> Any:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])


def run(sess: Any, rows: npt.NDArray[np.float32], batch: int = 4096) -> npt.NDArray[np.float32]:
    """The first output for every row, in batches."""
    name = sess.get_inputs()[0].name
    parts = [sess.run(None, {name: np.ascontiguousarray(rows[i:i + batch], np.float32)})[0]
             for i in range(0, len(rows), batch)]
    return np.concatenate(parts).astype(np.float32)


def anomaly_metrics(scores: npt.NDArray[Any], anomalous: npt.NDArray[np.bool_], threshold: float) -> dict[str, float]:
    """ROC-AUC of the scores, and precision, recall and F1 of ``score >= threshold``."""
    from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score

    flagged = np.asarray(scores) >= threshold
    out = {"f1": float(f1_score(anomalous, flagged, zero_division=0)),
           "precision": float(precision_score(anomalous, flagged, zero_division=0)),
           "recall": float(recall_score(anomalous, flagged, zero_division=0))}
    if 0 < anomalous.sum() < len(anomalous):
        out["roc_auc"] = float(roc_auc_score(anomalous, scores))
    return out


def classifier_metrics(probabilities: npt.NDArray[Any], labels: npt.NDArray[np.int64]) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    predicted = np.asarray(probabilities).argmax(axis=1)
    return {"accuracy": float(accuracy_score(labels, predicted)),
            "macro_f1": float(f1_score(labels, predicted, average="macro", zero_division=0))}


def speed(sess: Any, rows: npt.NDArray[np.float32], single_runs: int = 2000, budget_s: float = 1.0) -> dict[str, float]:
    """``latency_p95_ms`` for one row at a time and ``batch64_rows_per_s``, one thread."""
    name = sess.get_inputs()[0].name
    rows = np.ascontiguousarray(rows, np.float32)
    singles = [rows[i % len(rows)][np.newaxis] for i in range(min(single_runs, 256))]
    for row in singles[:50]:  # warm-up
        sess.run(None, {name: row})
    times = []
    deadline = time.perf_counter() + budget_s
    for i in range(single_runs):
        row = singles[i % len(singles)]
        t0 = time.perf_counter()
        sess.run(None, {name: row})
        times.append(time.perf_counter() - t0)
        if time.perf_counter() > deadline and len(times) >= 200:
            break
    batch = np.ascontiguousarray(np.resize(rows, (64, rows.shape[1])), np.float32)
    sess.run(None, {name: batch})
    count, t0 = 0, time.perf_counter()
    while count < 20 or time.perf_counter() - t0 < budget_s / 2:
        sess.run(None, {name: batch})
        count += 1
    elapsed = time.perf_counter() - t0
    return {"latency_p95_ms": float(np.percentile(times, 95) * 1e3), "batch64_rows_per_s": 64 * count / elapsed}
