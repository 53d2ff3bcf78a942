"""A machine's readings as a CSV file with units in its header, for the training tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cloud.ml.training_data import machine_rows, write_csv


@pytest.fixture
def machine_csv(tmp_path: Path) -> Path:
    return write_csv(tmp_path / "machine.csv", machine_rows(), ["ts", "temp[degC]", "vib[mm/s]", "anomaly"])
