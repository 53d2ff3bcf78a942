"""A model's input schema: loaded strictly, checked against a device's sensors and frames, never a wrong vector."""

from __future__ import annotations

import copy
import re
from typing import Any

import numpy as np
import pytest

from shared.errors import InputError
from shared.features import batch_features, sliding_windows
from shared.frame import TelemetryFrame
from shared.modelschema import (
    MAX_WINDOW_VALUES,
    check_frames,
    check_sensors,
    check_timestamps,
    load_schema,
    model_inputs,
    raw_inputs,
    sensor_matrix,
)

T0 = 1_760_000_000.0


def _window_schema(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "kind": "anomaly",
        "sensors": [{"name": "temp", "unit": "degC"}, {"name": "vib", "unit": "mm/s"}],
        "mode": "window",
        "window": {"length": 8, "step": 4, "interval_s": 1.0},
        "features": ["mean", "rms", "kurtosis", "band:0.5-1"],
        "scaling": {"mean": [20, 20, 0, 0, 0, 1, 0, 0], "scale": [2, 2, 1, 1, 1, 1, 1, 1]},
        "threshold": 0.7,
    }
    data.update(changes)
    return data


def _classifier(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"kind": "classifier", "sensors": [{"name": "current"}, {"name": "on"}],
                            "mode": "frame", "scaling": {"mean": [0, 0], "scale": [1, 1]},
                            "labels": ["idle", "load"]}
    data.update(changes)
    return data


def _frames(count: int, step: float = 1.0, device: str = "press-3", **extra: Any) -> list[TelemetryFrame]:
    return [TelemetryFrame(ts=T0 + i * step, device_id=device,
                           sensors={"vib": float(np.sin(i)), "temp": 20.0 + i, "state": "run", **extra})
            for i in range(count)]


def _problems(exc: pytest.ExceptionInfo[InputError]) -> list[tuple[str, str]]:
    return [(p.path, p.message) for p in exc.value.problems]


def test_a_window_schema_names_its_inputs_and_travels_as_json() -> None:
    schema = load_schema(_window_schema(features=["mean", "rms", "kurtosis", "band:0.50-1.0"]))
    assert schema.input_names == ["temp.mean", "temp.rms", "temp.kurtosis", "temp.band:0.5-1",
                                  "vib.mean", "vib.rms", "vib.kurtosis", "vib.band:0.5-1"]
    assert schema.n_inputs == 8 and schema.frames_needed == 8
    assert load_schema(schema.model_dump_json()) == schema


def test_a_frame_schema_reads_the_sensors_in_its_own_order() -> None:
    schema = load_schema(_classifier())
    assert schema.input_names == ["current", "on"] and schema.frames_needed == 1
    frames = [TelemetryFrame(ts=T0, device_id="m1", sensors={"on": True, "extra": "x", "current": 3.5}),
              TelemetryFrame(ts=T0 - 50, device_id="m1", sensors={"current": -1, "on": False})]
    # the second frame is older and far off: frames scored one by one have no timing to check
    assert model_inputs(schema, frames).tolist() == [[3.5, 1.0], [-1.0, 0.0]]


def test_model_inputs_are_the_scaled_features_of_each_window() -> None:
    schema = load_schema(_window_schema())
    frames = _frames(16)
    readings = np.array([[f.sensors["temp"], f.sensors["vib"]] for f in frames])
    expected = (batch_features(sliding_windows(readings, 8, 4), schema.features) - np.array(schema.scaling.mean)) \
        / np.array(schema.scaling.scale)
    got = model_inputs(schema, frames)
    assert got.shape == (3, 8) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert got[0, 0] == pytest.approx((23.5 - 20) / 2)  # temp 20..27 in the first window


