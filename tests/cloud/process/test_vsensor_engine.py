"""Virtual sensors end to end: the real app, real sync batches, derived points read back through history."""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from cloud.process.bindings import BindingSpec
from cloud.process.engine import now_us
from cloud.process.runner import downstream
from tests.cloud.apiclient import T0, Api, auth, batch, make_api
from tests.cloud.pg import fresh_pg_database

MODELS = {"lag": "tests.cloud.process.lagmodel:FirstOrderLag", "raising": "tests.cloud.process.lagmodel:Raising",
          "off-the-loop": "tests.cloud.process.lagmodel:OffTheLoop",
          "malformed": "tests.cloud.process.lagmodel:Malformed"}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def api(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Api]:
    database = {}
    if request.param == "postgres":
        database = {"url": await fresh_pg_database(request.getfixturevalue("pg_server"))}
    async with make_api(tmp_path, database=database,
                        process={"models": MODELS, "max_bindings_per_device": 3}) as client:
        yield client


def frame(t: float, device: str = "press-1", **sensors: Any) -> dict[str, Any]:
    return {"ts": T0 + t, "device_id": device, "sensors": sensors, "metrics": {}, "status": "ok"}


async def send(api: Api, seq0: int, frames: list[dict[str, Any]]) -> None:
    r = await api.sync(batch("edge-1", [(seq0 + k, f) for k, f in enumerate(frames)]))
    assert r.status_code == 200, r.text


async def define(api: Api, body: dict[str, Any], expect: int = 201) -> dict[str, Any]:
    r = await api.client.post("/api/v1/process/bindings", json=body, headers=auth(api.operator))
    assert r.status_code == expect, r.text
    return r.json()  # type: ignore[no-any-return]


async def wait_points(api: Api, name: str, count: int) -> list[dict[str, Any]]:
    async with asyncio.timeout(20):
        while True:
            r = await api.client.get(f"/api/v1/process/bindings/{name}/points", headers=auth(api.viewer))
            assert r.status_code == 200, r.text
            if len(r.json()) >= count:
                return r.json()  # type: ignore[no-any-return]
            await asyncio.sleep(0.05)


async def history(api: Api, field: str) -> list[list[Any]]:
    r = await api.client.get("/api/v1/twin/history", params={"device": "press-1", "fields": field,
                                                              "start": T0 - 10, "stop": T0 + 10_000},
                             headers=auth(api.viewer))
    assert r.status_code == 200, r.text
    series = {s["field"]: s["points"] for s in r.json()["series"]}
    return series.get(field, [])


async def test_formula_power_is_stored_as_a_series_of_the_device(api: Api) -> None:
    await send(api, 1, [frame(0, V=230.0, I=2.0, pf=0.9)])
    await define(api, {"name": "power", "device": "press-1",
                       "spec": {"kind": "formula", "expression": "V * I * pf / 1000", "output": "P_kW"}})
    await define(api, {"name": "ohm", "device": "press-1",
                       "spec": {"kind": "formula", "expression": "V / I", "output": "R"}})
    # pf is held from its last reading; I = 0 makes V / I a flagged point, never a stored value.
    await send(api, 2, [frame(1, V=230.0, I=4.0, pf=0.5), frame(2, V=230.0, I=0.0)])
    points = await wait_points(api, "power", 3)
    by_ts = {p["ts"]: p for p in points}
    assert by_ts[T0]["value"] == pytest.approx(0.414)
    assert by_ts[T0 + 1]["value"] == pytest.approx(0.46)
    assert by_ts[T0 + 2]["value"] == 0.0
    assert by_ts[T0 + 1]["model"] == "formula" and by_ts[T0 + 1]["watermark"] == T0 + 1
    stored = await history(api, "P_kW")
    assert [round(v, 6) for _, v in stored] == [0.414, 0.46, 0.0]
    ohm = await wait_points(api, "ohm", 3)
    assert ohm[-1]["value"] is None and ohm[-1]["flag"] == "division by zero"
    assert [v for _, v in await history(api, "R")] == [115.0, 57.5]


