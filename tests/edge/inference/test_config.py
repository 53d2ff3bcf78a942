"""The [inference] section: defaults, and every bad value refused with its key path and what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.config import load_gateway_config
from shared.configbase import ConfigFileError


def load(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "edge.toml"
    path.write_text(f'[edge]\nid = "edge-1"\nstate_dir = "{tmp_path}"\n{text}')
    return load_gateway_config(path)


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigFileError) as caught:
        load(tmp_path, text)
    return caught.value.lines


def test_defaults(tmp_path: Path) -> None:
    config = load(tmp_path, "")
    inference = config.inference
    assert (inference.threads, inference.failures_before_disable, inference.poll_interval) == (1, 3, 60.0)
    assert (inference.alerts.min_duration, inference.alerts.clear_ratio, inference.alerts.clear_duration) == (
        0.0, 0.8, 0.0)
    assert (inference.drift.window_rows, inference.drift.min_rows) == (1000, 200)
    assert config.models_dir == tmp_path / "models" and inference.local == []


def test_a_full_section(tmp_path: Path) -> None:
    config = load(tmp_path, '[inference]\nthreads = 2\nfailures_before_disable = 5\npoll_interval = "5m"\n'
                            'models_dir = "/srv/models"\n'
                            '[inference.alerts]\nmin_duration = "10s"\nclear_ratio = 0.5\nclear_duration = "1m"\n'
                            '[inference.drift]\nwindow_rows = 500\nmin_rows = 100\n'
                            '[[inference.local]]\ndevice = "press-1"\npackage = "/srv/press.twinmodel"\n'
                            '[[inference.local]]\nedge = true\npackage = "/srv/all.twinmodel"\nversion = 7\n')
    inference = config.inference
    assert (inference.threads, inference.poll_interval, inference.alerts.min_duration) == (2, 300.0, 10.0)
    assert config.models_dir == Path("/srv/models")
    assert [(r.device, r.edge, r.version) for r in inference.local] == [("press-1", False, 1), (None, True, 7)]


@pytest.mark.parametrize(("text", "expected"), [
    ("[inference]\nthreads = 0\n", "inference.threads: Input should be greater than or equal to 1 (got 0)"),
    ("[inference]\nthread = 2\n", "inference.thread: unknown key; did you mean 'threads'?"),
    ("[inference]\nfailures_before_disable = -1\n", "inference.failures_before_disable:"),
    ("[inference]\npoll_interval = 60\n", "inference.poll_interval: give the unit, e.g. '60s' or '60ms' (got 60)"),
    ("[inference.alerts]\nmin_duration = 5\n", "inference.alerts.min_duration: give the unit"),
    ("[inference.alerts]\nclear_ratio = 1.5\n", "inference.alerts.clear_ratio: Input should be less than or equal "
                                                 "to 1 (got 1.5)"),
    ("[inference.alerts]\nclear_ratio = 0\n", "inference.alerts.clear_ratio: Input should be greater than 0"),
    ("[inference.drift]\nwindow_rows = 100\nmin_rows = 200\n", "min_rows (200) must be at most window_rows (100)"),
    ('[[inference.local]]\npackage = "/p"\n', 'set exactly one of device = "..." or edge = true'),
    ('[[inference.local]]\npackage = "/p"\ndevice = "d1"\nedge = true\n', "set exactly one of device"),
    ('[[inference.local]]\npackage = "/p"\ndevice = "bad id!"\n', "inference.local[0].device:"),
    ('[[inference.local]]\ndevice = "d1"\n', "inference.local[0].package: required key is missing"),
    ('[[inference.local]]\ndevice = "d1"\npackage = "/a"\n[[inference.local]]\ndevice = "d1"\npackage = "/b"\n',
     "two local models for device 'd1'; a target takes one model"),
])
def test_bad_values_are_refused_with_the_key_path(tmp_path: Path, text: str, expected: str) -> None:
    lines = problems(tmp_path, text)
    assert len(lines) == 1 and expected in lines[0], lines
