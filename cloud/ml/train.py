"""Training a model package from a ``Table``: input rows, split, fit, ONNX, INT8, evaluation, card, package.

The split is random but keeps neighbours together: rows are dealt out in blocks (one row in frame mode; in window
mode as many windows as overlap one another), so an evaluation window never shares readings with a training one.
``eval_fraction`` of the rows (anomaly: of the normal rows) is held out.

Anomaly models learn from normal rows only. A label column, when given, says which rows are anomalous: 0,
``false``, ``normal`` or ``ok`` is normal, any other value anomalous; the anomalous rows are only evaluated on.
The threshold belongs to the served (INT8) model's scores:

- with labelled anomalies, the held-out rows are halved: the threshold with the best F1 on one half, the metrics
  on the other;
- without, the ``threshold_quantile`` of the training rows' scores (by default 0.99: about one normal row in a
  hundred is flagged), and the metrics say what share of held-out normal rows it flags (``false_alarm_rate``).

Classifiers need a label column with at least two classes; labels are ordered as text.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from cloud.ml import card as cards
from cloud.ml import evaluate, export, fit
from cloud.ml.data import MIN_ROWS, Table, input_rows
from cloud.ml.progress import Progress
from shared.errors import InputError
from shared.modelpackage import ModelCard, TrainingInfo, build_package, read_package
from shared.modelrun import ModelRunner, run_test_vectors
from shared.modelschema import ModelSchema, Scaling, load_schema

__all__ = ["CALIBRATION_PERCENTILE", "NORMAL_LABELS", "TrainResult", "TrainSpec", "block_split", "fit_params",
           "scaling_of", "train"]

NORMAL_LABELS = frozenset({"0", "false", "normal", "ok"})
DEFAULT_HIDDEN = {"anomaly": (128, 64, 128), "classifier": (256, 256)}
CALIBRATION_ROWS = 2000
# Activation ranges from the 99.9th percentile of the calibration rows, not their extremes: a few extreme rows no
# longer coarsen every step. Measured (bench/bench_ml.py): Shuttle's INT8 ROC-AUC 0.9942 with min-max, 0.9996 with
# it (an extreme row is reconstructed worse, which only raises its score); PLAID's INT8 accuracy 0.3-1.5 points
# closer to FP32.
CALIBRATION_PERCENTILE = 99.9


@dataclass(frozen=True)
class TrainSpec:
    kind: Literal["anomaly", "classifier"]
    name: str
    mode: Literal["frame", "window"] = "frame"
    window: int | None = None
    step: int | None = None
    interval_s: float | None = None
    features: tuple[str, ...] = ()
    threshold_quantile: float = 0.99
    eval_fraction: float = 0.3
    hidden: tuple[int, ...] | None = None
    max_epochs: int = 200
    budget_s: float = 600.0
    seed: int = 0
    description: str = ""


@dataclass
class TrainResult:
    package: bytes
    card: ModelCard
    schema: ModelSchema
    fp32: bytes
    int8: bytes
    card_md: str
    notes: list[str] = field(default_factory=list)


def scaling_of(rows: npt.NDArray[Any]) -> Scaling:
    """Per column ``(x - mean) / std`` of these rows; a constant column keeps scale 1."""
    data = np.asarray(rows, np.float64)
    std = data.std(axis=0)
    return Scaling(mean=data.mean(axis=0).tolist(), scale=np.where(std > 1e-12, std, 1.0).tolist())


def block_split(n: int, fraction: float, block: int, seed: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Row indices ``(train, held_out)``: blocks of ``block`` neighbouring rows dealt at random, ``fraction`` held."""
    blocks = np.arange(n) // max(1, block)
    count = int(blocks[-1]) + 1 if n else 0
    chosen = np.random.default_rng(seed).permutation(count)[:max(1, round(count * fraction))]
    held = np.isin(blocks, chosen)
    return np.flatnonzero(~held), np.flatnonzero(held)


def _schema(table: Table, spec: TrainSpec, scaling: Scaling, threshold: float | None,
            labels: list[str] | None) -> ModelSchema:
    data: dict[str, Any] = {"kind": spec.kind, "mode": spec.mode, "scaling": scaling.model_dump(),
                            "sensors": [s.model_dump() for s in table.sensors], "threshold": threshold,
                            "labels": labels}
    if spec.mode == "window":
        data["window"] = {"length": spec.window, "step": spec.step, "interval_s": spec.interval_s}
        data["features"] = list(spec.features)
    return load_schema(data)


def _interval(table: Table, spec: TrainSpec) -> TrainSpec:
    if spec.mode == "frame" or spec.interval_s is not None:
        return spec
    if table.ts is None or len(table.ts) < 2:
        raise InputError("window mode needs --interval (seconds between readings): the data has no times")
    gaps = np.diff(table.ts)
    gaps = gaps[gaps > 0]
    if not gaps.size:
        raise InputError("the data's times do not rise; give --interval")
    from dataclasses import replace

    return replace(spec, interval_s=float(np.median(gaps)))