async def test_bad_bindings_are_refused_with_the_key_and_value(api: Api) -> None:
    await send(api, 1, [frame(0, p=2.0, T=50.0, shot=0)])
    cases = [
        ({"expression": "__import__('os')", "output": "x"}, "spec.expression", "not allowed"),
        ({"expression": "q * 2", "output": "x"}, "spec.expression", "no field 'q'"),
        ({"expression": "p * 2", "output": "T"}, "spec.output", "sends itself"),
        ({"expression": "pp * 2", "output": "x", "inputs": {"pp": {"sensor": "p", "unit": "bar", "to": "degC"}}},
         "spec.inputs.pp.unit", "cannot be converted"),
        ({"expression": "p * 2", "output": "x", "inputs": {"p": {"sensor": "nope"}}}, "spec.inputs.p.sensor",
         "no field 'nope'"),
    ]
    for spec, path, words in cases:
        body = await define(api, {"name": "bad", "device": "press-1", "spec": {"kind": "formula", **spec}}, 422)
        assert any(d["path"] == path and words in d["message"] for d in body["detail"]), body
    body = await define(api, {"name": "m", "device": "press-1", "spec": {
        "kind": "model", "model": "lag", "start_on": "shot", "inputs": {"T_mould": {"sensor": "p", "unit": "bar"}}}},
        422)
    assert any("cannot be converted into 'degC'" in d["message"] for d in body["detail"]), body
    body = await define(api, {"name": "m", "device": "press-1", "spec": {  # a run opened by its own output
        "kind": "model", "model": "lag", "start_on": "m.T_core",
        "inputs": {"T_mould": {"sensor": "T", "unit": "degC"}}}}, 422)
    assert [d["path"] for d in body["detail"]] == ["spec.start_on"], body
    assert "no field 'm.T_core'" in body["detail"][0]["message"]
    r = await api.client.post("/api/v1/process/bindings", json={"name": "x", "device": "ghost", "spec": {
        "kind": "formula", "expression": "1", "output": "y"}}, headers=auth(api.operator))
    assert r.status_code == 404 and "ghost" in r.text
    r = await api.client.post("/api/v1/process/bindings", json={"name": "x", "device": "press-1", "spec": {
        "kind": "formula", "expression": "p", "output": "y"}}, headers=auth(api.viewer))
    assert r.status_code == 403
    for k in range(3):
        await define(api, {"name": f"f{k}", "device": "press-1",
                           "spec": {"kind": "formula", "expression": "p", "output": f"y{k}"}})
    body = await define(api, {"name": "f9", "device": "press-1",
                              "spec": {"kind": "formula", "expression": "p", "output": "y9"}}, 422)
    assert "max_bindings_per_device is 3" in body["detail"][0]["message"]


LAG = {"name": "core", "device": "press-1", "spec": {
    "kind": "model", "model": "lag", "start_on": "shot", "parameters": {"tau_s": 20.0, "t0_degC": 20.0},
    "solver": {"backend": "lsoda", "rtol": 1e-8, "atol": 1e-8},
    "inputs": {"T_mould": {"sensor": "mould_F", "unit": "degF"}}}}


