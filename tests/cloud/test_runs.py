"""Program runs read from a machine's EXECUTION and PROGRAM series: the rules on scripted sequences, and the four
runs of the Okuma recording on both storage backends and over HTTP, linked to harvested programs and calibrating
the machine's estimate."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from cloud.documents import read_documents
from cloud.runs import Run, calibrate, find_runs, link_runs, open_run_from
from cloud.runsquery import device_runs, runs_of_program
from cloud.storage.base import BadQuery, Storage
from cloud.storage.programs import LinkCandidate
from shared.cnc import Estimate
from shared.frame import TelemetryFrame
from tests.cloud.apiclient import Api, auth, batch
from tests.cloud.documents import document, program, program_doc
from tests.cloud.okuma import okuma_frames, okuma_model

S = 1_000_000  # µs in a second
ESTIMATE = Estimate(profile="vmc", total_s=60, feed_s=40, rapid_s=5, tool_changes=2, tool_change_s=10, dwell_s=5)
DAY = ("2022-08-08T00:00:00Z", "2022-08-09T00:00:00Z")
# The recording's four programs, in the order they ran, with the durations measured from its EXECUTION item.
OKUMA_RUNS = [("IMTS-2022-1E-mm.MIN", 605.0), ("IMTS-2022-2-HOB.MIN", 186.7), ("IMTS-2022-3-TRAN.MIN", 16.8),
              ("IMTS-2022-4B-mm.MIN", 548.9)]


def states(*points: tuple[float, str | None]) -> list[tuple[int, str | None]]:
    return [(round(t * S), v) for t, v in points]


def summary(runs: list[Run]) -> list[tuple[Any, ...]]:
    return [(r.program, r.start / S, None if r.end is None else r.end / S, r.completed, r.end_state, r.paused_s)
            for r in runs]


def test_the_rules_start_end_pause_and_abandon_runs() -> None:
    execution = states((0, "READY"), (10, "ACTIVE"), (20, "FEED_HOLD"), (25, "ACTIVE"), (40, "PROGRAM_COMPLETED"),
                       (41, "READY"), (50, "ACTIVE"), (55, "INTERRUPTED"), (60, "READY"),  # reset mid-program
                       (70, "ACTIVE"), (75, None),  # the agent lost the control
                       (80, "ACTIVE"), (95, "STOPPED"),
                       (100, "ACTIVE"), (120, "ACTIVE"))  # still running at the end of the series
    program = states((0, "O1000"), (70, "O2000"), (80, "O2000"), (90, "O3000"), (100, " O3000 "))
    assert summary(find_runs("m1", execution, program)) == [
        ("O1000", 10, 40, True, "PROGRAM_COMPLETED", 5.0),
        ("O1000", 50, 60, False, "READY", 5.0),
        ("O2000", 70, 75, False, "UNAVAILABLE", 0.0),
        ("O2000", 80, 90, False, "PROGRAM_CHANGED", 0.0),
        ("O3000", 90, 95, False, "STOPPED", 0.0),  # the machine was running when O3000 was called
        ("O3000", 100, None, False, None, 0.0),
    ]


def test_a_program_chained_while_active_is_a_run_of_its_own() -> None:
    # a schedule: O1000 calls O2000 at its end, EXECUTION stays ACTIVE; a program picked in a feed hold is not run
    execution = states((0, "READY"), (10, "ACTIVE"), (60, "PROGRAM_COMPLETED"), (70, "ACTIVE"), (80, "FEED_HOLD"),
                       (90, "READY"))
    program = states((0, "O1000"), (30, "O2000"), (85, "O3000"))
    assert summary(find_runs("m1", execution, program)) == [
        ("O1000", 10, 30, False, "PROGRAM_CHANGED", 0.0),
        ("O2000", 30, 60, True, "PROGRAM_COMPLETED", 0.0),
        ("O2000", 70, 85, False, "PROGRAM_CHANGED", 5.0),
    ]


def test_a_run_open_when_a_range_begins_is_read_back_to_the_state_before_it() -> None:
    newest_first = states((60, "ACTIVE"), (55, "FEED_HOLD"), (50, "ACTIVE"), (40, "READY"), (10, "ACTIVE"))
    assert open_run_from(newest_first) == (40 * S, True)
    assert open_run_from(states((60, "WAIT"), (50, None), (10, "ACTIVE"))) == (50 * S, True)  # UNAVAILABLE ends
    assert open_run_from(states((60, "ACTIVE"), (55, "INTERRUPTED"))) == (55 * S, False)  # began before these
    assert open_run_from(states((60, "PROGRAM_COMPLETED"), (50, "ACTIVE"))) is None  # no run open at the start
    assert open_run_from(states((60, None))) is None
    assert open_run_from([]) is None


def test_a_run_links_by_file_name_then_number_then_stem_and_prefers_the_machines_own_program() -> None:
    def cand(sha: str, path: str, number: str | None, device: str | None = None, edge: str = "e1",
             first: float = 0) -> LinkCandidate:
        name = path.rsplit("/", 1)[-1].lower()
        return LinkCandidate(edge, sha, device, path, number, name, name.rsplit(".", 1)[0],
                             number.lstrip("O").lstrip("0") if number else None, ESTIMATE, round(first * S),
                             round(first * S))
    candidates = [cand("a", "x/PART.MIN", None), cand("b", "y/part.nc", None), cand("c", "z/O0123.nc", "O0123"),
                  cand("d", "w/O123.NC", "O123", device="m1"), cand("e", "v/O123.NC", "O123", edge="e2"),
                  cand("f", "old/PART.MIN", None, first=500)]
    runs = [Run("m1", value, 100 * S, 200 * S, True, "PROGRAM_COMPLETED") for value in
            ("PART.MIN", "C:\\NC\\part.NC", "O123", "123", "PART", "NOPE")]
    linked = link_runs(runs, candidates, {"e1"})
    assert [r.sha256 for r in linked] == ["a", "b", "d", "d", "a", None]
    calibration = calibrate("m1", linked)
    assert calibration is not None and calibration.fit.method == "factor" and calibration.runs == 5
    assert calibration.apply(ESTIMATE) == pytest.approx(100.0)  # every run took 100 s for an estimate of 60 s


async def load_okuma(storage: Storage, programs: list[dict[str, Any]]) -> None:
    model, _ = okuma_model()
    frames = [(k + 1, TelemetryFrame.model_validate(f)) for k, f in enumerate(okuma_frames())]
    docs, _ = read_documents([document(1, "mtconnect_device", model["uuid"], model),
                              *(program_doc(k + 2, p) for k, p in enumerate(programs))])
    await storage.ingest("edge-1", frames, None, 0, documents=docs)


def okuma_programs() -> list[dict[str, Any]]:
    return [program(f"okuma/{name}", estimate_s=round(seconds / 1.25, 1)) for name, seconds in OKUMA_RUNS]


def epoch(iso: str) -> int:
    return round(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * S)


async def test_the_okuma_recording_has_four_completed_runs_linked_and_calibrated(storage: Storage) -> None:
    programs = okuma_programs()
    await load_okuma(storage, programs)
    found = await device_runs(storage, "OKUMA", epoch(DAY[0]), epoch(DAY[1]))
    assert (found.execution_key, found.program_key, found.truncated) == ("Lpexecution", "Lpprogram", False)
    assert [(r.program, round(r.duration_s or 0, 1), r.completed, r.end_state) for r in found.runs] == [
        (name, seconds, True, "PROGRAM_COMPLETED") for name, seconds in OKUMA_RUNS]
    assert [r.sha256 for r in found.runs] == [p["sha256"] for p in programs]
    assert found.calibration is not None and found.calibration.runs == 4
    assert found.calibration.fit.weights[0] == pytest.approx(1.25, rel=1e-3)
    runs, calibrations, _ = await runs_of_program(storage, programs[1]["sha256"], ["edge-1"], [], epoch(DAY[0]),
                                                  epoch(DAY[1]))
    assert [round(r.duration_s or 0, 1) for r in runs] == [186.7] and set(calibrations) == {"OKUMA"}
    with pytest.raises(BadQuery):
        await device_runs(storage, "press-1", epoch(DAY[0]), epoch(DAY[1]))


async def test_runs_over_http_show_the_calibrated_estimate_next_to_the_raw_one(api: Api) -> None:
    await load_okuma(api.ctx.storage, okuma_programs())
    resp = await api.client.get("/api/v1/devices/OKUMA/runs", params={"from": DAY[0], "to": DAY[1]},
                                headers=auth(api.viewer))
    assert resp.status_code == 200, resp.text
    page = resp.json()
    first = page["runs"][0]
    assert (first["program"], round(first["duration_s"], 1), first["estimate_s"]) == ("IMTS-2022-1E-mm.MIN", 605.0,
                                                                                       484.0)
    assert first["calibrated_s"] == pytest.approx(605.0, rel=0.01)
    assert page["calibrations"][0]["device"] == "OKUMA" and page["calibrations"][0]["runs"] == 4
    sha = first["sha256"]
    resp = await api.client.get(f"/api/v1/programs/{sha}/runs", params={"from": DAY[0], "to": DAY[1]},
                                headers=auth(api.viewer))
    assert [round(r["duration_s"], 1) for r in resp.json()["runs"]] == [605.0]
    # A window without runs, and the default window (the last 30 days: the recording is older).
    assert (await api.client.get("/api/v1/devices/OKUMA/runs", headers=auth(api.viewer))).json()["runs"] == []
    resp = await api.client.get("/api/v1/devices/OKUMA/runs", params={"from": DAY[1], "to": DAY[0]},
                                headers=auth(api.viewer))
    assert resp.status_code == 400
    assert (await api.sync({**batch("edge-1", []), "documents": []})).status_code == 200


async def test_the_main_program_is_followed_not_the_active_subprogram(storage: Storage) -> None:
    """A control reporting both PROGRAM subType ACTIVE (the subprogram being run) and MAIN: runs follow MAIN, the
    harvested file, even when the model lists ACTIVE first (else every subprogram call would end a run)."""
    def item(key: str, kind: str, sub: str | None = None) -> dict[str, Any]:
        return {"id": key, "key": key, "name": None, "category": "EVENT", "type": kind, "sub_type": sub,
                "units": None}
    model = {"uuid": "mazak-1", "name": "Mazak", "device_id": "mazak", "instance_id": 1,
             "items": [item("activeprog", "PROGRAM", "ACTIVE"), item("execution", "EXECUTION"),
                       item("program", "PROGRAM", "MAIN")]}
    docs, _ = read_documents([document(1, "mtconnect_device", "mazak-1", model)])
    t0 = epoch(DAY[0]) / S + 3600
    frames = [TelemetryFrame(ts=t0 + t, device_id="mazak", sensors=values) for t, values in (
        (0, {"program": "O1000", "activeprog": "O1000", "execution": "READY"}), (10, {"execution": "ACTIVE"}),
        (20, {"activeprog": "O9001"}), (30, {"activeprog": "O1000"}), (40, {"execution": "PROGRAM_COMPLETED"}))]
    await storage.ingest("edge-1", list(enumerate(frames, 1)), None, 0, documents=docs)
    found = await device_runs(storage, "mazak", epoch(DAY[0]), epoch(DAY[1]))
    assert found.program_key == "program"
    assert [(r.program, r.duration_s, r.completed) for r in found.runs] == [("O1000", 30.0, True)]


async def test_a_run_open_when_the_range_begins_is_shown_from_its_start(storage: Storage) -> None:
    """Asking for the last hour while a three-hour program runs: the run is there, from its real start, with its
    pauses and its program; the runs that ended before the range are not."""
    model, _ = okuma_model("lathe")
    docs, _ = read_documents([document(1, "mtconnect_device", model["uuid"], model)])
    t0 = epoch(DAY[0]) / S + 3600
    points = [(0, {"Lpprogram": "O1000", "Lpexecution": "READY"}), (10, {"Lpexecution": "ACTIVE"}),
              (20, {"Lpexecution": "PROGRAM_COMPLETED"}), (30, {"Lpprogram": "O2000"}),
              (40, {"Lpexecution": "ACTIVE"}), (50, {"Lpexecution": "FEED_HOLD"}), (60, {"Lpexecution": "ACTIVE"}),
              (10_840, {"Lpexecution": "PROGRAM_COMPLETED"}), (10_900, {"Lpexecution": "ACTIVE"})]
    frames = [TelemetryFrame(ts=t0 + t, device_id="lathe", sensors=values) for t, values in points]
    await storage.ingest("edge-1", list(enumerate(frames, 1)), None, 0, documents=docs)
    hour = round((t0 + 7200) * S), round((t0 + 10_870) * S)
    found = await device_runs(storage, "lathe", *hour)
    assert [(r.program, r.start / S - t0, r.duration_s, r.paused_s, r.completed) for r in found.runs] == [
        ("O2000", 40, 10_800, 10, True)]
    assert not found.truncated
    later = await device_runs(storage, "lathe", round((t0 + 10_950) * S), round((t0 + 11_000) * S))
    assert [(r.program, r.start / S - t0, r.end) for r in later.runs] == [("O2000", 10_900, None)]
    # a run that changed state more often before the range than is read back: from the first ACTIVE read, cut
    cut = await device_runs(storage, "lathe", *hour, lookback=2)
    assert [(r.program, r.start / S - t0) for r in cut.runs] == [("O2000", 60)] and cut.truncated
    quiet = await device_runs(storage, "lathe", round((t0 + 25) * S), round((t0 + 35) * S))
    assert quiet.runs == [] and not quiet.truncated


async def test_series_cut_at_the_point_limit_are_cut_at_one_instant(storage: Storage) -> None:
    """When the PROGRAM series has more points than are read, the runs after its cut are not linked to the last
    program read (O3000 here) while O4000 was loaded: every series stops where the first one was cut."""
    model, _ = okuma_model("lathe")
    docs, _ = read_documents([document(1, "mtconnect_device", model["uuid"], model)])
    t0 = epoch(DAY[0]) / S + 3600
    points = [(0, {"Lpprogram": "O1000"}), (1, {"Lpexecution": "ACTIVE"}), (2, {"Lpexecution": "PROGRAM_COMPLETED"}),
              (3, {"Lpprogram": "O1500"}), (5, {"Lpprogram": "O2000"}), (6, {"Lpprogram": "O3000"}),
              (7, {"Lpprogram": "O4000"}), (10, {"Lpexecution": "ACTIVE"}), (20, {"Lpexecution": "PROGRAM_COMPLETED"})]
    frames = [TelemetryFrame(ts=t0 + t, device_id="lathe", sensors=values) for t, values in points]
    await storage.ingest("edge-1", list(enumerate(frames, 1)), None, 0, documents=docs)
    whole = await device_runs(storage, "lathe", epoch(DAY[0]), epoch(DAY[1]))
    assert [(r.program, r.duration_s) for r in whole.runs] == [("O1000", 1.0), ("O4000", 10.0)]
    assert not whole.truncated
    cut = await device_runs(storage, "lathe", epoch(DAY[0]), epoch(DAY[1]), max_points=4)
    assert [(r.program, r.duration_s) for r in cut.runs] == [("O1000", 1.0)] and cut.truncated


async def test_a_programs_runs_read_one_budget_of_points_for_all_machines(storage: Storage) -> None:
    """An edge with many machines: the runs of a program read at most about ``max_points`` of each series for
    them all, and say the answer is cut."""
    docs = []
    for k, name in enumerate(("lathe-1", "lathe-2", "lathe-3")):
        model, _ = okuma_model(name)
        uuid = f"{model['uuid']}-{k}"
        docs.append(document(k + 1, "mtconnect_device", uuid, {**model, "uuid": uuid}))
    part = program("shop/O5000.nc", number="O5000")
    docs.append(program_doc(9, part))
    read, _ = read_documents(docs)
    t0 = epoch(DAY[0]) / S + 3600
    frames = [TelemetryFrame(ts=t0 + t, device_id=name, sensors=values) for name in ("lathe-1", "lathe-2", "lathe-3")
              for t, values in ((0, {"Lpprogram": "O5000"}), (1, {"Lpexecution": "ACTIVE"}),
                                (3, {"Lpexecution": "PROGRAM_COMPLETED"}))]
    await storage.ingest("edge-1", list(enumerate(frames, 1)), None, 0, documents=read)
    runs, _, cut = await runs_of_program(storage, part["sha256"], ["edge-1"], [], epoch(DAY[0]), epoch(DAY[1]))
    assert [r.device for r in runs] == ["lathe-1", "lathe-2", "lathe-3"] and not cut
    runs, _, cut = await runs_of_program(storage, part["sha256"], ["edge-1"], [], epoch(DAY[0]), epoch(DAY[1]),
                                         max_points=2)
    assert [r.device for r in runs] == ["lathe-1", "lathe-2"] and cut  # 3 points each: 6 of a budget of 3 x 2
