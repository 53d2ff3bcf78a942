"""Small synthetic training data for the training tests: quick to train on (a few epochs, narrow layers)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

FAST = ["--epochs", "8", "--hidden", "16,8,16", "--quiet"]


def machine_rows(n: int = 600, seed: int = 0) -> dict[str, np.ndarray]:
    """A machine running normally (temperature with a slow cycle, vibration noise), with a burst of faults."""
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=np.float64)
    temp = 50 + np.sin(t / 40) + rng.normal(0, 0.05, n)
    vib = rng.normal(0, 1, n)
    anomaly = np.zeros(n, dtype=np.int64)
    anomaly[n - 60:] = 1
    temp[n - 60:] += 6.0  # the faults run hot and shake: far from every normal row
    vib[n - 60:] = vib[n - 60:] * 4 + 8
    return {"ts": 1.7e9 + t, "temp": temp, "vib": vib, "anomaly": anomaly}


def write_csv(path: Path, columns: dict[str, object], header: list[str] | None = None) -> Path:
    names = list(columns)
    rows = zip(*(np.asarray(v).tolist() for v in columns.values()), strict=True)
    lines = [",".join(header or names)] + [",".join(str(v) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