async def test_model_run_matches_the_closed_form_and_its_replay(api: Api) -> None:
    await send(api, 1, [frame(0, mould_F=176.0, shot=0)])  # 80 degC
    await define(api, LAG)
    await send(api, 2, [frame(1, mould_F=176.0, shot=1)])  # the shot opens a run at T0 + 1
    # Out of order within a batch: processed in time order.
    await send(api, 3, [frame(1 + t, mould_F=176.0) for t in (10, 5, 20, 40)])
    points = await wait_points(api, "core", 5)
    values = {round(p["ts"] - T0 - 1): p["value"] for p in points}
    for t in (5, 10, 20, 40):
        assert values[t] == pytest.approx(80 + (20 - 80) * math.exp(-t / 20), abs=1e-4)
    assert points[0]["backend"] == "lsoda" and points[0]["version"] == "1.0" and points[0]["rtol"] == 1e-8
    # A late reading (older than the watermark) does not rewrite what is derived.
    await send(api, 4, [frame(1 + 30, mould_F=32.0), frame(1 + 50, mould_F=176.0)])
    points = await wait_points(api, "core", 6)
    assert {round(p["ts"] - T0 - 1): p["value"] for p in points}[40] == values[40]
    # Replay: the same values from the stored readings (the late one included, so from 31 s on they differ).
    r = await api.client.post("/api/v1/process/test", json={"name": "core", "start": str(T0), "stop": str(T0 + 42)},
                              headers=auth(api.operator))
    assert r.status_code == 200, r.text
    replay = {round(p["ts"] - T0 - 1): p["value"] for p in r.json()["points"] if p["field"] == "core.T_core"}
    for t in (5, 10, 20):
        assert replay[t] == pytest.approx(values[t], abs=1e-9)
    assert replay[40] != pytest.approx(values[40], abs=1e-3)  # the late 0 degC reading counts in a replay
    stored = await history(api, "core.T_core")
    assert len(stored) == 6


async def test_a_replay_starting_mid_shot_finds_the_shot_start_and_reproduces_its_points(api: Api) -> None:
    await send(api, 1, [frame(0, mould_F=176.0, shot=0)])
    await define(api, {**LAG, "spec": {**LAG["spec"], "max_run_s": 60.0}})
    await send(api, 2, [frame(1, mould_F=176.0, shot=1)] + [frame(1 + t, mould_F=176.0) for t in (5, 10, 20)])
    live = {p["ts"]: p["value"] for p in await wait_points(api, "core", 4)}
    r = await api.client.post("/api/v1/process/test", json={"name": "core", "start": str(T0 + 8),
                                                             "stop": str(T0 + 30)}, headers=auth(api.operator))
    assert r.status_code == 200, r.text
    replay = {p["ts"]: p["value"] for p in r.json()["points"]}
    assert sorted(replay) == [T0 + 11, T0 + 21]  # the shot opened at T0 + 1, before the range
    for ts, value in replay.items():
        assert value == pytest.approx(live[ts], abs=1e-9)


async def test_a_replay_starting_inside_a_tumbling_window_reproduces_its_point(api: Api) -> None:
    await send(api, 1, [frame(t, x=float(t)) for t in range(30)])
    await define(api, {"name": "avg", "device": "press-1", "spec": {
        "kind": "formula", "expression": "mean(x)", "output": "x_mean", "window": {"kind": "tumbling", "seconds": 10}}})
    live = await wait_points(api, "avg", 2)
    assert [(p["ts"] - T0, p["value"]) for p in live] == [(10, 4.5), (20, 14.5)]
    r = await api.client.post("/api/v1/process/test", json={"name": "avg", "start": str(T0 + 15),
                                                             "stop": str(T0 + 30)}, headers=auth(api.operator))
    assert [(p["ts"] - T0, p["value"]) for p in r.json()["points"]] == [(20, 14.5)]  # all of 10..19, not 15..19


async def test_a_replay_holds_the_values_read_before_its_range_as_the_live_run_did(api: Api) -> None:
    """power = V * I: the voltage is read once, the current every second. Live, each I uses the last V; a replay
    from T0 + 5 must too (V's reading is older than the range), not flag every point for a missing V."""
    await send(api, 1, [frame(0, V=230.0, I=1.0)])
    await define(api, {"name": "power", "device": "press-1", "spec": {
        "kind": "formula", "expression": "V * I", "output": "P", "trigger": ["I"]}})
    await send(api, 2, [frame(t, I=float(t)) for t in range(1, 10)])
    live = {p["ts"]: (p["value"], p["flag"]) for p in await wait_points(api, "power", 10)}
    r = await api.client.post("/api/v1/process/test", json={"name": "power", "start": str(T0 + 5),
                                                             "stop": str(T0 + 10)}, headers=auth(api.operator))
    assert r.status_code == 200, r.text
    replay = {p["ts"]: (p["value"], p["flag"]) for p in r.json()["points"]}
    assert replay == {ts: live[ts] for ts in live if ts >= T0 + 5}
    assert replay[T0 + 9] == (230.0 * 9, None)


