"""Over HTTP: an edge writes only its own devices, frames from the future are refused, admins move devices."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cloud.app import create_app
from cloud.identities import add_edge, add_user
from shared.codec import encode_obj
from shared.frame import TelemetryFrame
from tests.cloud.apiclient import Api, auth, batch, config_for, make_api, wire
from tests.cloud.pg import fresh_pg_database

STATE = "/api/v1/twin/{}/state"


def at(ts: float, device: str = "press-1", temp: float = 20.0) -> dict[str, Any]:
    return TelemetryFrame(ts=ts, device_id=device, sensors={"temp": temp}).to_wire()


async def state(api: Api, device: str) -> dict[str, Any]:
    return (await api.client.get(STATE.format(device), headers=auth(api.viewer))).json()  # type: ignore[no-any-return]


async def edge_row(api: Api, name: str) -> dict[str, Any]:
    edges = (await api.client.get("/api/v1/edges", headers=auth(api.viewer))).json()
    return next(e for e in edges if e["name"] == name)  # type: ignore[no-any-return]


async def test_another_edges_device_is_refused_with_its_reason_and_the_real_reading_is_stored(api: Api) -> None:
    assert (await api.sync(batch("edge-2", [(1, wire(0, device="dev-b"))]), token=api.other_edge)).json()["stored"] == 1
    before = await state(api, "dev-b")
    attack = batch("edge-1", [(7, wire(1, device="dev-b", temp=999.0)), (8, wire(1, device="dev-a")),
                              (9, wire(3600, device="dev-b", temp=-5.0))])
    ack = (await api.sync(attack)).json()
    reason = "device dev-b belongs to edge edge-2; an admin can move it with `twincloud device move dev-b --to edge-1`"
    assert ack == {"acked_through": 9, "stored": 1, "duplicates": 0,
                   "rejected": [{"seq": 7, "reason": reason}, {"seq": 9, "reason": reason}],
                   "alerts_acked_through": None, "events_acked_through": None, "documents_acked_through": None}
    assert await state(api, "dev-b") == before
    real = (await api.sync(batch("edge-2", [(2, wire(1, device="dev-b"))]), token=api.other_edge)).json()
    assert (real["stored"], real["duplicates"], real["rejected"]) == (1, 0, [])
    after = await state(api, "dev-b")
    assert (after["values"]["temp"]["value"], after["edge"]) == (21.0, "edge-2")
    assert (await edge_row(api, "edge-1"))["rejected"] == 2
    metrics = (await api.client.get("/metrics", headers=auth(api.viewer))).text
    assert 'twincloud_sync_frames_total{edge="edge-1",replica="api-1",result="rejected"} 2.0' in metrics


async def test_a_frame_from_the_future_is_refused_and_does_not_freeze_the_state(api: Api) -> None:
    now = time.time()
    ack = (await api.sync(batch("edge-1", [(1, at(now - 10)), (2, at(now + 3600, temp=99.0)),
                                           (3, at(now + 299, temp=30.0))]))).json()
    assert (ack["acked_through"], ack["stored"], [r["seq"] for r in ack["rejected"]]) == (3, 2, [2])
    reason = ack["rejected"][0]["reason"]
    assert "ahead of the cloud's clock" in reason and "at most 300 s" in reason
    assert "this edge's clock" not in reason  # its own clock is right: a device's clock is wrong
    current = await state(api, "press-1")
    assert current["values"]["temp"] == {"ts": pytest.approx(now + 299, abs=1e-3), "value": 30.0}
    edge = await edge_row(api, "edge-1")
    assert edge["rejected"] == 1 and abs(edge["clock_skew_s"]) < 5


async def test_an_edge_whose_clock_runs_ahead_is_told_so_and_its_skew_is_shown(api: Api) -> None:
    body = batch("edge-1", [(1, at(time.time() + 3600))])
    body["sent_at"] = time.time() + 3600
    ack = (await api.sync(body)).json()
    assert ack["stored"] == 0 and "this edge's clock is 3,600 s ahead of the cloud's" in ack["rejected"][0]["reason"]
    edge = await edge_row(api, "edge-1")
    assert edge["clock_skew_s"] == pytest.approx(3600, abs=5)
    metrics = (await api.client.get("/metrics", headers=auth(api.viewer))).text
    line = next(x for x in metrics.splitlines() if x.startswith('twincloud_edge_clock_skew_seconds{edge="edge-1"}'))
    assert float(line.split()[-1]) == pytest.approx(3600, abs=5)
    body = batch("edge-2", [])
    body["sent_at"] = float("nan")  # not a time: no skew recorded, the batch still counts
    assert (await api.sync(body, token=api.other_edge)).status_code == 200
    assert (await edge_row(api, "edge-2"))["clock_skew_s"] is None
    body["sent_at"] = -1e30  # nor is this
    assert (await api.sync(body, token=api.other_edge)).status_code == 200
    assert (await edge_row(api, "edge-2"))["clock_skew_s"] is None


async def test_a_batch_resent_after_an_outage_shows_the_skew_of_the_attempt_not_of_its_packing(api: Api) -> None:
    packed_an_hour_ago = batch("edge-1", [(1, wire(0))])
    packed_an_hour_ago["sent_at"] = time.time() - 3600
    assert (await api.sync(packed_an_hour_ago, **{"X-Twinedge-Sent-At": f"{time.time():.3f}"})).status_code == 200
    assert abs((await edge_row(api, "edge-1"))["clock_skew_s"]) < 5
    for hostile in ("nan", "inf", "-inf", "soon", "", "1" * 5000):  # not a time: the batch's sent_at counts
        body = batch("edge-1", [(2, wire(1))])
        body["sent_at"] = time.time() - 60
        assert (await api.sync(body, **{"X-Twinedge-Sent-At": hostile})).status_code == 200, hostile
        assert (await edge_row(api, "edge-1"))["clock_skew_s"] == pytest.approx(-60, abs=5), hostile


async def test_the_allowed_skew_is_configured(tmp_path) -> None:
    async with make_api(tmp_path, sync={"max_future_skew": "1h"}) as api:
        ack = (await api.sync(batch("edge-1", [(1, at(time.time() + 3000)), (2, at(time.time() + 4000))]))).json()
        assert ack["stored"] == 1 and [r["seq"] for r in ack["rejected"]] == [2]
        assert "at most 3,600 s" in ack["rejected"][0]["reason"]


async def test_an_admin_moves_a_device_and_the_move_is_recorded(api: Api) -> None:
    await api.sync(batch("edge-1", [(1, wire(0))]))
    url = "/api/v1/devices/press-1/edge"
    body = {"edge": "edge-2", "reason": "line 1 rebuilt"}
    assert (await api.client.put(url, json=body)).status_code == 401
    for token in (api.viewer, api.operator, api.edge):
        resp = await api.client.put(url, json=body, headers=auth(token))
        assert resp.status_code == 403, resp.text
    assert (await api.client.put("/api/v1/devices/nothing/edge", json=body, headers=auth(api.admin))).status_code == 404
    resp = await api.client.put(url, json={"edge": "edge-9"}, headers=auth(api.admin))
    assert resp.status_code == 404 and resp.json()["detail"][0]["path"] == "edge"
    started = time.time()
    resp = await api.client.put(url, json=body, headers=auth(api.admin))
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"name": "press-1", "edge": "edge-2", "last_seen": 1_767_225_600.0, "last_edge": "edge-1"}

    moves = (await api.client.get("/api/v1/devices/press-1/moves", headers=auth(api.viewer))).json()
    assert [(m["from_edge"], m["to_edge"], m["by"], m["reason"]) for m in moves] == [
        ("edge-1", "edge-2", "root", "line 1 rebuilt")]
    assert started - 1 <= moves[0]["at"] <= time.time() + 1
    old = (await api.sync(batch("edge-1", [(2, wire(1))]))).json()
    assert old["stored"] == 0 and "belongs to edge edge-2" in old["rejected"][0]["reason"]
    new = (await api.sync(batch("edge-2", [(1, wire(1))]), token=api.other_edge)).json()
    assert (new["stored"], new["rejected"]) == (1, [])
    again = await api.client.put(url, json={"edge": "edge-2"}, headers=auth(api.admin))
    assert again.status_code == 200 and again.json()["edge"] == "edge-2"
    assert len((await api.client.get("/api/v1/devices/press-1/moves", headers=auth(api.viewer))).json()) == 1
    resp = await api.client.get("/api/v1/devices/nothing/moves", headers=auth(api.viewer))
    assert resp.status_code == 404


async def test_a_device_bound_before_it_first_sends_cannot_be_claimed_by_another_edge(api: Api) -> None:
    body = {"name": "press-9", "edge": "edge-2", "reason": "arrives next week"}
    assert (await api.client.post("/api/v1/devices", json=body, headers=auth(api.operator))).status_code == 403
    resp = await api.client.post("/api/v1/devices", json=body, headers=auth(api.admin))
    assert resp.status_code == 201 and resp.json()["edge"] == "edge-2"
    assert (await api.client.post("/api/v1/devices", json=body, headers=auth(api.admin))).status_code == 409
    ack = (await api.sync(batch("edge-1", [(1, wire(0, device="press-9"))]))).json()
    assert ack["stored"] == 0 and "belongs to edge edge-2" in ack["rejected"][0]["reason"]
    await api.sync(batch("edge-1", [(2, wire(0, device="press-1"))]))
    listed = (await api.client.get("/api/v1/devices", headers=auth(api.viewer))).json()
    assert listed == [{"name": "press-1", "edge": "edge-1", "last_seen": 1_767_225_600.0, "last_edge": "edge-1"},
                      {"name": "press-9", "edge": "edge-2", "last_seen": None, "last_edge": None}]
    assert (await api.client.get("/api/v1/twin/devices", headers=auth(api.viewer))).json() == ["press-1"]
    moves = (await api.client.get("/api/v1/devices/press-9/moves", headers=auth(api.viewer))).json()
    assert [(m["from_edge"], m["to_edge"], m["by"]) for m in moves] == [(None, "edge-2", "root")]


@pytest.mark.parametrize(("method", "url", "body", "path"), [
    ("PUT", "/api/v1/devices/bad%20name!/edge", {"edge": "edge-2"}, "name"),
    ("PUT", "/api/v1/devices/" + "x" * 65 + "/edge", {"edge": "edge-2"}, "name"),
    ("PUT", "/api/v1/devices/press-1/edge", {"edge": "../edge-2"}, "edge"),
    ("PUT", "/api/v1/devices/press-1/edge", {"edge": "edge-2", "reason": "x" * 501}, "reason"),
    ("PUT", "/api/v1/devices/press-1/edge", {"edge": "edge-2", "reason": "y" * 1_000_000}, "reason"),
    ("PUT", "/api/v1/devices/press-1/edge", {"edge": "edge-2", "reason": "two\nlines"}, "reason"),
    ("PUT", "/api/v1/devices/press-1/edge", {"edge": "edge-2", "reason": "\x1b[31mred"}, "reason"),
    ("PUT", "/api/v1/devices/press-1/edge", {"edge": ["edge-2"]}, "edge"),
    ("PUT", "/api/v1/devices/press-1/edge", {"edge": "edge-2", "extra": 1, "reason": 5}, "reason"),
    ("PUT", "/api/v1/devices/press-1/edge", [], "body"),
    ("POST", "/api/v1/devices", {"name": "a b", "edge": "edge-2"}, "name"),
    ("POST", "/api/v1/devices", {"name": "ok", "edge": "edge-2", "reason": "\x00"}, "reason"),
])
async def test_hostile_move_requests_are_refused_with_the_field_at_fault(api: Api, method: str, url: str,
                                                                        body: Any, path: str) -> None:
    await api.sync(batch("edge-1", [(1, wire(0))]))
    resp = await api.client.request(method, url, json=body, headers=auth(api.admin))
    assert resp.status_code == 422, resp.text
    assert any(p["path"] == path for p in resp.json()["detail"]), resp.json()
    moves = (await api.client.get("/api/v1/devices/press-1/moves", headers=auth(api.viewer))).json()
    assert moves == [] and (await state(api, "press-1"))["edge"] == "edge-1"


@contextlib.asynccontextmanager
async def service(directory: Path, url: str) -> AsyncIterator[httpx.AsyncClient]:
    """One service process's worth of app on a shared database."""
    app = create_app(config_for(directory, database={"url": url}))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cloud.test") as client:
            client.app = app  # type: ignore[attr-defined]
            yield client


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_a_move_made_through_one_process_holds_in_the_other(request: pytest.FixtureRequest, tmp_path: Path,
                                                                  backend: str) -> None:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'shared.db'}"
    else:
        url = await fresh_pg_database(request.getfixturevalue("pg_server"))
    async with service(tmp_path, url) as one, service(tmp_path, url) as two:
        storage = one.app.state.ctx.storage  # type: ignore[attr-defined]
        edge1, edge2 = await add_edge(storage, "edge-1"), await add_edge(storage, "edge-2")
        admin = await add_user(storage, "root", "admin")

        async def send(client: httpx.AsyncClient, token: str, edge: str, seq: int) -> dict[str, Any]:
            resp = await client.post("/api/v1/sync/batches", content=encode_obj(batch(edge, [(seq, wire(seq))])),
                                     headers={**auth(token), "Content-Type": "application/msgpack"})
            return resp.json()  # type: ignore[no-any-return]

        assert (await send(two, edge1, "edge-1", 1))["stored"] == 1
        assert (await send(two, edge2, "edge-2", 2))["rejected"]
        for token, name, other, other_name in ((edge2, "edge-2", edge1, "edge-1"), (edge1, "edge-1", edge2, "edge-2")):
            resp = await one.put("/api/v1/devices/press-1/edge", json={"edge": name}, headers=auth(admin))
            assert resp.status_code == 200, resp.text
            seq = 10 if name == "edge-2" else 20
            assert (await send(two, token, name, seq))["stored"] == 1
            refused = await send(two, other, other_name, seq + 1)
            assert refused["stored"] == 0 and f"belongs to edge {name}" in refused["rejected"][0]["reason"]
        moves = (await two.get("/api/v1/devices/press-1/moves", headers=auth(admin))).json()
        assert [(m["from_edge"], m["to_edge"]) for m in moves] == [("edge-1", "edge-2"), ("edge-2", "edge-1")]