@pytest.mark.parametrize(("change", "expected"), [
    ({"surprise": 1}, "schema.surprise: unknown key"),
    ({"sensors": []}, "schema.sensors: List should have at least 1 item"),
    ({"sensors": [{"name": "temp"}, {"name": "temp"}]}, "sensors listed twice: temp"),
    ({"sensors": [{"name": "bad name"}]}, "schema.sensors[0].name"),
    ({"sensors": [{"name": "temp", "unit": ""}]}, "schema.sensors[0].unit"),
    ({"mode": "frame"}, "mode 'frame' takes no window and no features"),
    ({"window": None}, "mode 'window' needs a window and at least one feature"),
    ({"features": []}, "mode 'window' needs a window and at least one feature"),
    ({"features": ["mean", "variance"]}, "unknown feature 'variance'"),
    ({"features": ["band:0.5-1", "band:0.50-1"]}, "features listed twice: band:0.5-1"),
    ({"features": ["mean", "band:0.1-0.2"]}, "band:0.1-0.2 holds no frequency bin of a 8-reading window"),
    ({"window": {"length": 8, "step": 9, "interval_s": 1}}, "step must be at most the window length 8"),
    ({"window": {"length": 1, "step": 1, "interval_s": 1}}, "schema.window.length"),
    ({"window": {"length": 10**9, "step": 1, "interval_s": 1}}, "schema.window.length: Input should be less than"),
    ({"window": {"length": 8, "step": 4}}, "schema.window.interval_s: required key is missing"),
    ({"window": {"length": 8, "step": 4, "interval_s": 0}}, "schema.window.interval_s"),
    ({"window": {"length": 8, "step": 4, "interval_s": 1, "interval_tolerance": 1}},
     "schema.window.interval_tolerance"),
    ({"window": {"length": 8, "step": "4", "interval_s": 1}}, "schema.window.step: Input should be a valid integer"),
    ({"scaling": {"mean": [0] * 7, "scale": [1] * 7}}, "scaling needs 8 means and scales, one per input (got 7 and 7)"),
    ({"scaling": {"mean": [0] * 8, "scale": [1] * 7 + [0]}}, "schema.scaling.scale[7]: Input should be greater than 0"),
    ({"scaling": {"mean": [0] * 8, "scale": [1] * 7 + [-2]}}, "schema.scaling.scale[7]"),
    ({"scaling": {"mean": [0] * 7 + ["x"], "scale": [1] * 8}}, "schema.scaling.mean[7]"),
    ({"threshold": None}, "an anomaly model needs its threshold"),
    ({"labels": ["a", "b"]}, "an anomaly model has no labels"),
    ({"kind": "detector"}, "schema.kind"),
    ({"format": 2}, "schema.format"),
])
def test_a_schema_that_cannot_be_right_is_refused_with_the_reason(change: dict[str, Any], expected: str) -> None:
    with pytest.raises(InputError) as exc:
        load_schema(_window_schema(**change))
    assert expected in str(exc.value)


def test_a_window_too_large_for_a_gateway_is_refused() -> None:
    sensors = [{"name": f"s{i}"} for i in range(64)]
    length = MAX_WINDOW_VALUES // 64 + 1
    with pytest.raises(InputError, match=f"a window of {length} frames of 64 sensors is"):
        load_schema(_window_schema(sensors=sensors, window={"length": length, "step": 1, "interval_s": 1},
                                   features=["mean"], scaling={"mean": [0] * 64, "scale": [1] * 64}))


@pytest.mark.parametrize(("change", "expected"), [
    ({"labels": None}, "a classifier needs at least two labels, each once"),
    ({"labels": ["idle"]}, "a classifier needs at least two labels, each once"),
    ({"labels": ["idle", "idle"]}, "a classifier needs at least two labels, each once"),
    ({"labels": ["idle", ""]}, "schema.labels[1]"),
    ({"threshold": 0.5}, "a classifier has no threshold"),
    ({"window": {"length": 4, "step": 1, "interval_s": 1}}, "mode 'frame' takes no window and no features"),
])
def test_a_classifier_schema_that_cannot_be_right_is_refused(change: dict[str, Any], expected: str) -> None:
    with pytest.raises(InputError, match=re.escape(expected)):
        load_schema(_classifier(**change))


def test_a_schema_that_is_not_json_is_refused() -> None:
    with pytest.raises(InputError, match="schema"):
        load_schema(b'{"kind": "anomaly", ')
    with pytest.raises(InputError, match="schema.threshold"):
        load_schema('{"kind": "anomaly", "sensors": [{"name": "a"}], "mode": "frame", '
                    '"scaling": {"mean": [0], "scale": [1]}, "threshold": NaN}')


def test_a_device_with_more_sensors_fits_and_one_with_other_units_does_not() -> None:
    schema = load_schema(_window_schema())
    check_sensors(schema, {"temp": "degC", "vib": "mm/s", "pressure": "bar"})
    check_sensors(schema, {"temp": None, "vib": "mm/s"})  # a unit the device does not state is not compared
    check_sensors(schema, ["vib", "temp"])
    with pytest.raises(InputError) as exc:
        check_sensors(schema, {"temp": "degF", "pressure": "bar"})
    assert _problems(exc) == [
        ("sensors.temp", "the device reads it in 'degF', the model was trained on 'degC'"),
        ("sensors.vib", "the device has no such sensor; it has ['pressure', 'temp']"),
    ]


