"""Training packages from small synthetic data: they read back, pass their own test vectors under
``shared.modelrun``, carry the card's statistics, and their INT8 model agrees with the FP32 one."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cloud.ml import evaluate
from cloud.ml.data import load_file, load_history
from cloud.ml.progress import Progress
from cloud.ml.train import TrainSpec, train
from cloud.storage.sqlite import SQLiteStorage
from shared.frame import TelemetryFrame
from shared.modelpackage import read_package
from shared.modelrun import ModelRunner, run_test_vectors
from shared.modelschema import model_inputs
from tests.cloud.ml.training_data import machine_rows

QUIET = Progress(quiet=True)


def _spec(**kw: object) -> TrainSpec:
    return TrainSpec(**{"name": "m1", "max_epochs": 15, "hidden": (16, 8, 16), **kw})  # type: ignore[arg-type]


def test_an_anomaly_package_reads_back_and_passes_its_test_vectors(machine_csv: Path) -> None:
    table = load_file(machine_csv, "csv", label_column="anomaly", progress=QUIET)
    result = train(table, _spec(kind="anomaly"), QUIET)
    package = read_package(result.package)
    assert package.schema.sensor_names == ["temp", "vib"]
    assert [s.unit for s in package.schema.sensors] == ["degC", "mm/s"]  # units from the header
    assert package.schema.threshold is not None and package.schema.labels is None
    runner = ModelRunner(package)
    run_test_vectors(runner)  # the edge's own check passes
    # the card says where the data came from, exactly
    assert package.card.source.kind == "file" and package.card.source.rows == 600
    assert package.card.source.file_sha256 == hashlib.sha256(machine_csv.read_bytes()).hexdigest()
    assert package.card.source.label_column == "anomaly"
    # the faults score above the threshold, the normal rows mostly below
    data = machine_rows()
    rows = package.schema.scaling.apply(np.column_stack([data["temp"], data["vib"]]))
    scores = runner.score(rows).scores
    assert scores is not None
    assert (scores[-60:] >= package.schema.threshold).mean() > 0.9
    assert (scores[:-60] >= package.schema.threshold).mean() < 0.1
    assert {"fp32", "int8"} <= set(package.card.metrics) and package.card.metrics["int8"]["roc_auc"] > 0.95
    assert set(package.card.size_bytes) == {"fp32", "int8"}  # layers this narrow gain nothing: bench_ml measures
    assert "| roc_auc |" in package.card_md and "| file bytes |" in package.card_md


def test_the_card_holds_deciles_of_every_input_before_scaling(machine_csv: Path) -> None:
    table = load_file(machine_csv, "csv", label_column="anomaly", progress=QUIET)
    card = read_package(train(table, _spec(kind="anomaly"), QUIET).package).card
    assert [s.name for s in card.feature_stats] == ["temp", "vib"]
    normal = machine_rows()["temp"][:-60]
    temp = card.feature_stats[0]
    assert 49 < temp.mean < 51 and temp.min >= normal.min() - 1e-3 and temp.max <= normal.max() + 1e-3
    assert len(temp.edges) == 9 and temp.edges == sorted(temp.edges)
    assert len(temp.expected) == 10 and sum(temp.expected) == pytest.approx(1.0)
    assert all(0.08 < share < 0.12 for share in temp.expected)  # deciles: a tenth of the training rows each
    assert len(card.test_vectors.inputs) == 16


def _blobs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0, 0.0], [6.0, 0.0, 3.0], [0.0, 6.0, -3.0]])
    labels = rng.integers(0, 3, n)
    return centres[labels] + rng.normal(0, 0.5, (n, 3)), labels


def test_int8_classes_agree_with_fp32_on_separable_data(tmp_path: Path) -> None:
    values, labels = _blobs(600, 1)
    path = tmp_path / "states.parquet"
    pq.write_table(pa.table({"a": values[:, 0], "b": values[:, 1], "c": values[:, 2],
                             "state": np.asarray(["idle", "run", "purge"])[labels]}), path)
    table = load_file(path, "parquet", label_column="state", progress=QUIET)
    result = train(table, _spec(kind="classifier", hidden=(32, 16)), QUIET)
    assert result.schema.labels == ["idle", "purge", "run"]  # ordered as text
    test, test_labels = _blobs(300, 2)
    rows = result.schema.scaling.apply(test)
    fp32 = evaluate.run(evaluate.session(result.fp32), rows).argmax(axis=1)
    int8 = evaluate.run(evaluate.session(result.int8), rows).argmax(axis=1)
    assert (fp32 == int8).all()
    names = np.asarray(result.schema.labels)[int8]
    assert (names == np.asarray(["idle", "run", "purge"])[test_labels]).mean() > 0.98
    assert result.card.metrics["int8"]["accuracy"] > 0.98 and result.card.baseline is not None
    run_test_vectors(ModelRunner(read_package(result.package)))


def test_int8_anomaly_scores_rank_rows_as_fp32_does(machine_csv: Path) -> None:
    table = load_file(machine_csv, "csv", label_column="anomaly", progress=QUIET)
    result = train(table, _spec(kind="anomaly"), QUIET)
    rows = result.schema.scaling.apply(table.values)
    fp32 = evaluate.run(evaluate.session(result.fp32), rows)
    int8 = evaluate.run(evaluate.session(result.int8), rows)
    normal_top = max(fp32[:-60].max(), int8[:-60].max())
    assert fp32[-60:].min() > np.quantile(fp32[:-60], 0.99) and int8[-60:].min() > np.quantile(int8[:-60], 0.99)
    assert normal_top < min(fp32[-60:].min(), int8[-60:].min()) * 10  # both orders of magnitude alike
    assert abs(result.card.metrics["fp32"]["roc_auc"] - result.card.metrics["int8"]["roc_auc"]) < 0.01


def test_a_window_model_from_a_devices_history(tmp_path: Path) -> None:
    data = machine_rows(800)
    frames = [TelemetryFrame(ts=float(data["ts"][i]), device_id="press-1",
                             sensors={"temp": float(data["temp"][i]), "vib": float(data["vib"][i]), "mode": "auto"})
              for i in range(800)]
    frames = frames[:300] + frames[320:]  # the device was offline for 20 s: no window spans the gap

    async def run() -> object:
        store = SQLiteStorage(tmp_path / "cloud.db", readers=1)
        await store.open()
        try:
            await store.ingest("edge-a", list(enumerate(frames, 1)), None, 1)
            return await load_history(store, "press-1", data["ts"][0], data["ts"][-1], progress=QUIET)
        finally:
            await store.close()

    table = asyncio.run(run())
    assert [s.name for s in table.sensors] == ["temp", "vib"]  # the numeric sensors; text left out
    result = train(table, _spec(kind="anomaly", mode="window", window=16, step=4,
                                features=("mean", "std", "log:rms", "relband:0-0.25")), QUIET)
    package = read_package(result.package)
    assert package.schema.window is not None and package.schema.window.interval_s == pytest.approx(1.0)
    assert package.card.source.kind == "history" and package.card.source.device_id == "press-1"
    assert package.card.source.edge_id == "edge-a" and package.card.source.rows == 780
    assert [s.name for s in package.card.feature_stats] == package.schema.input_names
    # (300 - 16) // 4 + 1 windows before the gap, (480 - 16) // 4 + 1 after it
    assert result.card.training.rows_train + result.card.training.rows_eval == 72 + 117
    runner = ModelRunner(package)
    run_test_vectors(runner)
    scores = runner.score(model_inputs(package.schema, frames[:100])).scores
    assert scores is not None and len(scores) == (100 - 16) // 4 + 1
