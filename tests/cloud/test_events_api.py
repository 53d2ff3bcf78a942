"""The edges' events in the cloud: stored once per (edge, seq) with the sync batch, listed by edge, device, level,
kind and time, newest first and a page at a time; hostile batches and queries get 4xx, never 500."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from shared.codec import encode_obj
from shared.frame import TelemetryFrame
from tests.cloud.apiclient import auth, batch
from tests.cloud.pg import fresh_pg_database
from tests.cloud.server import CloudServer

T0 = 1_767_225_600.0
EDGES = ["edge-1", "edge-2"]


class Cloud:
    def __init__(self, server: CloudServer) -> None:
        self.server = server
        self.url = server.base_url

    def post(self, edge: str, body: dict[str, Any]) -> httpx.Response:
        return httpx.post(f"{self.url}/api/v1/sync/batches", content=encode_obj(body), timeout=30,
                          headers={**auth(self.server.edge_tokens[edge]), "Content-Type": "application/msgpack"})

    def sync(self, edge: str, body: dict[str, Any]) -> dict[str, Any]:
        resp = self.post(edge, body)
        assert resp.status_code == 200, resp.text
        return resp.json()  # type: ignore[no-any-return]

    def get(self, token: str | None = None, **params: Any) -> httpx.Response:
        return httpx.get(f"{self.url}/api/v1/events", params=params, timeout=30,
                         headers=auth(token or self.server.viewer_token))

    def events(self, **params: Any) -> list[dict[str, Any]]:
        resp = self.get(**params)
        assert resp.status_code == 200, resp.text
        return resp.json()["events"]  # type: ignore[no-any-return]


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def cloud(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    url = None
    if request.param == "postgres":
        url = asyncio.run(fresh_pg_database(request.getfixturevalue("pg_server")))
    with CloudServer(tmp_path_factory.mktemp(f"events-{request.param}"), edges=EDGES, database_url=url) as server:
        yield Cloud(server)


def event(seq: int, at: float, level: str = "operator", device: str | None = "press-a", kind: str = "source_lost",
          edge: str = "edge-1", **extra: Any) -> dict[str, Any]:
    return {"seq": seq, "event": {"ts": T0 + at, "level": level, "kind": kind, "edge": edge, "device": device,
                                  "source": "plc-1", "message": f"event {seq}", "details": {"n": seq}, **extra}}


def seqs(listed: list[dict[str, Any]]) -> list[int]:
    return [e["seq"] for e in listed]


def test_events_sent_twice_are_stored_once_and_come_back_whole(cloud: Cloud) -> None:
    body = {**batch("edge-1", []), "events": [event(1, 0, device=None), event(2, 1, "technical")]}
    assert cloud.sync("edge-1", body)["events_acked_through"] == 2
    assert cloud.sync("edge-1", body)["events_acked_through"] == 2  # the ack was lost: sent again
    listed = cloud.events(edge="edge-1", **{"from": T0, "to": T0 + 2})
    assert seqs(listed) == [2, 1]
    first = listed[1]
    assert {k: first[k] for k in ("edge", "ts", "level", "kind", "device", "source", "message", "details")} == {
        "edge": "edge-1", "ts": T0, "level": "operator", "kind": "source_lost", "device": None, "source": "plc-1",
        "message": "event 1", "details": {"n": 1}}
    assert cloud.sync("edge-1", batch("edge-1", []))["events_acked_through"] is None  # an older edge's batch


def test_levels_edge_device_kind_and_time_filter_and_pages_go_newest_first(cloud: Cloud) -> None:
    levels = ["operator", "technical", "developer"]
    cloud.sync("edge-2", {**batch("edge-2", []), "events": [
        event(10 + k, 100 + k, levels[k % 3], device="press-b" if k % 2 else "press-c", edge="edge-2",
              kind="source_recovered" if k == 4 else "source_lost") for k in range(9)]})
    mine = {"edge": "edge-2"}
    assert seqs(cloud.events(**mine, level="operator")) == [16, 13, 10]
    assert seqs(cloud.events(**mine, level="technical")) == [17, 16, 14, 13, 11, 10]
    assert seqs(cloud.events(**mine)) == list(range(18, 9, -1))  # developer: all
    assert seqs(cloud.events(**mine, levels=["developer", "operator"])) == [18, 16, 15, 13, 12, 10]
    assert seqs(cloud.events(**mine, device="press-b")) == [17, 15, 13, 11]
    assert seqs(cloud.events(**mine, kind="source_recovered")) == [14]
    assert seqs(cloud.events(**mine, **{"from": T0 + 102, "to": T0 + 104})) == [13, 12]
    assert seqs(cloud.events(edge="edge-1", device="press-b")) == []
    pages, cursor = [], None
    while True:
        resp = cloud.get(**mine, limit=4, **({"cursor": cursor} if cursor else {})).json()
        pages.append(seqs(resp["events"]))
        if not (cursor := resp["next_cursor"]):
            break
    assert pages == [[18, 17, 16, 15], [14, 13, 12, 11], [10]]


def test_an_event_dated_outside_2000_2100_is_left_out_and_acknowledged(cloud: Cloud) -> None:
    far = event(30, 0, edge="edge-1")
    far["event"]["ts"] = 1e12  # milliseconds sent as seconds
    assert cloud.sync("edge-1", {**batch("edge-1", []), "events": [far]})["events_acked_through"] == 30
    assert 30 not in seqs(cloud.events(edge="edge-1"))


@pytest.mark.parametrize(("name", "change"), [
    ("oversized message", {"message": "x" * 513}),
    ("empty message", {"message": ""}),
    ("bad level", {"level": "boss"}),
    ("unknown field", {"colour": "red"}),
    ("bad kind", {"kind": "Robert'); DROP TABLE edge_events;--"}),
    ("bad device", {"device": "a b"}),
    ("nan time", {"ts": float("nan")}),
    ("too many details", {"details": {f"k{n}": n for n in range(33)}}),
    ("nested details", {"details": {"k": {"deep": [1, 2]}}}),
    ("huge detail", {"details": {"k": "x" * 2000}}),
])
def test_a_malformed_event_refuses_the_batch_with_its_path(cloud: Cloud, name: str, change: dict[str, Any]) -> None:
    bad = event(40, 0)
    bad["event"].update(change)
    resp = cloud.post("edge-1", {**batch("edge-1", []), "events": [bad]})
    assert resp.status_code == 422, (name, resp.text)
    assert any(p["path"].startswith("events[0]") for p in resp.json()["detail"]), resp.text


@pytest.mark.parametrize("params", [
    {"level": "boss"}, {"levels": "root"}, {"edge": "a b"}, {"device": "x" * 300}, {"kind": "DROP TABLE"},
    {"limit": 0}, {"limit": 100000}, {"from": "yesterday"}, {"cursor": "not-a-cursor"},
    {"cursor": "ZTE6Mg"[:-1] + "!"}, {"from": T0 + 10, "to": T0},
])
def test_a_bad_query_is_a_4xx_with_the_parameter_named(cloud: Cloud, params: dict[str, Any]) -> None:
    resp = cloud.get(**params)
    assert resp.status_code in (400, 422), (params, resp.status_code, resp.text)


def test_only_people_read_the_events_and_a_token_is_needed(cloud: Cloud) -> None:
    assert httpx.get(f"{cloud.url}/api/v1/events", timeout=10).status_code == 401
    assert cloud.get(token=cloud.server.admin_token).status_code == 200
    assert cloud.get(token=cloud.server.edge_tokens["edge-1"]).status_code == 403


def test_nul_characters_in_a_batch_are_removed_and_the_batch_is_stored(cloud: Cloud) -> None:
    """A text with a NUL character (an OPC-UA string, a message built from a control's bytes) is stored without
    it: PostgreSQL's text holds none, and a batch refused for one would be sent again forever, its frames with it."""
    text = TelemetryFrame(ts=T0 + 500, device_id="press-nul", sensors={"mode": "AU\x00TO", "x": 1.0}).to_wire()
    nul = event(40, 500, device="press-nul", edge="edge-1", message="lost\x00 it", source="plc\x00",
                details={"why": "a\x00b"})
    alarm = {"seq": 1, "alert": {"alert_id": "nul-1", "event": "raised", "device_id": "press-nul", "ts": T0 + 500,
                                 "model": "bearing", "version": 1, "score": 0.9, "threshold": 0.5,
                                 "label": "hot\x00", "message": "too\x00 hot"}}
    body = {**batch("edge-1", [(1, text)]), "events": [nul], "alerts": [alarm]}
    body["health"]["sources"] = {"plc\x00": "conn\x00ected"}
    acked = cloud.sync("edge-1", body)
    assert acked["events_acked_through"] == 40
    found = [e for e in cloud.events(edge="edge-1", device="press-nul")]
    assert [(e["message"], e["source"], e["details"]) for e in found] == [("lost it", "plc", {"why": "ab"})]
    state = httpx.get(f"{cloud.url}/api/v1/twin/press-nul/state", headers=auth(cloud.server.viewer_token),
                      timeout=30).json()
    assert state["values"]["mode"]["value"] == "AUTO"
    alerts = httpx.get(f"{cloud.url}/api/v1/alerts", params={"device": "press-nul"},
                       headers=auth(cloud.server.viewer_token), timeout=30).json()
    assert [(a["label"], a["message"]) for a in alerts["alerts"]] == [("hot", "too hot")]
