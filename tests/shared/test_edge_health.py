"""The edge's health report, as the cloud keeps it: within bounds, shortened rather than refused."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shared.batch import MAX_DROP_REASONS, MAX_NAME, MAX_SOURCES, MAX_STATE, EdgeHealth


def test_a_report_within_the_bounds_is_kept_as_it_is() -> None:
    health = EdgeHealth(queue_depth=3, drops={"disk_budget_oldest": 7}, sources={"press-1": "connected"})
    kept, notes = health.bounded()
    assert kept == health and notes == []


def test_many_drop_reasons_keep_the_largest_and_sum_the_rest() -> None:
    drops = {f"r{i}": i for i in range(1000)}
    kept, notes = EdgeHealth(queue_depth=0, drops=drops).bounded()
    assert len(kept.drops) == MAX_DROP_REASONS
    assert sum(kept.drops.values()) == sum(drops.values())
    assert kept.drops["r999"] == 999 and "r0" not in kept.drops
    assert kept.drops["(other reasons)"] == sum(range(1000 - (MAX_DROP_REASONS - 1)))
    assert notes == ["1,000 drop reasons; the 31 largest are kept and the rest summed under '(other reasons)'"]


def test_many_sources_and_long_names_are_cut_with_a_note() -> None:
    sources = {f"plc-{i:05d}": "connected" for i in range(MAX_SOURCES + 10)}
    sources["x" * 500] = "y" * 500
    kept, notes = EdgeHealth(queue_depth=0, sources=sources).bounded()
    assert len(kept.sources) == MAX_SOURCES
    assert kept.sources["(more sources)"] == "12 more not shown"
    assert all(len(k) <= MAX_NAME and len(v) <= MAX_STATE for k, v in kept.sources.items())
    assert len(notes) == 2 and "names over 64 characters" in notes[1]


@pytest.mark.parametrize("field", [{"queue_depth": -1}, {"queue_depth": 2**63}, {"oldest_age_s": float("inf")},
                                   {"drops": {"x": -3}}, {"quarantined": 2**64}])
def test_counts_out_of_range_are_refused(field: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        EdgeHealth.model_validate({"queue_depth": 0, **field})