def _skeleton(table: Table, spec: TrainSpec) -> ModelSchema:
    """The schema without what training decides (scaling, threshold, labels): how the rows are made."""
    n = len(table.sensors) * (len(spec.features) if spec.mode == "window" else 1)
    identity = Scaling(mean=[0.0] * n, scale=[1.0] * n)
    if spec.kind == "anomaly":
        return _schema(table, spec, identity, 0.0, None)
    return _schema(table, spec, identity, None, ["a", "b"])


def _check_rows(count: int, what: str) -> None:
    if count < MIN_ROWS:
        raise InputError(f"too few rows to train on: {count:,} {what}; at least {MIN_ROWS}")


def train(table: Table, spec: TrainSpec, progress: Progress | None = None) -> TrainResult:
    """Train, quantize, evaluate and package; ``InputError`` for data a model cannot be trained on."""
    progress = progress or Progress()
    started = time.monotonic()
    spec = _interval(table, spec)
    skeleton = _skeleton(table, spec)
    rows, labels = input_rows(skeleton, table, progress)
    _check_rows(len(rows), "input rows" if spec.mode == "frame" else "windows")
    if spec.kind == "classifier" and labels is None:
        raise InputError("a classifier needs a label column (--label-column)")
    block = 1 if skeleton.window is None else math.ceil(skeleton.window.length / skeleton.window.step)
    trainer = _train_anomaly if spec.kind == "anomaly" else _train_classifier
    return trainer(table, spec, rows, labels, block, progress, started)


def _variants(kind: Literal["anomaly", "classifier"], model: Any, n_inputs: int, calibration: npt.NDArray[np.float32],
              progress: Progress) -> tuple[bytes, bytes]:
    fp32 = (export.anomaly_graph if kind == "anomaly" else export.classifier_graph)(model, n_inputs)
    progress.say(f"quantizing to INT8, calibrated on {len(calibration):,} training rows")
    return fp32, export.quantize_int8(fp32, calibration, CALIBRATION_PERCENTILE)


def _calibration(rows: npt.NDArray[np.float32], seed: int) -> npt.NDArray[np.float32]:
    take = np.random.default_rng(seed).permutation(len(rows))[:CALIBRATION_ROWS]
    return rows[np.sort(take)]


def fit_params(spec: TrainSpec) -> fit.FitParams:
    """The MLP's training parameters for this spec (the defaults ``twincloud model train`` uses)."""
    hidden = spec.hidden or DEFAULT_HIDDEN[spec.kind]
    if spec.kind == "classifier":
        return fit.FitParams(hidden=hidden, alpha=1e-3, learning_rate=1e-3, max_epochs=spec.max_epochs,
                             patience=20, tol=1e-5, budget_s=spec.budget_s, seed=spec.seed)
    return fit.FitParams(hidden=hidden, max_epochs=spec.max_epochs, budget_s=spec.budget_s, seed=spec.seed)


def _train_anomaly(table: Table, spec: TrainSpec, rows: npt.NDArray[np.float32], labels: npt.NDArray[np.str_] | None,
                   block: int, progress: Progress, started: float) -> TrainResult:
    anomalous = (np.zeros(len(rows), bool) if labels is None
                 else np.asarray([str(v).strip().lower() not in NORMAL_LABELS for v in labels]))
    normal = np.flatnonzero(~anomalous)
    _check_rows(len(normal), "normal rows")
    train_at, held_at = block_split(len(normal), spec.eval_fraction, block, spec.seed)
    train_idx, held = normal[train_at], np.concatenate([normal[held_at], np.flatnonzero(anomalous)])
    scaling = scaling_of(rows[train_idx])
    scaled = scaling.apply(rows)
    x_train, x_held, y_held = scaled[train_idx], scaled[held], anomalous[held]
    # with labelled anomalies: tune the threshold on one half of the held-out rows, report on the other
    tune = np.random.default_rng(spec.seed + 1).random(len(held)) < 0.5 if y_held.any() else np.zeros(len(held), bool)
    params = fit_params(spec)
    model = fit.fit_autoencoder(x_train, params, progress)
    fp32, int8 = _variants("anomaly", model, scaled.shape[1], _calibration(x_train, spec.seed), progress)

    def judge(train_scores: npt.NDArray[Any], held_scores: npt.NDArray[Any]) -> tuple[float, dict[str, float]]:
        if tune.any() and y_held[tune].any():
            threshold = fit.best_f1_threshold(held_scores[tune], y_held[tune])
        else:
            threshold = fit.quantile_threshold(train_scores, spec.threshold_quantile)
        report = ~tune
        out = evaluate.anomaly_metrics(held_scores[report], y_held[report], threshold)
        normal_report = report & ~y_held
        if normal_report.any():
            out["false_alarm_rate"] = float(np.mean(held_scores[normal_report] >= threshold))
        return threshold, out

    progress.say(f"evaluating FP32 and INT8 on {len(held):,} held-out rows ({int(y_held.sum()):,} anomalous)")
    metrics, thresholds = {}, {}
    for variant, blob in (("fp32", fp32), ("int8", int8)):
        sess = evaluate.session(blob)
        thresholds[variant], metrics[variant] = judge(evaluate.run(sess, x_train), evaluate.run(sess, x_held))
        metrics[variant].update(evaluate.speed(sess, x_held))
    progress.say("baseline: an IsolationForest on the same split")
    forest = fit.isolation_forest(x_train, spec.seed)
    _, base = judge(-forest.score_samples(x_train), -forest.score_samples(x_held))
    schema = _schema(table, spec, scaling, thresholds["int8"], None)
    return _finish(table, spec, schema, rows[train_idx], x_held, fp32, int8, metrics,
                   {"name": "IsolationForest(n_estimators=200)", "metrics": base},
                   f"autoencoder MLP {list(params.hidden)}, reconstruction MSE", params, len(train_idx), len(held),
                   progress, started)


