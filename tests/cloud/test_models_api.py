"""The model registry, assignments, alerts and drift over HTTP, against a real twincloud on SQLite and PostgreSQL.

One server per backend for the module; each test uses its own model names, devices and edges.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import time
import zipfile
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from shared.codec import encode_obj
from tests.cloud.apiclient import auth, batch, wire
from tests.cloud.pg import fresh_pg_database
from tests.cloud.rawhttp import open_request, read_response
from tests.cloud.server import CloudServer
from tests.mlkit import anomaly_graph, make_package, make_schema

EDGES = ["edge-1", "edge-2", "edge-3", "edge-4", "edge-5"]
T0 = 1_767_225_600.0


class Cloud:
    """The server and a token per role."""

    def __init__(self, server: CloudServer) -> None:
        self.server = server
        self.url = server.base_url
        self.admin = server.admin_token
        self.viewer = server.viewer_token
        made = httpx.post(f"{self.url}/api/v1/users", json={"name": "olga", "role": "operator"},
                          headers=auth(self.admin), timeout=10)
        assert made.status_code == 201, made.text
        self.operator = made.json()["token"]

    def edge(self, name: str) -> str:
        return self.server.edge_tokens[name]

    def get(self, path: str, token: str, **params: Any) -> httpx.Response:
        return httpx.get(self.url + path, params=params, headers=auth(token), timeout=30)

    def upload(self, data: bytes, token: str | None = None) -> httpx.Response:
        return httpx.post(f"{self.url}/api/v1/models", content=data, timeout=60,
                          headers={**auth(token or self.operator), "Content-Type": "application/zip"})

    def assign(self, token: str | None = None, **rule: Any) -> httpx.Response:
        return httpx.put(f"{self.url}/api/v1/model-assignments", json=rule, headers=auth(token or self.operator),
                         timeout=10)

    def sync(self, edge: str, body: dict[str, Any]) -> dict[str, Any]:
        resp = httpx.post(f"{self.url}/api/v1/sync/batches", content=encode_obj(body), timeout=30,
                          headers={**auth(self.edge(edge)), "Content-Type": "application/msgpack"})
        assert resp.status_code == 200, resp.text
        return resp.json()  # type: ignore[no-any-return]


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def cloud(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    url = None
    if request.param == "postgres":
        url = asyncio.run(fresh_pg_database(request.getfixturevalue("pg_server")))
    with CloudServer(tmp_path_factory.mktemp(f"models-{request.param}"), edges=EDGES, database_url=url) as server:
        yield Cloud(server)


def package(name: str, threshold: float = 1.0, **kw: Any) -> bytes:
    return make_package(make_schema(threshold=threshold), name=name, **kw)[0]


def problems(resp: httpx.Response) -> str:
    return " | ".join(p["message"] for p in resp.json()["detail"])


# --- upload, list, info, download ----------------------------------------------------------------------------


def test_an_upload_is_stored_as_the_next_version_and_downloads_byte_for_byte(cloud: Cloud) -> None:
    first, second = package("pump", 1.0), package("pump", 2.0)
    up = cloud.upload(first)
    assert up.status_code == 201
    assert up.json() == {"name": "pump", "version": 1, "sha256": hashlib.sha256(first).hexdigest()}
    again = cloud.upload(first)  # the same bytes again: the version it has, no duplicate
    assert (again.status_code, again.json()["version"]) == (200, 1)
    assert cloud.upload(second).json()["version"] == 2
    listed = {m["name"]: m for m in cloud.get("/api/v1/models", cloud.viewer).json()}
    assert (listed["pump"]["versions"], listed["pump"]["latest"], listed["pump"]["kind"]) == ([1, 2], 2, "anomaly")
    versions = cloud.get("/api/v1/models/pump", cloud.viewer).json()
    assert [(v["version"], v["size"], v["uploaded_by"]) for v in versions] == [(1, len(first), "olga"),
                                                                              (2, len(second), "olga")]
    info = cloud.get("/api/v1/models/pump/versions/2", cloud.viewer).json()
    assert info["sha256"] == hashlib.sha256(second).hexdigest()
    assert [s["name"] for s in info["input_schema"]["sensors"]] == ["temp", "vib"]
    assert info["input_schema"]["threshold"] == 2.0
    assert info["source"]["kind"] == "file" and info["training"]["algorithm"] == "test graph"
    assert info["feature_stats"][0] == {"name": "temp", "mean": 0.0, "std": 1.0, "min": -3.0, "max": 3.0,
                                        "edges": [-1.0, 0.0, 1.0], "expected": [0.16, 0.34, 0.34, 0.16]}
    assert info["assignments"] == []
    refused = cloud.get("/api/v1/models/pump/versions/2/package", cloud.edge("edge-1"))
    assert refused.status_code == 403 and "assigned" in problems(refused)  # an edge downloads only its own
    assert cloud.assign(scope="edge", target="edge-1", model="pump", version=2).status_code == 200
    got = cloud.get("/api/v1/models/pump/versions/2/package", cloud.edge("edge-1"))
    assert got.status_code == 200 and got.content == second
    assert got.headers["content-type"] == "application/zip"
    assert got.headers["etag"] == f'"{hashlib.sha256(second).hexdigest()}"'
    cached = httpx.get(f"{cloud.url}/api/v1/models/pump/versions/2/package", timeout=10,
                       headers={**auth(cloud.viewer), "If-None-Match": got.headers["etag"]})
    assert cached.status_code == 304 and cached.content == b""
    assert cloud.get("/api/v1/models/pump/versions/3", cloud.viewer).status_code == 404
    assert cloud.get("/api/v1/models/nothing", cloud.viewer).status_code == 404
    assert cloud.get("/api/v1/models/pump/versions/1/package", cloud.edge("edge-1")).status_code == 403
    assert cloud.get("/api/v1/models/pump/versions/2/package", cloud.edge("edge-2")).status_code == 403
    assert cloud.get("/api/v1/models/pump/versions/9/package", cloud.viewer).status_code == 404
    gone = httpx.delete(f"{cloud.url}/api/v1/model-assignments", params={"scope": "edge", "target": "edge-1"},
                        headers=auth(cloud.operator), timeout=10)
    assert gone.status_code == 204


def test_viewers_read_operators_assign_and_only_admins_delete(cloud: Cloud) -> None:
    assert cloud.upload(package("roles"), token=cloud.viewer).status_code == 403
    assert cloud.upload(package("roles")).status_code == 201
    refused = cloud.assign(token=cloud.viewer, scope="fleet", model="roles", version=1)
    assert refused.status_code == 403 and "operator" in problems(refused)
    assert cloud.assign(scope="edge", target="edge-3", model="roles", version=1).status_code == 200
    delete = f"{cloud.url}/api/v1/models/roles/versions/1"
    assert httpx.delete(delete, headers=auth(cloud.operator), timeout=10).status_code == 403
    in_use = httpx.delete(delete, headers=auth(cloud.admin), timeout=10)
    assert in_use.status_code == 409 and "edge edge-3" in problems(in_use)
    gone = httpx.delete(f"{cloud.url}/api/v1/model-assignments", params={"scope": "edge", "target": "edge-3"},
                        headers=auth(cloud.operator), timeout=10)
    assert gone.status_code == 204
    assert httpx.delete(delete, headers=auth(cloud.admin), timeout=10).status_code == 204
    assert cloud.get("/api/v1/models/roles/versions/1", cloud.viewer).status_code == 404


def test_an_edge_token_reads_only_its_own_list_and_the_packages(cloud: Cloud) -> None:
    own = cloud.get("/api/v1/edges/edge-3/models", cloud.edge("edge-3"))
    assert own.status_code == 200 and "assignments" in own.json()
    other = cloud.get("/api/v1/edges/edge-4/models", cloud.edge("edge-3"))
    assert other.status_code == 403 and "edge-3" in problems(other)
    assert cloud.get("/api/v1/edges/edge-4/models", cloud.viewer).status_code == 200  # people may read any
    assert cloud.get("/api/v1/edges/nowhere/models", cloud.viewer).status_code == 404
    for path in ("/api/v1/models", "/api/v1/model-assignments", "/api/v1/alerts", "/api/v1/drift"):
        assert cloud.get(path, cloud.edge("edge-3")).status_code == 403, path
    assert cloud.upload(package("by-edge"), token=cloud.edge("edge-3")).status_code == 403


# --- hostile uploads -----------------------------------------------------------------------------------------


def rezip(data: bytes, change: dict[str, bytes | None]) -> bytes:
    """The package's members with some replaced (None: left out) or added."""
    with zipfile.ZipFile(io.BytesIO(data)) as src:
        parts: dict[str, bytes | None] = {i.filename: src.read(i) for i in src.infolist()}
    parts.update(change)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for name, body in parts.items():
            if body is not None:
                dst.writestr(name, body)
    return out.getvalue()


