"""``twincloud model train``: a package written and its card printed; bad input gets a reason and exit 2, never a
traceback."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cloud.cli import main
from cloud.storage.sqlite import SQLiteStorage
from shared.frame import TelemetryFrame
from shared.modelpackage import read_package
from tests.cloud.ml.training_data import FAST, write_csv


def _train(*args: str) -> int:
    return main(["model", "train", *FAST, *args])  # args after FAST: theirs win


def test_train_from_a_csv_writes_the_package_and_prints_the_card(machine_csv: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "press.twinmodel"
    assert _train("--csv", str(machine_csv), "--kind", "anomaly", "--name", "press-temp", "--label-column",
                  "anomaly", "--sensors", "temp,vib[mm/s]", "--out", str(out)) == 0
    package = read_package(out.read_bytes())
    assert package.card.name == "press-temp" and package.schema.sensor_names == ["temp", "vib"]
    printed = capsys.readouterr().out
    assert "# Model `press-temp` (anomaly)" in printed and "| roc_auc |" in printed
    assert f"sha256 {package.sha256}" in printed
    assert not list(tmp_path.glob(".press.twinmodel.*"))  # no temporary file left beside it


def test_progress_goes_to_stderr(machine_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["model", "train", "--csv", str(machine_csv), "--kind", "anomaly", "--name", "m", "--out",
                 str(tmp_path / "m.twinmodel"), "--epochs", "3", "--hidden", "8"]) == 0
    err = capsys.readouterr().err
    for step in ("train: loading", "train: fitting: 3/3 (100 %)", "train: quantizing", "train: evaluating"):
        assert step in err


def test_train_a_window_classifier_from_a_devices_history(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "cloud.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "c.db"}"\n', encoding="utf-8")
    rng = np.random.default_rng(3)
    state = ["b" if (i // 100) % 2 else "a" for i in range(1200)]  # two operating states, 100 s each in turn
    frames = [TelemetryFrame(ts=1.7e9 + i, device_id="fan-2", sensors={
        "current": float(np.sin(i * (0.3 if state[i] == "b" else 1.3)) + rng.normal(0, 0.05)), "state": state[i]})
        for i in range(1200)]

    async def store() -> None:
        db = SQLiteStorage(tmp_path / "c.db", readers=1)
        await db.open()
        try:
            await db.ingest("edge-9", list(enumerate(frames, 1)), None, 1)
        finally:
            await db.close()

    asyncio.run(store())
    out = tmp_path / "fan.twinmodel"
    assert main(["--config", str(config), "model", "train", "--device", "fan-2", "--from", "2023-11-14T22:13:20Z",
                 "--to", str(1.7e9 + 2000), "--kind", "classifier", "--label-column", "state", "--sensors",
                 "current[A]", "--mode", "window", "--window", "20", "--step", "10",
                 "--features", "std,band:0-0.3,band:0.3-1", "--name", "fan-state", "--out", str(out),
                 "--epochs", "200", "--hidden", "16", "--quiet"]) == 0
    package = read_package(out.read_bytes())
    assert package.schema.labels == ["a", "b"] and package.schema.sensors[0].unit == "A"
    assert package.card.source.device_id == "fan-2" and package.card.source.edge_id == "edge-9"
    assert package.card.metrics["int8"]["accuracy"] > 0.8
    assert "| accuracy |" in capsys.readouterr().out


def _parquet(path: Path, **columns: object) -> Path:
    pq.write_table(pa.table(columns), path)
    return path


def _csv(path: Path, **columns: object) -> Path:
    return write_csv(path, dict(columns))


def _bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


NUMBERS = np.arange(50.0)
BAD_INPUT = [
    (lambda d: _csv(d / "a.csv", temp=[1.0, 2.0]), "csv", ["--sensors", "temp,pressure"],
     "no sensor column 'pressure'; the columns are temp"),
    (lambda d: _csv(d / "a.csv", temp=NUMBERS, note=["ok"] * 49 + ["x"]), "csv", ["--sensors", "temp,note"],
     "column 'note' is not numeric (string, e.g. 'ok')"),
    (lambda d: _csv(d / "a.csv", temp=np.arange(5.0)), "csv", [], "too few rows to train on: 5 input rows"),
    (lambda d: _csv(d / "a.csv", temp=NUMBERS, state=["run"] * 50), "csv",
     ["--kind", "classifier", "--label-column", "state"], "holds one class only ('run')"),
    (lambda d: _csv(d / "a.csv", temp=NUMBERS), "csv", ["--label-column", "state"], "no label column 'state'"),
    (lambda d: _bytes(d / "a.csv", b""), "csv", [], "the file is empty"),
    (lambda d: _bytes(d / "a.csv", b"temp,vib\n"), "csv", [], "a.csv: no data rows (columns temp, vib)"),
    (lambda d: _csv(d / "a.csv", temp=NUMBERS), "csv", ["--features", "mean"], "need --mode window"),
    (lambda d: _bytes(d / "a.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\xff\xfe" * 20), "csv", [],
     "not readable as CSV"),
    (lambda d: _csv(d / "a.parquet", temp=[1.0, 2.0]), "parquet", [], "not readable as a Parquet file"),
    (lambda d: d / "missing.csv", "csv", [], "no such file"),
    (lambda d: _parquet(d / "a.parquet", temp=pa.array([1.0, None] * 30)), "parquet", [],
     "column 'temp': row 2 has no value"),
    (lambda d: _csv(d / "a.csv", temp=NUMBERS), "csv", ["--mode", "window"], "needs --window N"),
    (lambda d: _csv(d / "a.csv", temp=NUMBERS), "csv",
     ["--mode", "window", "--window", "8", "--interval", "1", "--features", "mean,variance"],
     "unknown feature 'variance'"),
    (lambda d: _csv(d / "a.csv", temp=NUMBERS), "csv", ["--mode", "window", "--window", "8"],
     "window mode needs --interval"),
    (lambda d: _csv(d / "a.csv", temp=NUMBERS), "csv", ["--name", "bad name!"], "name"),
    (lambda d: _csv(d / "a.csv", temp=NUMBERS), "csv", ["--sensors", "temp[" + "u" * 40 + "]"], "temp"),
    (lambda d: _csv(d / "a.csv", temp=NUMBERS), "csv", ["--hidden", "12,x"], "--hidden '12,x'"),
]


@pytest.mark.parametrize(("make", "fmt", "args", "message"), BAD_INPUT)
def test_bad_input_is_a_reason_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], make: Any,
                                          fmt: str, args: list[str], message: str) -> None:
    out = tmp_path / "m.twinmodel"
    defaults = [flag for flag, value in (("--kind", "anomaly"), ("--name", "m1")) if flag not in args
                for flag in (flag, value)]
    assert _train(f"--{fmt}", str(make(tmp_path)), "--out", str(out), *defaults, *args) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
    assert not out.exists()


def test_a_device_with_no_history_in_the_range(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "cloud.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "c.db"}"\n', encoding="utf-8")
    out = str(tmp_path / "m.twinmodel")
    assert main(["--config", str(config), "model", "train", "--device", "ghost", "--from", "2026-01-01T00:00:00Z",
                 "--to", "2026-01-02T00:00:00Z", "--kind", "anomaly", "--name", "m", "--out", out]) == 2
    assert "device 'ghost' has no stored frames" in capsys.readouterr().err
    assert _train("--device", "ghost", "--from", "yesterday", "--to", "2026-01-02", "--kind", "anomaly",
                  "--name", "m", "--out", out) == 2
    assert "--from 'yesterday': not an ISO 8601 time" in capsys.readouterr().err


def test_an_output_folder_that_does_not_exist(machine_csv: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert _train("--csv", str(machine_csv), "--kind", "anomaly", "--name", "m", "--out",
                  str(tmp_path / "nowhere" / "m.twinmodel")) == 2
    assert "does not exist" in capsys.readouterr().err


def test_the_service_and_the_cli_parser_load_no_training_library() -> None:
    code = ("import sys, cloud.app, cloud.cli; cloud.cli._parser(); "
            "print(','.join(sorted({m.split('.')[0] for m in sys.modules} & {'sklearn', 'skl2onnx', 'onnx', "
            "'onnxruntime', 'pyarrow'})) + '|' + str('cloud.ml.train' in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[3])
    assert out.stdout.strip() == "|False"