def _train_classifier(table: Table, spec: TrainSpec, rows: npt.NDArray[np.float32],
                      labels: npt.NDArray[np.str_] | None, block: int, progress: Progress,
                      started: float) -> TrainResult:
    assert labels is not None
    names, index = np.unique(labels, return_inverse=True)
    if len(names) < 2:
        raise InputError(f"the label column holds one class only ({str(names[0])!r}); a classifier needs at least two")
    counts = np.bincount(index)
    rare = [str(n) for n, c in zip(names, counts, strict=True) if c < 2]
    if rare:
        raise InputError(f"labels with a single row: {', '.join(rare[:10])}; each class needs at least two rows")
    train_idx, held = block_split(len(rows), spec.eval_fraction, block, spec.seed)
    missing = sorted(set(range(len(names))) - set(index[train_idx].tolist()))
    if missing:
        raise InputError(f"no training rows of {', '.join(str(names[i]) for i in missing)} after the split; "
                         "give more data of each class")
    scaling = scaling_of(rows[train_idx])
    scaled = scaling.apply(rows)
    x_train, x_held, y_held = scaled[train_idx], scaled[held], index[held]
    params = fit_params(spec)
    model = fit.fit_classifier(x_train, index[train_idx], len(names), params, progress)
    fp32, int8 = _variants("classifier", model, scaled.shape[1], _calibration(x_train, spec.seed), progress)
    progress.say(f"evaluating FP32 and INT8 on {len(held):,} held-out rows")
    metrics = {}
    for variant, blob in (("fp32", fp32), ("int8", int8)):
        sess = evaluate.session(blob)
        metrics[variant] = evaluate.classifier_metrics(evaluate.run(sess, x_held), y_held)
        metrics[variant].update(evaluate.speed(sess, x_held))
    progress.say("baseline: a RandomForest on the same split")
    forest = fit.random_forest(x_train, index[train_idx], spec.seed)
    proba = np.zeros((len(held), len(names)))
    proba[:, forest.classes_] = forest.predict_proba(x_held)
    base = evaluate.classifier_metrics(proba, y_held)
    schema = _schema(table, spec, scaling, None, [str(n) for n in names])
    return _finish(table, spec, schema, rows[train_idx], x_held, fp32, int8, metrics,
                   {"name": "RandomForest(n_estimators=300)", "metrics": base},
                   f"MLP classifier {list(params.hidden)}, softmax", params, len(train_idx), len(held),
                   progress, started)


def _finish(table: Table, spec: TrainSpec, schema: ModelSchema, train_rows: npt.NDArray[np.float32],
            x_held: npt.NDArray[np.float32], fp32: bytes, int8: bytes, metrics: dict[str, dict[str, float]],
            baseline: dict[str, Any], algorithm: str, params: fit.FitParams, n_train: int, n_held: int,
            progress: Progress, started: float) -> TrainResult:
    vectors_in = x_held[np.random.default_rng(spec.seed + 2).permutation(len(x_held))[:16]]
    vectors = cards.test_vectors(vectors_in, evaluate.run(evaluate.session(int8), vectors_in))
    training = TrainingInfo(algorithm=algorithm, params={**params.as_card(), "eval_fraction": spec.eval_fraction,
                                                         **({"threshold_quantile": spec.threshold_quantile}
                                                            if spec.kind == "anomaly" else {})},
                            rows_train=n_train, rows_eval=n_held, seconds=round(time.monotonic() - started, 3))
    card = ModelCard(name=spec.name, kind=spec.kind, created_at=round(time.time(), 3), description=spec.description,
                     source=table.source, training=training, metrics=metrics,
                     size_bytes={"fp32": len(fp32), "int8": len(int8)}, baseline=baseline,
                     feature_stats=cards.feature_stats(schema.input_names, train_rows), test_vectors=vectors)
    card_md = cards.card_markdown(card, schema)
    package = build_package(int8, schema, card, card_md)
    run_test_vectors(ModelRunner(read_package(package)))  # the package serves as the edge will load it
    progress.say(f"packaged {len(package):,} bytes")
    return TrainResult(package=package, card=card, schema=schema, fp32=fp32, int8=int8, card_md=card_md,
                       notes=list(table.notes))