def test_hostile_uploads_are_refused_with_their_reason_and_nothing_is_stored(cloud: Cloud) -> None:
    good = package("hostile")
    card = json.loads(zipfile.ZipFile(io.BytesIO(good)).read("card.json"))
    bomb = rezip(good, {"model.onnx": b"\0" * (200 * 1024 * 1024)})  # 200 MiB of zeros in a small ZIP
    cases = {
        "not a zip": (b"MZ\x90\x00 this is a program, not a package" * 50, "not a readable ZIP"),
        "truncated": (good[: len(good) // 2], "ZIP"),
        "zip bomb": (bomb, "model.onnx unpacks to"),
        "extra member": (rezip(good, {"evil.sh": b"rm -rf /"}), "unexpected members 'evil.sh'"),
        "missing member": (rezip(good, {"schema.json": None}), "missing schema.json"),
        "card disagrees": (rezip(good, {"card.json": json.dumps({**card, "kind": "classifier"}).encode()}),
                           "card.json says kind 'classifier'"),
        "not onnx": (rezip(good, {"model.onnx": b"\x08\x07garbage"}), "model.onnx does not load"),
        "card lies": (package("hostile", outputs=[[9.0]] * 4), "test vectors differ"),
        "schema for other sensors": (rezip(good, {"schema.json": make_schema(("temp", "vib", "rpm"))
                                                  .model_dump_json().encode()}), "the schema's inputs are 3"),
        "wrong input shape": (make_package(make_schema(("temp", "vib", "rpm")), model=anomaly_graph(2), name="hostile",
                                           outputs=[[0.0]] * 4)[0], "has shape ['N', 2]; the schema needs [N, 3]"),
    }
    assert len(bomb) < 1024 * 1024
    for case, (body, reason) in cases.items():
        resp = cloud.upload(body)
        assert resp.status_code == 422, (case, resp.status_code, resp.text[:300])
        assert reason in problems(resp), (case, problems(resp))
    assert "hostile" not in {m["name"] for m in cloud.get("/api/v1/models", cloud.viewer).json()}


def test_a_70_mb_upload_is_refused_on_its_content_length_before_a_byte_is_read(cloud: Cloud) -> None:
    head = {**auth(cloud.operator), "Content-Type": "application/zip", "Content-Length": str(70_000_000)}
    sock = open_request(cloud.server.port, "POST", "/api/v1/models", head)  # the head only: no body follows
    try:
        status, _, body = read_response(sock)
    finally:
        sock.close()
    assert status == 413 and "67,108,864" in body.decode()
    refused = open_request(cloud.server.port, "POST", "/api/v1/models",
                           {**auth(cloud.viewer), "Content-Length": "1000"})  # a viewer: refused before the body
    try:
        assert read_response(refused)[0] == 403
    finally:
        refused.close()


# --- assignments ---------------------------------------------------------------------------------------------


def test_the_most_specific_rule_scores_a_device_and_each_edge_reads_the_rules_that_apply(cloud: Cloud) -> None:
    for threshold in (1.0, 2.0, 3.0):
        assert cloud.upload(package("prec", threshold)).status_code == 201
    cloud.sync("edge-5", batch("edge-5", [(1, wire(1, device="mill-5"))]))  # mill-5 belongs to edge-5
    cloud.sync("edge-4", batch("edge-4", [(1, wire(1, device="mill-4"))]))
    assert cloud.assign(scope="fleet", model="prec", version=1).status_code == 200
    assert cloud.assign(scope="edge", target="edge-5", model="prec", version=2).status_code == 200
    assert cloud.assign(scope="device", target="mill-5", model="prec", version=3).status_code == 200
    assert cloud.assign(scope="device", target="mill-4", model="prec", version=3).status_code == 200
    assert cloud.assign(scope="device", target="spare-9", model="prec", version=2).status_code == 200

    def scoring(device: str) -> tuple[str, int]:
        [rule] = cloud.get("/api/v1/model-assignments", cloud.viewer, device=device).json()
        return rule["scope"], rule["version"]
    assert scoring("mill-5") == ("device", 3)
    assert scoring("other-5") == ("fleet", 1)  # no data yet: belongs to no edge, so the fleet rule
    cloud.sync("edge-5", batch("edge-5", [(2, wire(2, device="other-5"))]))
    assert scoring("other-5") == ("edge", 2)
    rules = cloud.get("/api/v1/edges/edge-5/models", cloud.edge("edge-5")).json()["assignments"]
    seen = {(r["scope"], r["target"], r["version"]) for r in rules}
    assert {("device", "mill-5", 3), ("device", "spare-9", 2), ("edge", "edge-5", 2), ("fleet", None, 1)} <= seen
    assert not any(r["target"] == "mill-4" for r in rules)  # edge-4's device
    sha = {r["version"]: r["sha256"] for r in rules}
    assert sha[3] == cloud.get("/api/v1/models/prec/versions/3", cloud.viewer).json()["sha256"]
    # Roll back: assign the previous version.
    assert cloud.assign(scope="device", target="mill-5", model="prec", version=2).json()["version"] == 2
    assert scoring("mill-5") == ("device", 2)
    for name, rule, status in [
        ("unknown model", {"scope": "fleet", "model": "nope", "version": 1}, 404),
        ("unknown version", {"scope": "fleet", "model": "prec", "version": 99}, 404),
        ("unknown edge", {"scope": "edge", "target": "edge-99", "model": "prec", "version": 1}, 404),
        ("fleet with target", {"scope": "fleet", "target": "x", "model": "prec", "version": 1}, 422),
        ("device without target", {"scope": "device", "model": "prec", "version": 1}, 422),
        ("bad scope", {"scope": "site", "target": "x", "model": "prec", "version": 1}, 422),
    ]:
        resp = cloud.assign(**rule)
        assert resp.status_code == status, (name, resp.text)


# --- alerts --------------------------------------------------------------------------------------------------


def alert(seq: int, alert_id: str, event: str, device: str, at: float, score: float = 4.0) -> dict[str, Any]:
    return {"seq": seq, "alert": {"alert_id": alert_id, "event": event, "device_id": device, "ts": T0 + at,
                                  "model": "prec", "version": 1, "score": score, "threshold": 2.0,
                                  "message": "vibration above normal"}}


def alerts_of(cloud: Cloud, **params: Any) -> list[dict[str, Any]]:
    resp = cloud.get("/api/v1/alerts", cloud.viewer, **params)
    assert resp.status_code == 200, resp.text
    return resp.json()["alerts"]  # type: ignore[no-any-return]


def test_alerts_sent_twice_are_stored_once_and_a_cleared_event_may_come_first(cloud: Cloud) -> None:
    body = {**batch("edge-1", [(10, wire(10, device="press-a"))]),
            "alerts": [alert(1, "a-1", "raised", "press-a", 0), alert(2, "a-2", "cleared", "press-a", 90, 9.0)]}
    ack = cloud.sync("edge-1", body)
    assert ack["alerts_acked_through"] == 2
    assert cloud.sync("edge-1", body)["alerts_acked_through"] == 2  # the ack was lost: the edge sends it again
    listed = alerts_of(cloud, device="press-a")
    assert [(a["alert_id"], a["state"]) for a in listed] == [("a-2", "cleared"), ("a-1", "open")]
    early = listed[0]
    assert (early["raised_at"], early["cleared_at"], early["peak"]) == (None, T0 + 90, 9.0)
    cloud.sync("edge-1", {**batch("edge-1", []), "alerts": [alert(3, "a-2", "raised", "press-a", 30)]})
    [late, first] = alerts_of(cloud, device="press-a")
    assert (late["id"], late["state"], late["raised_at"], late["cleared_at"], late["score"], late["peak"]) == (
        early["id"], "cleared", T0 + 30, T0 + 90, 4.0, 9.0)
    assert first["message"] == "vibration above normal" and first["edge"] == "edge-1"
    assert cloud.sync("edge-1", batch("edge-1", []))["alerts_acked_through"] is None


def test_alerts_no_store_can_keep_are_refused_and_acked_and_malformed_ones_refuse_the_batch(cloud: Cloud) -> None:
    cloud.sync("edge-2", batch("edge-2", [(1, wire(1, device="press-b"))]))
    far = alert(8, "x-2", "raised", "press-z", 0)
    far["alert"]["ts"] = 1e12  # milliseconds sent as seconds
    odd = alert(9, "x-3", "raised", "press-z", 0)
    odd["alert"]["version"] = 2**40
    ack = cloud.sync("edge-1", {**batch("edge-1", []),
                                "alerts": [alert(7, "x-1", "raised", "press-b", 0), far, odd]})
    assert ack["alerts_acked_through"] == 9
    assert alerts_of(cloud, device="press-b") == [] and alerts_of(cloud, device="press-z") == []
    broken = {**batch("edge-1", [(50, wire(50, device="press-z"))]),
              "alerts": [{"seq": 10, "alert": {"alert_id": "x-4", "event": "exploded"}}]}
    resp = httpx.post(f"{cloud.url}/api/v1/sync/batches", content=encode_obj(broken), timeout=30,
                      headers={**auth(cloud.edge("edge-1")), "Content-Type": "application/msgpack"})
    assert resp.status_code == 422 and any(p["path"].startswith("alerts[0].alert") for p in resp.json()["detail"])


def test_alerts_are_acknowledged_once_filtered_and_paged(cloud: Cloud) -> None:
    events = [alert(100 + k, f"p-{k}", "raised", "press-c", 1000 + k) for k in range(5)]
    cloud.sync("edge-1", {**batch("edge-1", []), "alerts": [*events, alert(105, "p-0", "cleared", "press-c", 1100)]})
    listed = alerts_of(cloud, device="press-c")
    assert [a["alert_id"] for a in listed] == ["p-4", "p-3", "p-2", "p-1", "p-0"]
    target = listed[1]["id"]
    url = f"{cloud.url}/api/v1/alerts/{target}/ack"
    assert httpx.post(url, json={"comment": "x"}, headers=auth(cloud.viewer), timeout=10).status_code == 403
    first = httpx.post(url, json={"comment": "bearing greased"}, headers=auth(cloud.operator), timeout=10).json()
    again = httpx.post(url, json={"comment": "again"}, headers=auth(cloud.admin), timeout=10).json()
    assert (first["acknowledged"], first["acked_by"], first["ack_comment"]) == (True, "olga", "bearing greased")
    assert (again["acked_by"], again["acked_at"], again["ack_comment"]) == ("olga", first["acked_at"],
                                                                           "bearing greased")
    assert abs(first["acked_at"] - time.time()) < 600
    bad = httpx.post(f"{cloud.url}/api/v1/alerts/999999/ack", json={}, headers=auth(cloud.operator), timeout=10)
    assert bad.status_code == 404
    assert [a["alert_id"] for a in alerts_of(cloud, device="press-c", state="acknowledged")] == ["p-3"]
    assert "p-3" not in [a["alert_id"] for a in alerts_of(cloud, device="press-c", state="unacknowledged")]
    assert [a["alert_id"] for a in alerts_of(cloud, device="press-c", state="cleared")] == ["p-0"]
    assert [a["alert_id"] for a in alerts_of(cloud, device="press-c", state="open")] == ["p-4", "p-3", "p-2", "p-1"]
    window = {"from": T0 + 1001, "to": "2026-01-01T00:16:43Z"}  # [1001, 1003) s after T0
    assert [a["alert_id"] for a in alerts_of(cloud, device="press-c", **window)] == ["p-2", "p-1"]
    assert alerts_of(cloud, edge="edge-2", device="press-c") == []
    pages: list[str] = []
    cursor = None
    while True:
        page = cloud.get("/api/v1/alerts", cloud.viewer, device="press-c", limit=2,
                         **({"cursor": cursor} if cursor else {})).json()
        pages += [a["alert_id"] for a in page["alerts"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == ["p-4", "p-3", "p-2", "p-1", "p-0"]
    huge = base64.urlsafe_b64encode(b"99999999999999999999999:1").decode()
    for params in ({"cursor": "garbage!"}, {"cursor": huge}, {"from": "yesterday"}, {"state": "sleepy"},
                   {"from": T0 + 5, "to": T0}):
        assert cloud.get("/api/v1/alerts", cloud.viewer, **params).status_code in (400, 422), params


# --- drift ---------------------------------------------------------------------------------------------------


def report(drift: str, psi: dict[str, float]) -> dict[str, Any]:
    return {"model": "prec", "version": 1, "sha256": "ab" * 32, "state": "serving", "last_score": 0.3,
            "last_scored_at": T0, "drift": drift, "psi": psi, "rows": 1000}


def test_the_drift_list_names_the_devices_whose_inputs_moved_largest_psi_first(cloud: Cloud) -> None:
    body = batch("edge-3", [])
    body["health"]["models"] = {"kiln-1": report("drift", {"temp": 0.05, "vib": 0.31}),
                                "kiln-2": report("ok", {"temp": 0.01}), "kiln-3": report("warn", {"vib": 0.12})}
    cloud.sync("edge-3", body)
    everything = {r["device"]: r for r in cloud.get("/api/v1/drift", cloud.viewer).json()}
    assert {"kiln-1", "kiln-2", "kiln-3"} <= set(everything)
    assert everything["kiln-1"]["features"] == [{"name": "vib", "psi": 0.31}, {"name": "temp", "psi": 0.05}]
    assert everything["kiln-1"]["edge"] == "edge-3" and everything["kiln-1"]["rows"] == 1000
    drifted = [(r["device"], r["drift"]) for r in cloud.get("/api/v1/drift", cloud.viewer, drifted="true").json()
               if r["edge"] == "edge-3"]
    assert drifted == [("kiln-1", "drift"), ("kiln-3", "warn")]
    metrics = cloud.get("/metrics", cloud.viewer).text
    assert 'twincloud_models_drifted{level="drift"} 1.0' in metrics
    assert "twincloud_alerts_open " in metrics and "twincloud_alerts_unacknowledged " in metrics
    body["health"]["models"] = {"kiln-2": report("ok", {})}  # the edge's next report replaces this one
    cloud.sync("edge-3", body)
    assert [r["device"] for r in cloud.get("/api/v1/drift", cloud.viewer).json() if r["edge"] == "edge-3"] == [
        "kiln-2"]
