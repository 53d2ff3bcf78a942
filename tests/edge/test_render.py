"""What the CLI prints for a person: frame lines with local time and readable values, status warnings."""

from __future__ import annotations

from datetime import datetime

from edge.render import format_value, render_frame_line


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