def test_a_sensor_missing_from_a_frame_is_named_with_the_frame() -> None:
    schema = load_schema(_window_schema())
    frames = _frames(8)
    frames[5] = TelemetryFrame(ts=frames[5].ts, device_id="press-3", sensors={"temp": 1.0})
    with pytest.raises(InputError) as exc:
        check_frames(schema, frames)
    assert _problems(exc) == [("frames[5].sensors.vib", "missing: the model reads this sensor")]


def test_a_reading_that_is_not_a_number_is_refused() -> None:
    schema = load_schema(_window_schema())
    frames = _frames(8, vib="high")
    with pytest.raises(InputError) as exc:
        sensor_matrix(schema, frames)
    assert len(exc.value.problems) == 8
    assert exc.value.problems[0] == ("frames[0].sensors.vib", "not a number (got 'high')")


def test_many_problems_are_cut_to_a_readable_list() -> None:
    schema = load_schema(_classifier())
    frames = [TelemetryFrame(ts=T0 + i, device_id="m1", sensors={}) for i in range(100)]
    with pytest.raises(InputError) as exc:
        check_frames(schema, frames)
    assert len(exc.value.problems) == 21 and exc.value.problems[-1].message == "and 180 more problems"


def test_the_order_of_sensors_in_a_frame_does_not_matter() -> None:
    schema = load_schema(_window_schema())
    frames = _frames(8)
    reordered = [TelemetryFrame(ts=f.ts, device_id=f.device_id, sensors=dict(reversed(list(f.sensors.items()))))
                 for f in frames]
    np.testing.assert_array_equal(sensor_matrix(schema, frames), sensor_matrix(schema, reordered))
    assert sensor_matrix(schema, frames)[3].tolist() == [23.0, float(np.sin(3))]


def test_frames_of_two_devices_are_refused() -> None:
    schema = load_schema(_window_schema())
    frames = _frames(4) + _frames(4, device="press-4")
    with pytest.raises(InputError, match=r"frames of more than one device \(\['press-3', 'press-4'\]\)"):
        model_inputs(schema, frames)
    with pytest.raises(InputError, match="no frames"):
        model_inputs(schema, [])


def test_frames_out_of_time_order_are_refused() -> None:
    schema = load_schema(_window_schema())
    frames = _frames(8)
    frames[3], frames[4] = frames[4], frames[3]
    with pytest.raises(InputError) as exc:
        model_inputs(schema, frames)
    paths = [p for p, _ in _problems(exc)]
    assert paths == ["frames[3].ts", "frames[4].ts", "frames[5].ts"]  # 2 s, -1 s and 2 s after the one before
    assert "not after the frame before it" in exc.value.problems[1].message


@pytest.mark.parametrize(("step", "ok"), [(1.0, True), (1.2, True), (0.8, True), (1.3, False), (0.7, False),
                                          (10.0, False)])
def test_frames_at_another_interval_are_refused(step: float, ok: bool) -> None:
    schema = load_schema(_window_schema())
    if ok:
        check_frames(schema, _frames(8, step=step))
        return
    with pytest.raises(InputError, match=r"frames\[1\]\.ts: .* s after the frame before it; the model reads one frame "
                                         r"every 1 s \(±25%\)"):
        check_frames(schema, _frames(8, step=step))


def test_a_gap_inside_a_window_is_refused() -> None:
    schema = load_schema(_window_schema())
    ts = T0 + np.arange(8.0)
    ts[6:] += 3600  # an outage
    with pytest.raises(InputError, match=r"frames\[6\]\.ts: 3601 s after the frame before it"):
        check_timestamps(schema, ts)


def test_too_few_frames_for_a_window_is_an_error_not_an_empty_result() -> None:
    schema = load_schema(_window_schema())
    with pytest.raises(InputError, match="a window needs 8 readings"):
        model_inputs(schema, _frames(7))


def test_readings_of_the_wrong_width_are_refused() -> None:
    schema = load_schema(_window_schema())
    with pytest.raises(InputError, match=r"expected readings of 2 sensors as \(frames, sensors\), got shape \(8, 3\)"):
        raw_inputs(schema, np.zeros((8, 3)))
    with pytest.raises(InputError, match="expected rows of 8 inputs"):
        schema.scaling.apply(np.zeros((2, 7)))


def test_a_schema_is_read_only() -> None:
    schema = load_schema(_window_schema())
    before = copy.deepcopy(schema)
    with pytest.raises(ValueError, match="frozen"):
        schema.threshold = 0.1  # type: ignore[misc]
    assert schema == before
