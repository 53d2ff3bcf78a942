"""The batch planner and the bandwidth limiter, without I/O: which reads come next, and when bytes may go."""

from __future__ import annotations

from edge.uplink.limiter import BandwidthLimiter
from edge.uplink.planner import BatchPlanner, Read


def planner() -> BatchPlanner:
    return BatchPlanner(batch_max_frames=100, split_above=200)


def test_a_short_queue_after_start_is_read_oldest_first_without_a_split() -> None:
    p = planner()
    assert p.outage
    assert not p.split_due(depth=150)
    assert not p.outage
    assert p.reads() == [Read(0, None, backlog=False)]


def test_a_long_queue_after_an_outage_sends_live_frames_before_the_backlog() -> None:
    p = planner()
    assert p.split_due(depth=5000)
    p.start_backlog(newest_seq=9000)
    assert p.reads() == [Read(9000, None, backlog=False), Read(0, 9000, backlog=True)]
    p.backlog_delivered()
    assert p.reads() == [Read(0, None, backlog=False)]


def test_a_retry_makes_the_planner_look_at_the_queue_again() -> None:
    p = planner()
    p.split_due(depth=10)
    p.on_retry()
    assert p.outage


def test_reading_ahead_skips_the_batch_in_flight_in_the_range_it_came_from() -> None:
    p = planner()
    assert p.reads(skip=(1, 100)) == [Read(100, None, backlog=False)]
    p.split_due(depth=5000)
    p.start_backlog(newest_seq=9000)
    # a live batch in flight (seq 9001..9100): the live read starts behind it, the backlog read is untouched
    assert p.reads(skip=(9001, 9100)) == [Read(9100, None, backlog=False), Read(0, 9000, backlog=True)]
    # a backlog batch in flight (seq 1..100): only the backlog read moves
    assert p.reads(skip=(1, 100)) == [Read(9000, None, backlog=False), Read(100, 9000, backlog=True)]


def test_refusals_halve_the_batch_down_to_one_frame_and_acks_double_it_back() -> None:
    p = planner()
    assert p.on_refused(100) and p.limit == 50
    assert p.on_refused(50) and p.limit == 25
    assert p.on_refused(2) and p.limit == 1
    assert not p.on_refused(1)  # a single frame the cloud refuses goes to the quarantine
    for expected in (2, 4, 8, 16, 32, 64, 100, 100):
        p.on_acknowledged()
        assert p.limit == expected


def test_the_limiter_paces_bytes_and_lets_a_large_batch_through_once_filled() -> None:
    limiter = BandwidthLimiter(rate=1000, now=0.0)
    assert limiter.wait_for(600, now=0.0) == 0.0
    assert limiter.wait_for(600, now=0.0) == 0.2  # 400 left, 200 more bytes take 0.2 s
    assert limiter.wait_for(600, now=0.2) == 0.0
    assert limiter.wait_for(3000, now=0.2) == 3.0  # larger than a second's worth: waits to fill to its size
    assert limiter.wait_for(3000, now=3.2) == 0.0


def test_no_cap_never_waits() -> None:
    limiter = BandwidthLimiter(rate=0, now=0.0)
    assert limiter.wait_for(10**9, now=0.0) == 0.0


def test_a_refused_batch_of_alerts_and_frames_tries_the_alerts_alone_then_the_frames_alone() -> None:
    p = BatchPlanner(batch_max_frames=100, split_above=200, alerts_max=8)
    assert p.sends_alerts and p.sends_frames
    assert p.on_batch_refused(alerts=8, frames=100)
    assert (p.sends_alerts, p.sends_frames, p.limit) == (True, False, 100)
    p.on_batch_acknowledged(alerts=8, frames=0)  # the alerts were fine
    assert (p.sends_alerts, p.sends_frames) == (False, True)
    assert p.on_batch_refused(alerts=0, frames=100) and p.limit == 50  # the frames are narrowed as before
    p.on_batch_acknowledged(alerts=0, frames=50)
    assert p.sends_alerts and p.sends_frames and p.limit == 100


def test_alerts_are_halved_down_to_one_which_goes_to_the_quarantine() -> None:
    p = BatchPlanner(batch_max_frames=100, split_above=200, alerts_max=8)
    assert p.on_batch_refused(alerts=8, frames=0) and p.alert_limit == 4
    assert p.on_batch_refused(alerts=4, frames=0) and p.on_batch_refused(alerts=2, frames=0)
    assert p.alert_limit == 1 and not p.on_batch_refused(alerts=1, frames=0)
    p.on_batch_acknowledged(alerts=1, frames=0)
    assert p.alert_limit == 2 and p.limit == 100  # an alerts-only ack leaves the frame limit alone


def test_when_nothing_of_the_part_alone_waits_the_other_part_then_both_go() -> None:
    p = planner()
    p.on_batch_refused(alerts=3, frames=10)
    p.nothing_alone()
    assert (p.sends_alerts, p.sends_frames) == (False, True)
    p.nothing_alone()
    assert p.sends_alerts and p.sends_frames