async def test_a_replay_does_not_open_a_run_on_a_shot_flag_held_from_before_it(api: Api) -> None:
    """The shot flag is 1 for the whole shot and sent every few seconds; a shot that ended before the range must
    not be taken to start at the first flag the replay reads."""
    await send(api, 1, [frame(0, mould_F=176.0, shot=0)])
    await define(api, {**LAG, "spec": {**LAG["spec"], "max_run_s": 10.0}})
    await send(api, 2, [frame(1, mould_F=176.0, shot=1)] + [frame(t, mould_F=176.0, shot=1) for t in (5, 9, 13, 17)])
    live = {p["ts"]: (p["value"], p["flag"]) for p in await wait_points(api, "core", 4)}
    assert sorted(live) == [T0 + 1, T0 + 5, T0 + 9, T0 + 13]  # closed at 13: older than max_run_s
    r = await api.client.post("/api/v1/process/test", json={"name": "core", "start": str(T0 + 15),
                                                             "stop": str(T0 + 20)}, headers=auth(api.operator))
    assert r.status_code == 200, r.text
    assert r.json()["points"] == []  # as live: no run after 13 (not one opened at 5 and closed at 17)


async def test_a_model_that_raises_flags_its_points(api: Api) -> None:
    await send(api, 1, [frame(0, mould_F=176.0, shot=0)])
    await define(api, {**LAG, "name": "broken", "spec": {**LAG["spec"], "model": "raising"}})
    await send(api, 2, [frame(1, mould_F=176.0, shot=1), frame(2, mould_F=176.0)])
    points = await wait_points(api, "broken", 2)
    assert all(p["value"] is None and "the model broke" in p["flag"] for p in points)
    r = await api.client.get("/api/v1/process/bindings/broken", headers=auth(api.viewer))
    assert r.json()["flagged"] == 2


async def test_a_model_answering_a_malformed_series_flags_its_points_and_the_others_run_on(api: Api) -> None:
    await send(api, 1, [frame(0, mould_F=176.0, shot=0, x=1.0)])
    await define(api, {**LAG, "name": "misfit", "spec": {**LAG["spec"], "model": "malformed"}})
    await define(api, {"name": "dbl", "device": "press-1",
                       "spec": {"kind": "formula", "expression": "x * 2", "output": "x2"}})
    await send(api, 2, [frame(1, mould_F=176.0, shot=1, x=2.0), frame(2, mould_F=176.0, x=3.0)])
    assert [p["value"] for p in await wait_points(api, "dbl", 3)] == [2.0, 4.0, 6.0]
    points = await wait_points(api, "misfit", 2)
    assert all(p["value"] is None and "malformed" in p["flag"] and "T_core" in p["flag"] for p in points), points


async def test_a_model_solves_in_a_worker_thread_never_on_the_event_loop(api: Api) -> None:
    # a solve takes milliseconds to seconds (and a catch-up one per reading): on the loop it would stall every
    # request and the live feed meanwhile
    await send(api, 1, [frame(0, mould_F=176.0, shot=0)])
    await define(api, {**LAG, "name": "threaded", "spec": {**LAG["spec"], "model": "off-the-loop"}})
    await send(api, 2, [frame(1, mould_F=176.0, shot=1), frame(21, mould_F=176.0)])
    points = await wait_points(api, "threaded", 2)
    assert [p["flag"] for p in points] == [None, None]
    assert points[-1]["value"] == pytest.approx(80 + (20 - 80) * math.exp(-1), abs=1e-4)
    r = await api.client.post("/api/v1/process/test", json={"name": "threaded", "start": str(T0), "stop": str(T0 + 30)},
                              headers=auth(api.operator))
    assert [p["flag"] for p in r.json()["points"]] == [None, None]


