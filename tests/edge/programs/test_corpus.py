"""The generated Fanuc/Haas corpus: every feature known by construction comes out exactly."""

from __future__ import annotations

import pytest

from edge.programs import MachineProfile, analyse
from shared.cycletime import apply_calibration, fit_calibration
from tests.edge.programs.corpus import generate


@pytest.mark.parametrize("seed", range(0, 120))
def test_generated_program_features_are_exact(seed: int) -> None:
    program = generate(seed)
    record = analyse(program.text.encode(), path=f"p{seed}.nc", folder="f", mtime=0.0, profile=MachineProfile())
    assert [t.tool for t in record.tools] == program.tools
    assert [t.comment for t in record.tools] == program.comments
    assert [t.diameter_mm for t in record.tools] == program.diameters
    assert record.offsets == program.offsets
    assert record.holes == program.holes
    assert record.feed_mm == pytest.approx(program.feed_mm, rel=1e-9)
    assert record.rapid_mm == pytest.approx(program.rapid_mm, rel=1e-9)
    assert record.lines == program.lines
    assert [d for d in record.diagnostics if d.level == "error"] == []


def test_calibration_on_half_the_corpus_predicts_the_other_half() -> None:
    corpus = [generate(seed) for seed in range(200)]
    pairs = []
    for i, program in enumerate(corpus):
        record = analyse(program.text.encode(), path=f"p{i}.nc", folder="f", mtime=0.0, profile=MachineProfile())
        assert record.estimate is not None
        pairs.append((record.estimate, program.true_s))
    calibration = fit_calibration(pairs[0::2])
    errors = sorted(abs(apply_calibration(calibration, e) - t) / t for e, t in pairs[1::2])
    assert errors[len(errors) // 2] <= 0.10
