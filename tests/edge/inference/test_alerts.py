"""The alert policy on sequences of scores: minimum duration, hysteresis, peak, one id per alert."""

from __future__ import annotations

import pytest

from edge.inference.alerts import AlertPolicy, AlertSettings, clear_level
from shared.batch import AlertEvent

T0 = 1_800_000_000.0


def run(scores: list[float], *, every: float = 1.0, threshold: float = 1.5,
        **settings: float) -> list[tuple[int, AlertEvent]]:
    """Feed one score per ``every`` seconds; the events with the index of the row that caused them."""
    policy = AlertPolicy("press-1", "press-anomaly", 3, threshold, AlertSettings(**settings))
    out = []
    for i, score in enumerate(scores):
        event = policy.feed(T0 + i * every, score)
        if event is not None:
            out.append((i, event))
    return out


def test_raised_on_the_first_row_at_the_threshold_and_cleared_below_the_hysteresis() -> None:
    events = run([0.1, 1.5, 4.2, 1.3, 1.21, 1.19, 0.1])
    assert [(i, e.event) for i, e in events] == [(1, "raised"), (5, "cleared")]
    raised, cleared = events[0][1], events[1][1]
    assert raised.alert_id == cleared.alert_id and len(raised.alert_id) == 32
    assert (raised.ts, raised.score, raised.threshold) == (T0 + 1, 1.5, 1.5)
    assert (cleared.ts, cleared.score) == (T0 + 5, 4.2)  # when it went under 1.2, with the peak
    assert raised.message == "press-1: anomaly score 1.5 at or above 1.5 (model press-anomaly v3)"
    assert cleared.message == "press-1: anomaly score back under 1.2 (model press-anomaly v3) after 4 s; peak 4.2"
    assert (raised.device_id, raised.model, raised.version) == ("press-1", "press-anomaly", 3)


def test_a_score_that_hovers_at_the_threshold_raises_one_alert() -> None:
    events = run([1.6, 1.4, 1.6, 1.3, 1.55, 1.21, 1.5])
    assert [e.event for _, e in events] == ["raised"]


def test_the_minimum_duration_is_measured_on_the_frames_timestamps() -> None:
    events = run([2.0] * 12, every=1.0, min_duration_s=10.0)
    assert [(i, e.event) for i, e in events] == [(10, "raised")]
    assert events[0][1].ts == T0  # when the condition began
    assert events[0][1].message == ("press-1: anomaly score 2 at or above 1.5 (model press-anomaly v3) for 10 s")
    # a dip under the threshold starts the count again
    assert run([2.0] * 5 + [1.0] + [2.0] * 5, min_duration_s=5.0) == []


def test_the_clear_duration_needs_the_score_to_stay_low() -> None:
    events = run([5.0, 0.0, 0.0, 3.0, 0.0, 0.0, 0.0, 0.0], clear_duration_s=2.0)
    assert [(i, e.event) for i, e in events] == [(0, "raised"), (6, "cleared")]
    assert events[1][1].ts == T0 + 4 and events[1][1].score == 5.0


def test_a_new_alert_after_a_clear_gets_a_new_id() -> None:
    events = run([2.0, 0.0, 2.0, 0.0])
    ids = [e.alert_id for _, e in events]
    assert [e.event for _, e in events] == ["raised", "cleared", "raised", "cleared"]
    assert ids[0] == ids[1] != ids[2] == ids[3]


def test_close_clears_a_raised_alert_with_the_reason() -> None:
    policy = AlertPolicy("press-1", "press-anomaly", 3, 1.5, AlertSettings())
    assert policy.close("replaced") is None
    raised = policy.feed(T0, 3.0)
    assert raised is not None and policy.active
    closed = policy.close("replaced by press-anomaly v4")
    assert closed is not None and (closed.event, closed.alert_id, closed.ts, closed.score) == (
        "cleared", raised.alert_id, T0, 3.0)
    assert "closed: replaced by press-anomaly v4" in (closed.message or "")
    assert not policy.active


@pytest.mark.parametrize(("threshold", "ratio", "level"), [(1.5, 0.8, 1.2), (-2.0, 0.5, -3.0), (0.0, 0.8, 0.0)])
def test_the_clearing_level_is_never_above_the_threshold(threshold: float, ratio: float, level: float) -> None:
    assert clear_level(threshold, ratio) == pytest.approx(level)


def test_a_negative_threshold_keeps_its_hysteresis() -> None:
    events = run([-1.0, -2.5, -3.5], threshold=-2.0, clear_ratio=0.5)  # clears under -3
    assert [(i, e.event) for i, e in events] == [(0, "raised"), (2, "cleared")]


@pytest.mark.parametrize("scores", [
    [0.1, 0.2, 1.4],  # quiet throughout
    [0.1, 2.0, 3.0, 1.3, 1.25, 4.0],  # raised and held above the clearing level
    [2.0, 0.1, 0.1, 2.0, 2.0, 0.0],  # raised, cleared, raised again
    [2.0] * 4 + [0.0] * 4,
])
@pytest.mark.parametrize("settings", [{}, {"min_duration_s": 2.0, "clear_duration_s": 1.0}])
@pytest.mark.parametrize("size", [1, 2, 3, 100])
def test_a_batch_of_rows_gives_what_row_by_row_gives(scores: list[float], settings: dict[str, float],
                                                      size: int) -> None:
    """``feed_rows`` judges a run of rows that changes nothing at once: the events, and the alert closed after
    them (its time and peak), are those of feeding the rows one by one."""
    rows = scores * 2
    ts = [T0 + i for i in range(len(rows))]

    def seen(events: list[AlertEvent | None]) -> list[tuple[str, float, float, str | None]]:
        return [(e.event, e.ts, e.score, e.message) for e in events if e is not None]

    one = AlertPolicy("press-1", "m", 1, 1.5, AlertSettings(**settings))
    expected = seen([one.feed(t, s) for t, s in zip(ts, rows, strict=True)] + [one.close("replaced")])
    batched = AlertPolicy("press-1", "m", 1, 1.5, AlertSettings(**settings))
    got: list[AlertEvent | None] = []
    for start in range(0, len(rows), size):
        got += batched.feed_rows(lambda i, start=start: ts[start + i], rows[start:start + size])  # type: ignore[misc]
    got.append(batched.close("replaced"))
    assert seen(got) == expected