async def test_live_bindings_run_on_while_every_shared_worker_thread_is_busy(api: Api) -> None:
    # optimizations, model uploads and replays share the default worker threads (a few per core); with all of
    # them busy for a minute, the live virtual sensors must still keep up
    await send(api, 1, [frame(0, x=1.0)])
    await define(api, {"name": "dbl", "device": "press-1",
                       "spec": {"kind": "formula", "expression": "x * 2", "output": "x2"}})
    await wait_points(api, "dbl", 1)
    release = threading.Event()
    loop = asyncio.get_running_loop()
    busy = [loop.run_in_executor(None, release.wait) for _ in range(64)]  # more than the default pool holds
    try:
        await send(api, 2, [frame(1, x=2.0)])
        assert [p["value"] for p in await wait_points(api, "dbl", 2)] == [2.0, 4.0]
    finally:
        release.set()
        await asyncio.gather(*busy)


async def test_an_output_never_triggers_its_own_binding(api: Api) -> None:
    await send(api, 1, [frame(0, x=1.0)])
    await define(api, {"name": "echo", "device": "press-1",
                       "spec": {"kind": "formula", "expression": "x * 2", "output": "x2", "trigger": ["*"]}})
    await send(api, 2, [frame(t, x=float(t)) for t in range(1, 6)])
    await wait_points(api, "echo", 6)
    await send(api, 7, [frame(6, x=6.0)])
    points = await wait_points(api, "echo", 7)
    await asyncio.sleep(0.2)
    r = await api.client.get("/api/v1/process/bindings/echo", headers=auth(api.viewer))
    assert r.json()["points"] == 7 == len(points)  # one per reading of x, none for its own output


async def test_enable_disable_and_list(api: Api) -> None:
    await send(api, 1, [frame(0, x=1.0)])
    await define(api, {"name": "dbl", "device": "press-1",
                       "spec": {"kind": "formula", "expression": "x * 2", "output": "x2"}})
    await wait_points(api, "dbl", 1)
    r = await api.client.post("/api/v1/process/bindings/dbl/disable", headers=auth(api.operator))
    assert r.status_code == 200 and r.json()["enabled"] is False
    await send(api, 2, [frame(1, x=2.0)])
    r = await api.client.post("/api/v1/process/bindings/dbl/enable", headers=auth(api.operator))
    assert r.json()["enabled"] is True
    points = await wait_points(api, "dbl", 2)  # caught up from its watermark
    assert [p["value"] for p in points] == [2.0, 4.0]
    r = await api.client.get("/api/v1/process/bindings", headers=auth(api.viewer))
    assert [b["name"] for b in r.json()] == ["dbl"]
    r = await api.client.post("/api/v1/process/bindings/nope/enable", headers=auth(api.operator))
    assert r.status_code == 404


