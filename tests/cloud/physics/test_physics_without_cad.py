"""Without the cad extra (cadquery-ocp), only the tests that need the CAD kernel are skipped."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
_RUN = "import sys; sys.modules['OCP'] = None; import pytest; sys.exit(pytest.main(sys.argv[1:]))"


def test_the_mass_tests_run_without_the_cad_kernel_and_skip_only_the_occt_ones(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _RUN, "-q", "-rs", "-p", "no:cacheprovider", f"--basetemp={tmp_path / 'run'}",
         "tests/cloud/physics/test_physics_mass.py"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:]
    summary = done.stdout.strip().splitlines()[-1]
    passed, skipped = (int(re.search(rf"(\d+) {word}", summary).group(1)) for word in ("passed", "skipped"))
    assert (passed, skipped) == (10, 4), summary
    assert done.stdout.count("cadquery-ocp (OCP, the cad extra) is not installed") >= 2  # -rs lists the reasons
