"""The model card's parts that training computes: per-input statistics (the drift reference), test vectors, and the
readable summary ``card.md``.

Statistics are of the unscaled training rows. ``edges`` are the distinct training deciles of a column (at most 9
interior cut points; fewer where values repeat, as with a column that is mostly one value), and ``expected`` the
share of training rows in each bin, a value ``x`` falling in bin ``i`` where ``edges[i-1] <= x < edges[i]``: the rule
the edge counts its scored rows by.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from shared.modelpackage import FeatureStats, ModelCard, TestVectors
from shared.modelschema import ModelSchema

__all__ = ["card_markdown", "feature_stats", "test_vectors"]

DECILES = np.linspace(0.1, 0.9, 9)


def feature_stats(names: list[str], rows: npt.NDArray[Any]) -> list[FeatureStats]:
    """One entry per column of the unscaled training ``rows``, in ``names`` order."""
    data = np.asarray(rows, dtype=np.float64)
    out = []
    for j, name in enumerate(names):
        column = data[:, j]
        edges = np.unique(np.quantile(column, DECILES).astype(np.float32).astype(np.float64))
        counts = np.bincount(np.searchsorted(edges, column, side="right"), minlength=len(edges) + 1)
        out.append(FeatureStats(name=name, mean=float(column.mean()), std=float(column.std()),
                                min=float(column.min()), max=float(column.max()), edges=edges.tolist(),
                                expected=(counts / counts.sum()).tolist()))
    return out


def test_vectors(rows: npt.NDArray[np.float32], outputs: npt.NDArray[np.float32]) -> TestVectors:
    """The first (at most) 16 rows and the served model's outputs for them.

    The tolerance allows for another CPU's INT8 arithmetic (a step of quantization) but not for another model:
    1 % of the largest output, and at least 1e-4.
    """
    take = min(16, len(rows))
    out = np.asarray(outputs[:take], dtype=np.float64).reshape(take, -1)
    atol = max(1e-4, 0.01 * float(np.max(np.abs(out))))
    return TestVectors(inputs=np.asarray(rows[:take], np.float64).tolist(), outputs=out.tolist(), atol=atol)


def _figure(value: float | None, key: str) -> str:
    if value is None:
        return "-"
    if key.endswith("_per_s"):
        return f"{value:,.0f}"
    if key.endswith("_ms"):
        return f"{value:.3f}"
    return f"{value:.4f}"


METRIC_ORDER = ("roc_auc", "f1", "precision", "recall", "accuracy", "macro_f1", "latency_p95_ms",
                "batch64_rows_per_s")


def card_markdown(card: ModelCard, schema: ModelSchema) -> str:
    """The card as a page a person reads: what the model is, its data, and FP32 against INT8."""
    created = datetime.fromtimestamp(card.created_at, UTC).isoformat(timespec="seconds")
    src = card.source
    where = (f"device `{src.device_id}`" + (f" of edge `{src.edge_id}`" if src.edge_id else "")
             if src.kind == "history" else f"file `{src.path}` (sha256 `{src.file_sha256}`)")
    span = ""
    if src.start is not None and src.end is not None:
        span = (f", {datetime.fromtimestamp(src.start, UTC).isoformat(timespec='seconds')} to "
                f"{datetime.fromtimestamp(src.end, UTC).isoformat(timespec='seconds')}")
    sensors = ", ".join(f"{s.name}" + (f" [{s.unit}]" if s.unit else "") for s in schema.sensors)
    if schema.window is not None:
        mode = (f"windows of {schema.window.length} frames every {schema.window.step} frames, "
                f"{schema.window.interval_s:g} s apart; features {', '.join(schema.features)}")
    else:
        mode = "one frame per row"
    lines = [f"# Model `{card.name}` ({card.kind})", "", *([card.description, ""] if card.description else []),
             f"- Created: {created}",
             f"- Data: {where}{span}; {src.rows:,} rows" + (f", labels from `{src.label_column}`"
                                                           if src.label_column else ""),
             f"- Sensors: {sensors}", f"- Input: {mode}; {schema.n_inputs} inputs",
             f"- Training: {card.training.algorithm}; {card.training.rows_train:,} rows trained, "
             f"{card.training.rows_eval:,} evaluated, {card.training.seconds:.1f} s"]
    if schema.threshold is not None:
        lines.append(f"- Threshold: a score of {schema.threshold:.6g} or more is anomalous")
    if schema.labels:
        lines.append(f"- Labels: {', '.join(schema.labels)}")
    lines += ["", "## FP32 and INT8", "", "| metric | FP32 | INT8 |" + (" baseline |" if card.baseline else ""),
              "|---|---|---|" + ("---|" if card.baseline else "")]
    base = dict((card.baseline or {}).get("metrics", {}))
    keys = [k for k in METRIC_ORDER if k in card.metrics.get("fp32", {}) or k in card.metrics.get("int8", {})]
    for key in keys:
        row = f"| {key} | {_figure(card.metrics.get('fp32', {}).get(key), key)} | " \
              f"{_figure(card.metrics.get('int8', {}).get(key), key)} |"
        lines.append(row + (f" {_figure(base.get(key), key)} |" if card.baseline else ""))
    if card.size_bytes:
        fp32, int8 = card.size_bytes.get("fp32", 0), card.size_bytes.get("int8", 0)
        smaller = f" ({100 * (1 - int8 / fp32):.0f} % smaller)" if fp32 else ""
        lines.append(f"| file bytes | {fp32:,} | {int8:,}{smaller} |" + (" |" if card.baseline else ""))
    if card.baseline:
        lines += ["", f"Baseline: {card.baseline.get('name')} on the same split."]
    lines += ["", "The served model is the INT8 one. Per-input training statistics (the drift reference) and test "
              "vectors are in card.json.", ""]
    return "\n".join(lines)
