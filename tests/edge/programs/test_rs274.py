"""Path lengths against LinuxCNC's standalone interpreter ``rs274`` (package ``linuxcnc-uspace``).

The figures were recorded by ``deploy/scripts/rs274_reference.py`` into ``tests/data/rs274/reference.json``
(with the rs274 version). Our own programs (canned cycles, cutter compensation) are in that folder and are
always compared; LinuxCNC's example programs are not copied into this repository, so they are compared where
the package is installed (their SHA-256 must match the recorded one). Where ``rs274`` is installed the test also
runs it live on every program. `make test` installs the package where the distribution has it (optional: about
34 MB to download and 209 MB on disk).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest

from edge.programs import MachineProfile, analyse

DATA = Path(__file__).resolve().parents[2] / "data" / "rs274"
NCFILES = Path("/usr/share/linuxcnc/ncfiles")
REFERENCE = json.loads((DATA / "reference.json").read_text())
TOLERANCE = {"plain": 0.001, "cycles": 0.01, "compensation": 0.01}


def _program(name: str, entry: dict[str, object]) -> Path | None:
    path = DATA / name if entry["origin"] == "ours" else NCFILES / name
    if not path.exists() or hashlib.sha256(path.read_bytes()).hexdigest() != entry["sha256"]:
        return None
    return path


def _ours(path: Path) -> tuple[float, float]:
    record = analyse(path.read_bytes(), path=path.name, folder="ref", mtime=0.0, profile=MachineProfile(),
                     tool_diameters={1: 10.0, 2: 6.0, 3: 8.0, 4: 3.175})
    return record.feed_mm, record.rapid_mm


@pytest.mark.parametrize("name", sorted(REFERENCE["programs"]))
def test_path_lengths_match_rs274(name: str) -> None:
    entry = REFERENCE["programs"][name]
    path = _program(name, entry)
    if path is None:
        pytest.skip(f"{name}: LinuxCNC's example is not installed here (package linuxcnc-uspace)")
    feed, rapid = _ours(path)
    tolerance = TOLERANCE[entry["kind"]]
    assert feed == pytest.approx(entry["feed_mm"], rel=tolerance, abs=1e-6)
    assert rapid == pytest.approx(entry["rapid_mm"], rel=tolerance, abs=1e-6)


@pytest.mark.skipif(shutil.which("rs274") is None, reason="rs274 (linuxcnc-uspace) is not installed: "
                    "the recorded figures are used")
def test_live_rs274_gives_the_recorded_figures() -> None:
    spec = importlib.util.spec_from_file_location("rs274_reference", DATA.parents[2] / "deploy" / "scripts"
                                                  / "rs274_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["rs274_reference"] = module
    spec.loader.exec_module(module)
    for name, entry in REFERENCE["programs"].items():
        path = _program(name, entry)
        if path is None:
            continue
        live = module.lengths(module.canon(path, DATA / "tools.tbl"))
        assert live["feed_mm"] == pytest.approx(entry["feed_mm"], rel=1e-6), name
        assert live["rapid_mm"] == pytest.approx(entry["rapid_mm"], rel=1e-6), name