async def test_a_loop_through_another_binding_is_refused_and_cut_if_defined_anyway(api: Api) -> None:
    """a = 2 x; b = a + y; then a also reading b (triggered by x and b): a loop. Refused when defined; stored
    anyway (as two replicas defining its halves at once could), a is still derived at the readings of x only.
    Without the guard, each b dated at a reading of y (newer than a's watermark) would wake a again: an a
    derived from its own earlier value, one more in every batch."""
    await send(api, 1, [frame(0, x=1.0, y=0.0)])
    await define(api, {"name": "double", "device": "press-1",
                       "spec": {"kind": "formula", "expression": "x * 2", "output": "a"}})
    await define(api, {"name": "plus", "device": "press-1",
                       "spec": {"kind": "formula", "expression": "a + y", "output": "b"}})
    await wait_points(api, "plus", 1)
    looped = {"name": "double", "device": "press-1", "spec": {
        "kind": "formula", "expression": "x * 2", "output": "a", "inputs": {"b": {"sensor": "b"}},
        "trigger": ["x", "b"]}}
    r = await api.client.post("/api/v1/process/bindings", params={"replace": "true"}, json=looped,
                              headers=auth(api.operator))
    assert r.status_code == 422 and "a loop" in r.text, r.text
    # The refusal bypassed at our own seam: the definition stored directly, as a second replica would.
    ctx = api.app.state.ctx
    spec = BindingSpec.model_validate(looped).model_dump(mode="json")
    await ctx.storage.put_binding("double", "press-1", spec, "test", now_us(), replace=True, max_per_device=3)
    rows = await ctx.storage.bindings("press-1")
    assert downstream({"a"}, [r for r in rows if r.name != "double"], ctx.engine.models) == {"a", "b"}
    # x and y take turns, so every b but those at x's readings is dated after a's watermark
    await send(api, 2, [frame(1, x=1.0), frame(2, y=10.0), frame(3, x=3.0), frame(4, y=20.0)])
    await wait_points(api, "plus", 5)
    await send(api, 6, [frame(5, x=5.0), frame(6, y=30.0)])
    plus = await wait_points(api, "plus", 7)
    assert [(p["ts"] - T0, p["value"]) for p in plus] == [(0, 2.0), (1, 2.0), (2, 12.0), (3, 16.0), (4, 26.0),
                                                         (5, 30.0), (6, 40.0)]
    assert await ctx.engine.catch_up("press-1") == 0  # nothing left to derive: no loop
    double = await wait_points(api, "double", 4)
    assert [(p["ts"] - T0, p["value"]) for p in double] == [(0, 2.0), (1, 2.0), (3, 6.0), (5, 10.0)]
    assert len(await history(api, "a")) == 4


async def test_a_measured_field_named_like_a_derived_output_is_refused_or_dropped(api: Api) -> None:
    # defined over a field the device sends: refused, naming the key
    await send(api, 1, [frame(0, x=1.0, x3=5.0)])
    body = await define(api, {"name": "tri", "device": "press-1",
                              "spec": {"kind": "formula", "expression": "x * 3", "output": "x3"}}, 422)
    assert body["detail"] == [{"path": "spec.output", "message": "'x3' is a field the device sends itself; name "
                                                                 "the output otherwise"}]
    # a field the device starts sending after the binding is defined: the binding owns it
    await define(api, {"name": "dbl", "device": "press-1",
                       "spec": {"kind": "formula", "expression": "x * 2", "output": "x2"}})
    r = await api.sync(batch("edge-1", [(2, frame(1, x=2.0, x2=99.0, y=7.0)), (3, frame(2, x2=98.0))]))
    assert r.status_code == 200 and r.json()["stored"] == 2 and r.json()["rejected"] == [], r.text
    assert [p["value"] for p in await wait_points(api, "dbl", 2)] == [2.0, 4.0]
    assert [v for _, v in await history(api, "x2")] == [2.0, 4.0]  # derived only: no 99, no 98
    assert [v for _, v in await history(api, "y")] == [7.0]  # the rest of the frame is stored
    metrics = (await api.client.get("/metrics", headers=auth(api.viewer))).text
    assert 'twincloud_sync_values_dropped_total{edge="edge-1",reason="derived_field",replica=' in metrics
    assert [line.split()[-1] for line in metrics.splitlines()
            if line.startswith("twincloud_sync_values_dropped_total{")] == ["2.0"]
    # what the sync path reads to know the owned fields: the definitions, never the states
    ctx = api.app.state.ctx
    [full] = [r for r in await ctx.storage.bindings("press-1") if r.name == "dbl"]
    [light] = [r for r in await ctx.storage.bindings("press-1", with_state=False) if r.name == "dbl"]
    assert full.state and light.state == {} and light.spec == full.spec and light.rev == full.rev
