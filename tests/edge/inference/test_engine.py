"""The inference engine on real ONNX models: scores on the frames, carried-forward readings, swaps, rejections,
failures at run time, rollback, window mode."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from edge.inference import InferenceEngine, LocalAssignment
from shared.errors import InputError
from tests.edge.inference.packages import (
    T0,
    assign,
    engine,
    frame,
    log_graph,
    make_schema,
    reshape_graph,
    write_package,
)

SCHEMA = make_schema(("temp", "vib"), threshold=5.0)


@pytest.fixture
async def scorer() -> AsyncIterator[InferenceEngine]:
    eng = engine()
    yield eng
    eng.close()


def scores(frames: list) -> list[float | None]:  # type: ignore[type-arg]
    return [f.metrics.get("model.score") for f in frames]


def device(eng: InferenceEngine, device_id: str = "press-1") -> dict:  # type: ignore[type-arg]
    return next(d for d in eng.status()["devices"] if d["device_id"] == device_id)


async def test_frames_get_the_model_score(tmp_path: Path, scorer: InferenceEngine) -> None:
    await scorer.set_assignments([assign(write_package(tmp_path, schema=SCHEMA))])
    out, alerts = await scorer.enrich([frame(0, temp=3.0, vib=4.0), frame(1, temp=0.0, vib=0.0),
                                       frame(1, "other", temp=3.0, vib=4.0)])
    assert scores(out) == pytest.approx([12.5, 0.0, None])  # mean of squares; the other device has no model
    assert out[0].sensors == {"temp": 3.0, "vib": 4.0} and out[0].ts == T0
    status = device(scorer)
    assert (status["model"], status["version"], status["state"]) == ("press-anomaly", 1, "serving")
    assert status["last_score"] == 0.0 and status["last_scored_at"] == T0 + 1
    # 12.5 is above the threshold 5, then 0 is under 5 x 0.8: raised and cleared, one alert
    assert [(a.event, a.ts, a.score) for a in alerts] == [("raised", T0, 12.5), ("cleared", T0 + 1, 12.5)]
    assert alerts[0].alert_id == alerts[1].alert_id


async def test_a_sensor_left_out_of_a_frame_keeps_its_last_value(tmp_path: Path, scorer: InferenceEngine) -> None:
    await scorer.set_assignments([assign(write_package(tmp_path, schema=SCHEMA))])
    out, _ = await scorer.enrich([frame(0, temp=1.0, vib=3.0), frame(1, temp=2.0), frame(2, vib=True, extra="x")])
    assert scores(out) == pytest.approx([(1 + 9) / 2, (4 + 9) / 2, (4 + 1) / 2])  # a coil reads as 1
    # a reading that is not a number completes no row, nor do the frames that carry it forward
    out, _ = await scorer.enrich([frame(3, vib="sensor fault"), frame(4, temp=1.0), frame(5, vib=0.0)])
    assert scores(out) == pytest.approx([None, None, 0.5])
    assert device(scorer)["frames_incomplete"] == 2


async def test_a_model_of_one_sensor_and_a_text_among_a_batch(tmp_path: Path, scorer: InferenceEngine) -> None:
    await scorer.set_assignments([assign(write_package(tmp_path, schema=make_schema(("temp",))))])
    out, _ = await scorer.enrich([frame(0, temp=2.0, vib=9.0), frame(1, temp=True), frame(2, temp="open"),
                                  frame(3, temp=3), frame(4, vib=1.0), frame(5, temp=2**63)])
    assert scores(out) == pytest.approx([4.0, 1.0, None, 9.0, 9.0, 2.0**126])
    assert device(scorer)["frames_incomplete"] == 1


async def test_a_classifier_gives_class_and_confidence(tmp_path: Path, scorer: InferenceEngine) -> None:
    schema = make_schema(("temp", "vib"), kind="classifier", labels=["idle", "run", "fault"])
    await scorer.set_assignments([assign(write_package(tmp_path, "load-type", schema), model="load-type")])
    out, alerts = await scorer.enrich([frame(0, temp=1.0, vib=2.0)])
    assert out[0].metrics["model.class"] in (0.0, 1.0, 2.0)
    assert 1 / 3 <= out[0].metrics["model.confidence"] <= 1.0
    assert alerts == []


async def test_the_most_specific_rule_wins(tmp_path: Path, scorer: InferenceEngine) -> None:
    fleet = write_package(tmp_path, "fleet-model", make_schema(("temp", "vib"), scale=2.0))
    mine = write_package(tmp_path, "press-anomaly", SCHEMA)
    await scorer.set_assignments([assign(fleet, scope="fleet", target=None, model="fleet-model"), assign(mine)])
    out, _ = await scorer.enrich([frame(0, temp=2.0, vib=2.0), frame(0, "press-2", temp=2.0, vib=2.0)])
    assert scores(out) == pytest.approx([4.0, 1.0])  # press-2 reads scaled by 2
    assert device(scorer, "press-2")["model"] == "fleet-model"
    await scorer.set_assignments([assign(fleet, scope="edge", target="edge-1", model="fleet-model")])
    out, _ = await scorer.enrich([frame(1, temp=2.0, vib=2.0)])
    assert scores(out) == pytest.approx([1.0]) and device(scorer)["model"] == "fleet-model"


def _bad_package(tmp: Path, kind: str) -> tuple[LocalAssignment, str]:
    """A version 2 of press-anomaly that must be refused, and words the refusal must contain."""
    good = write_package(tmp, schema=SCHEMA)
    if kind == "truncated":
        truncated = tmp / "truncated.twinmodel"
        truncated.write_bytes(good.read_bytes()[:300])
        return assign(truncated, 2), "not a readable ZIP"
    if kind == "wrong hash":
        return assign(good, 2, sha256="0" * 64), "sha256"
    if kind == "wrong input shape":
        return assign(_wrong_width(tmp), 2), "has shape ['N', 3]; the schema needs [N, 2]"
    if kind == "other sensors":
        return assign(write_package(tmp, schema=make_schema(("pressure", "flow"))), 2), \
            "sensors.pressure: the device has no such sensor"
    if kind == "test vectors":
        return assign(write_package(tmp, schema=SCHEMA, outputs=[[9.0]] * 4), 2), "test vectors"
    assert kind == "throws on its test vectors"
    return assign(write_package(tmp, schema=SCHEMA, model=reshape_graph(2), outputs=[[0.0]] * 4), 2), \
        "failed at run time"


def _wrong_width(tmp: Path) -> Path:
    """A package whose model takes 3 inputs while its schema gives 2 (written past build_package's checks)."""
    import io
    import zipfile

    from tests.mlkit import anomaly_graph

    good = write_package(tmp, "wrong-width", SCHEMA)
    out = io.BytesIO()
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            dst.writestr(info.filename, anomaly_graph(3) if info.filename == "model.onnx" else src.read(info))
    path = tmp / "wrong-width-3.twinmodel"
    path.write_bytes(out.getvalue())
    return path


@pytest.mark.parametrize("kind", ["truncated", "wrong hash", "wrong input shape", "other sensors", "test vectors",
                                  "throws on its test vectors"])
async def test_a_bad_model_is_rejected_and_the_previous_keeps_serving(tmp_path: Path, kind: str) -> None:
    scorer = engine()
    try:
        v1 = assign(write_package(tmp_path, schema=SCHEMA))
        await scorer.set_assignments([v1])
        out, _ = await scorer.enrich([frame(0, temp=1.0, vib=1.0)])
        assert scores(out) == [1.0]
        bad, reason = _bad_package(tmp_path, kind)
        await scorer.set_assignments([bad])
        out, _ = await scorer.enrich([frame(1, temp=2.0, vib=2.0)])
        assert scores(out) == [4.0]  # v1 still scores
        status = device(scorer)
        assert (status["model"], status["version"], status["state"]) == ("press-anomaly", 1, "serving")
        assert "press-anomaly v2 rejected" in status["message"] and reason in status["message"]
        assert "press-anomaly v1 keeps serving" in status["message"]
        assert any(reason in r["reason"] for r in scorer.status()["rejected"])
        report = scorer.reports()["press-1"]
        assert (report.version, report.state) == (1, "serving") and reason in (report.message or "")
    finally:
        scorer.close()


async def test_a_bad_model_with_nothing_before_it_reports_rejected(tmp_path: Path, scorer: InferenceEngine) -> None:
    await scorer.set_assignments([assign(write_package(tmp_path, schema=make_schema(("pressure",))))])
    out, _ = await scorer.enrich([frame(0, temp=1.0, vib=1.0)])
    assert scores(out) == [None]
    report = scorer.reports()["press-1"]
    assert report.state == "rejected" and "sensors.pressure" in (report.message or "")
    # the device reports the sensor later (an MQTT device that sends what changed): checked again, then served
    out, _ = await scorer.enrich([frame(1, pressure=2.0)])
    assert scores(out) == [4.0] and scorer.reports()["press-1"].state == "serving"


async def test_units_from_the_source_config_are_checked(tmp_path: Path) -> None:
    from edge.inference import InferenceConfig

    scorer = InferenceEngine(InferenceConfig(), edge_id="edge-1",
                             sensor_units={"press-1": {"temp": "degF", "vib": "mm/s"}})
    try:
        schema = make_schema((("temp", "degC"), ("vib", "mm/s")))
        await scorer.set_assignments([assign(write_package(tmp_path, schema=schema))])
        out, _ = await scorer.enrich([frame(0, temp=1.0, vib=1.0)])
        assert scores(out) == [None]
        assert "the device reads it in 'degF', the model was trained on 'degC'" in device(scorer)["message"]
    finally:
        scorer.close()


async def test_a_model_that_throws_at_run_time_is_taken_out(tmp_path: Path) -> None:
    scorer = engine(failures_before_disable=2)
    try:
        path = write_package(tmp_path, schema=SCHEMA, model=reshape_graph(2), test_rows=[[1.0, 2.0]])
        await scorer.set_assignments([assign(path)])
        out, _ = await scorer.enrich([frame(0, temp=1.0, vib=1.0)])
        assert scores(out) == [1.0]  # one row at a time works
        batch = [frame(1, temp=3.0, vib=4.0), frame(2, temp=3.0, vib=4.0)]
        out, _ = await scorer.enrich(batch)
        assert scores(out) == [None, None] and device(scorer)["state"] == "serving"
        out, _ = await scorer.enrich([frame(3, temp=1.0, vib=1.0), frame(4, temp=1.0, vib=1.0)])
        assert out[0].sensors == {"temp": 1.0, "vib": 1.0} and scores(out) == [None, None]  # frames go on
        status = device(scorer)
        assert status["state"] == "failed"
        assert "failed 2 runs in a row" in status["message"] and "failed at run time" in status["message"]
        out, _ = await scorer.enrich([frame(5, temp=1.0, vib=1.0)])
        assert scores(out) == [None]  # out of the path, even for a row it could score
        await scorer.set_assignments([assign(path)])  # the same assignment again (every poll): stays out
        out, _ = await scorer.enrich([frame(6, temp=1.0, vib=1.0)])
        assert scores(out) == [None] and scorer.reports()["press-1"].state == "failed"
    finally:
        scorer.close()


async def test_a_non_finite_output_counts_against_its_device_only(tmp_path: Path) -> None:
    scorer = engine(failures_before_disable=1)
    try:
        path = write_package(tmp_path, "log-model", make_schema(("temp", "vib")), model=log_graph(2),
                             test_rows=[[1.0, 2.0]])
        await scorer.set_assignments([assign(path, scope="fleet", target=None, model="log-model")])
        out, _ = await scorer.enrich([frame(0, "press-1", temp=-1.0, vib=1.0), frame(0, "press-2", temp=1.0, vib=1.0)])
        assert scores(out) == [None, 0.0]
        assert device(scorer, "press-1")["state"] == "failed" and "not finite" in device(scorer)["message"]
        assert device(scorer, "press-2")["state"] == "serving"
    finally:
        scorer.close()


async def test_rollback_pins_the_previous_model_until_the_assignment_changes(
        tmp_path: Path, scorer: InferenceEngine) -> None:
    v1 = assign(write_package(tmp_path, schema=SCHEMA), 1)
    v2 = assign(write_package(tmp_path, schema=make_schema(("temp", "vib"), scale=2.0)), 2)
    v3 = assign(write_package(tmp_path, schema=make_schema(("temp", "vib"), scale=4.0)), 3)
    with pytest.raises(InputError, match="no previous model"):
        await scorer.rollback("press-1")
    await scorer.set_assignments([v1])
    await scorer.enrich([frame(0, temp=2.0, vib=2.0)])
    await scorer.set_assignments([v2])
    out, _ = await scorer.enrich([frame(1, temp=2.0, vib=2.0)])
    assert scores(out) == [1.0]
    result = await scorer.rollback("press-1")
    assert (result["version"], result["pinned"], result["previous"]["version"]) == (1, True, 2)
    out, _ = await scorer.enrich([frame(2, temp=2.0, vib=2.0)])
    assert scores(out) == [4.0]
    await scorer.set_assignments([v2])  # the next poll brings the same list: the rollback holds
    out, _ = await scorer.enrich([frame(3, temp=2.0, vib=2.0)])
    assert scores(out) == [4.0]
    await scorer.set_assignments([v3])  # a new assignment ends it
    out, _ = await scorer.enrich([frame(4, temp=2.0, vib=2.0)])
    assert scores(out) == [0.25] and device(scorer)["pinned"] is False


async def test_rollback_closes_a_raised_alert(tmp_path: Path, scorer: InferenceEngine) -> None:
    await scorer.set_assignments([assign(write_package(tmp_path, schema=SCHEMA), 1)])
    await scorer.enrich([frame(0, temp=0.0, vib=0.0)])
    await scorer.set_assignments([assign(write_package(tmp_path, schema=make_schema(("temp", "vib"), scale=0.1,
                                                                                      threshold=5.0)), 2)])
    _, alerts = await scorer.enrich([frame(1, temp=1.0, vib=1.0)])
    assert [a.event for a in alerts] == ["raised"] and alerts[0].version == 2
    await scorer.rollback("press-1")
    _, closed = await scorer.enrich([frame(2, temp=0.0, vib=0.0)])
    assert [(a.event, a.alert_id, a.version) for a in closed] == [("cleared", alerts[0].alert_id, 2)]
    assert "rolled back to press-anomaly v1" in (closed[0].message or "")


async def test_window_mode_with_deadband_frames_and_a_gap(tmp_path: Path, scorer: InferenceEngine) -> None:
    schema = make_schema(("temp", "vib"), mode="window", features=["mean"],
                         window={"length": 4, "step": 2, "interval_s": 1.0})
    await scorer.set_assignments([assign(write_package(tmp_path, schema=schema))])
    # vib holds still (deadband): only the first frame carries it
    frames = [frame(0, temp=1.0, vib=2.0)] + [frame(i, temp=float(i + 1)) for i in range(1, 8)]
    out, _ = await scorer.enrich(frames[:5])
    out2, _ = await scorer.enrich(frames[5:])
    got = scores([*out, *out2])
    # rows complete at frames 3, 5, 7: mean(temp window)^2 + mean(vib)^2 over 2 columns
    def expected(temps: list[float]) -> float:
        return ((sum(temps) / 4) ** 2 + 2.0 ** 2) / 2

    assert got == pytest.approx([None, None, None, expected([1, 2, 3, 4]), None, expected([3, 4, 5, 6]), None,
                                 expected([5, 6, 7, 8])])
    # a cycle that sent nothing: 3 s later. The window restarts there, and the gap is counted
    later = [frame(10 + i, temp=1.0) for i in range(5)]
    out, _ = await scorer.enrich(later)
    assert scores(out) == pytest.approx([None, None, None, expected([1, 1, 1, 1]), None])
    assert device(scorer)["window_gaps"] == 1


async def test_drift_is_reported_with_the_columns_that_moved(tmp_path: Path) -> None:
    scorer = engine(drift={"window_rows": 50, "min_rows": 20})
    try:
        await scorer.set_assignments([assign(write_package(tmp_path, schema=SCHEMA))])
        # the card's bins: < -1, -1..0, 0..1, >= 1 with 16/34/34/16 %; temp sits in one bin
        await scorer.enrich([frame(i, temp=0.5, vib=(-1.5, -0.5, 0.5, 1.5)[i % 4] if i % 3 else 0.2)
                             for i in range(19)])
        assert scorer.reports()["press-1"].drift == "unknown"
        await scorer.enrich([frame(19 + i, temp=0.5, vib=0.2) for i in range(31)])
        report = scorer.reports()["press-1"]
        assert report.rows == 50 and report.drift == "drift"
        assert list(report.psi)[0] == "temp" and report.psi["temp"] > 0.25
    finally:
        scorer.close()


async def test_without_a_model_frames_pass_unchanged(scorer: InferenceEngine) -> None:
    frames = [frame(0, temp=1.0)]
    out, alerts = await scorer.enrich(frames)
    assert out == frames and alerts == [] and scorer.reports() == {}


def test_a_gateway_without_a_model_loads_neither_numpy_nor_onnxruntime(tmp_path: Path) -> None:
    import subprocess
    import sys

    script = (
        "import asyncio, sys\n"
        "from edge.app import Gateway\n"
        "from edge.config import GatewayConfig\n"
        "from shared.frame import TelemetryFrame\n"
        f"config = GatewayConfig.model_validate({{'edge': {{'id': 'e1', 'state_dir': {str(tmp_path)!r}}}}})\n"
        "gateway = Gateway(config)\n"
        "frames = [TelemetryFrame(ts=1.8e9, device_id='press-1', sensors={'temp': 1.0})]\n"
        "out, alerts = asyncio.run(gateway.engine.enrich(frames))\n"
        "assert out == frames and alerts == []\n"
        "print('numpy' in sys.modules, 'onnxruntime' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60)
    assert result.stdout.split() == ["False", "False"]


async def test_a_device_that_invents_sensor_names_does_not_grow_memory(tmp_path: Path,
                                                                       scorer: InferenceEngine) -> None:
    from edge.inference.engine import MAX_CARRIED

    await scorer.set_assignments([assign(write_package(tmp_path, schema=SCHEMA))])
    await scorer.enrich([frame(0, temp=1.0, vib=1.0)])
    for n in range(5):
        out, _ = await scorer.enrich([frame(1 + n, **{f"x{n}_{i}": 1.0 for i in range(500)})])
        assert scores(out) == [1.0]  # temp and vib carried forward through the flood
    internal = scorer._devices["press-1"]  # noqa: SLF001 - the bound is what this test is about
    assert len(internal.values) <= MAX_CARRIED


async def test_runs_of_one_device_score_as_the_same_frames_one_batch_each(tmp_path: Path) -> None:
    """Frames of a device that come one after another (an MQTT message of many) are read in one go when each holds
    every sensor; deadbanded frames, a text reading and a flood of new names within a run give the same scores."""
    def sensors(m: int, i: int) -> dict[str, object]:
        if m == 4 and i == 3:
            return {f"x{j}": 1.0 for j in range(400)} | {"temp": float(i)}  # past the carried bound mid-run
        if m == 5 and i == 1:
            return {"vib": "sensor fault"}
        return {"temp": float(m + i)} if i == 2 and m in (2, 6) else {"temp": float(m + i), "vib": float(m - i)}

    frames = [frame(m * 5 + i, f"press-{m % 3}", **sensors(m, i)) for m in range(8) for i in range(5)]
    path = write_package(tmp_path, schema=SCHEMA)
    batched, single = engine(), engine()
    try:
        for eng in (batched, single):
            await eng.set_assignments([assign(path, scope="edge", target="edge-1")])
        out, _ = await batched.enrich(frames)
        one_by_one = [(await single.enrich([f]))[0][0] for f in frames]
        assert scores(out) == pytest.approx(scores(one_by_one))
        assert scores(out).count(None) == 1  # the frame with a text reading
        for name in ("press-0", "press-1", "press-2"):
            assert device(batched, name)["frames_incomplete"] == device(single, name)["frames_incomplete"]
    finally:
        batched.close()
        single.close()


async def test_a_model_assigned_later_gets_values_reported_before_it(tmp_path: Path, scorer: InferenceEngine) -> None:
    await scorer.enrich([frame(0, temp=1.0, vib=3.0)])  # no model yet; vib then holds still (deadband)
    await scorer.set_assignments([assign(write_package(tmp_path, schema=SCHEMA))])
    out, _ = await scorer.enrich([frame(1, temp=1.0)])
    assert scores(out) == [5.0]


async def test_a_flood_of_device_ids_without_a_model_stays_bounded(scorer: InferenceEngine) -> None:
    from edge.inference.engine import MAX_REMEMBERED, MAX_REMEMBERED_VALUES

    for n in range(MAX_REMEMBERED + 50):
        await scorer.enrich([frame(n, f"dev-{n}", **{f"s{i}": 1.0 for i in range(200)})])
    remembered = scorer._last  # noqa: SLF001 - the bound is what this test is about
    assert len(remembered) == MAX_REMEMBERED
    assert max(len(v) for v in remembered.values()) <= MAX_REMEMBERED_VALUES
