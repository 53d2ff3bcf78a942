"""What the CLI prints for a person: frame lines with local time and readable values, status warnings."""

from __future__ import annotations

from datetime import datetime

from edge.render import format_value, render_frame_line, render_queue_stats, render_status


def test_a_frame_line_shows_local_iso_time_and_values_without_float_noise() -> None:
    ts = 1_800_000_000.25
    line = render_frame_line({"ts": ts, "device_id": "press-1", "sensors": {"temp": 22.900000000000002,
                                                                              "count": 7, "run": True}})
    when = datetime.fromtimestamp(ts).astimezone().isoformat(timespec="milliseconds")
    assert line == f"{when} press-1 ok temp=22.9 count=7 run=True"
    assert when[10] == "T" and when[-6] in "+-"  # ISO 8601 with the UTC offset


def test_values_keep_their_significant_digits() -> None:
    assert format_value(0.1 + 0.2) == "0.3"
    assert format_value(1234567.891) == "1234567.891"
    assert format_value(6.02214076e23) == "6.02214076e+23"
    assert format_value(1e-9) == "1e-09"
    assert format_value("RUN") == "RUN"


def test_queue_stats_show_the_alerts_waiting_and_any_that_were_dropped() -> None:
    stats = {"depth": 10, "oldest_age_s": 5.0, "used_bytes": 10**6, "budget_bytes": 10**9,
             "budget_configured_bytes": 10**9, "drops": {}, "duplicates": 0, "quarantined": 0,
             "alerts": {"pending": 3, "oldest_age_s": 90.0, "dropped": {}}}
    lines = render_queue_stats(stats).splitlines()
    assert lines[1] == "alerts:       3 waiting for the cloud, oldest 90 s"
    stats["alerts"] = {"pending": 100_000, "oldest_age_s": 7200.0, "dropped": {"over_cap": 1234}}
    assert render_queue_stats(stats).splitlines()[1] == (
        "alerts:       100000 waiting for the cloud, oldest 2.0 h; DROPPED: over_cap 1,234")


def test_status_says_when_models_cannot_be_fetched_from_the_cloud() -> None:
    queue = {"depth": 0, "used_bytes": 0, "budget_bytes": 10**9, "budget_configured_bytes": 10**9, "drops": {}}
    status = {"version": "1", "edge_id": "line-1", "uptime_s": 60.0, "sources": [], "queue": queue,
              "writer": {"committed_frames": 0, "commits": 0, "queued_in_memory": 0, "backpressure_waits": 0},
              "cloud": {"state": "idle", "url": "https://cloud.example.com/", "last_sync": None, "frames_sent": 0,
                        "alerts_sent": 0},
              "model_downloads": {"last_error": None, "refused_packages": {}}}
    assert "models from the cloud" not in render_status(status)
    status["model_downloads"] = {
        "last_error": "the cloud answered the model list with HTTP 403: this token belongs to edge 'line-2'",
        "refused_packages": {"9f2c" * 16: "truncated: 100 of 2,000 bytes arrived"}}
    lines = render_status(status).splitlines()
    assert ("              models from the cloud: the cloud answered the model list with HTTP 403: this token "
            "belongs to edge 'line-2'") in lines
    assert "              package 9f2c9f2c9f2c refused: truncated: 100 of 2,000 bytes arrived" in lines


def test_queue_stats_show_the_documents_waiting_and_any_that_were_dropped() -> None:
    stats = {"depth": 0, "used_bytes": 10**6, "budget_bytes": 10**9, "budget_configured_bytes": 10**9, "drops": {},
             "alerts": {"pending": 0}, "documents": {"pending": 12, "dropped": {}}}
    assert "documents:    12 waiting for the cloud (programs, assets, device models)" in render_queue_stats(
        stats).splitlines()
    stats["documents"] = {"pending": 10_000, "dropped": {"over_cap": 25, "disk_full": 0}}
    assert ("documents:    10000 waiting for the cloud (programs, assets, device models); DROPPED: over_cap 25"
            in render_queue_stats(stats).splitlines())
