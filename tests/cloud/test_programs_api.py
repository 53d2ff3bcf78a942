"""Programs, assets and documents in the cloud: stored once per (edge, seq) with the sync batch, the newest body per
key kept with the history, searched by tool, offset, feature and text; hostile documents and parameters get a
reason or a 4xx, and never cost a batch its frames."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.cloud.apiclient import Api, auth, batch, make_api, wire
from tests.cloud.documents import document, program, program_doc, sha, tool
from tests.cloud.pg import fresh_pg_database

DRILL = program("drill/O1001.nc", number="O1001", header=["BRACKET OP1", "VISE"], holes=12, offsets=["G54", "G55"],
                tools=[tool(5, "T5 8.5MM DRILL", 8.5, "drill", holes=12)])
MILL = program("mill/PLATE.NC", number="O2002", header=["PLATE FACE"], offsets=["G54.1 P3"],
               tools=[tool(12, "12MM END MILL", 12.0, "end mill")], holes=0,
               diagnostics=[{"line": 40, "level": "error", "message": "G2 without R or IJK"}])


async def get(api: Api, path: str, **params: Any) -> Any:
    resp = await api.client.get(path, params=params, headers=auth(api.viewer))
    assert resp.status_code == 200, resp.text
    return resp.json()


def shas(page: dict[str, Any]) -> set[str]:
    return {p["sha256"] for p in page["programs"]}


async def test_programs_sent_twice_are_stored_once_and_searchable(api: Api) -> None:
    body = {**batch("edge-1", [(1, wire(1))]), "documents": [program_doc(7, DRILL, device="press-1"),
                                                             program_doc(8, MILL, at=1)]}
    for _ in range(2):  # the ack was lost: the batch comes again
        resp = await api.sync(body)
        assert resp.status_code == 200, resp.text
        assert resp.json()["documents_acked_through"] == 8
    listed = await get(api, "/api/v1/programs")
    assert [p["path"] for p in listed["programs"]] == ["mill/PLATE.NC", "drill/O1001.nc"]
    drill = listed["programs"][1]
    assert {k: drill[k] for k in ("number", "tools", "offsets", "holes", "estimate_s", "errors", "device")} == {
        "number": "O1001", "tools": [5], "offsets": ["G54", "G55"], "holes": 12, "estimate_s": 100.0, "errors": 0,
        "device": "press-1"}
    assert shas(await get(api, "/api/v1/programs", tool="T5")) == {DRILL["sha256"]}
    assert shas(await get(api, "/api/v1/programs", tool="12")) == {MILL["sha256"]}
    assert shas(await get(api, "/api/v1/programs", tool="end mill")) == {MILL["sha256"]}
    assert shas(await get(api, "/api/v1/programs", tool="drill")) == {DRILL["sha256"]}
    assert shas(await get(api, "/api/v1/programs", diameter=8.5)) == {DRILL["sha256"]}
    assert shas(await get(api, "/api/v1/programs", offset="g54.1p3")) == {MILL["sha256"]}
    assert shas(await get(api, "/api/v1/programs", offset="G55")) == {DRILL["sha256"]}
    assert shas(await get(api, "/api/v1/programs", text="bracket")) == {DRILL["sha256"]}
    assert shas(await get(api, "/api/v1/programs", text="o2002")) == {MILL["sha256"]}
    assert shas(await get(api, "/api/v1/programs", text="100%")) == set()  # % is a character, not a wildcard
    assert shas(await get(api, "/api/v1/programs", has_errors="true")) == {MILL["sha256"]}
    assert shas(await get(api, "/api/v1/programs", has_errors="false", min_holes=1)) == {DRILL["sha256"]}
    assert shas(await get(api, "/api/v1/programs", device="press-1")) == {DRILL["sha256"]}
    assert shas(await get(api, "/api/v1/programs", edge="edge-2")) == set()
    first = await get(api, "/api/v1/programs", limit=1)
    second = await get(api, "/api/v1/programs", limit=1, cursor=first["next_cursor"])
    assert shas(first) | shas(second) == {DRILL["sha256"], MILL["sha256"]} and second["next_cursor"] is None
    shown = await get(api, f"/api/v1/programs/{MILL['sha256']}")
    assert shown["header"] == ["PLATE FACE"] and shown["tool_uses"][0]["comment"] == "12MM END MILL"
    assert shown["diagnostics"] == [{"line": 40, "level": "error", "message": "G2 without R or IJK"}]
    assert shown["estimate"]["total_s"] == 100.0


async def test_a_rename_keeps_the_program_and_records_the_old_path(api: Api) -> None:
    moved = {**DRILL, "path": "archive/O1001.nc", "renamed_from": "drill/O1001.nc"}
    assert (await api.sync({**batch("edge-1", []), "documents": [program_doc(1, DRILL)]})).status_code == 200
    assert (await api.sync({**batch("edge-1", []), "documents": [program_doc(2, moved, at=60)]})).status_code == 200
    listed = await get(api, "/api/v1/programs")
    assert [p["path"] for p in listed["programs"]] == ["archive/O1001.nc"]
    shown = await get(api, f"/api/v1/programs/{DRILL['sha256']}")
    assert [(r["from"], r["to"]) for r in shown["renames"]] == [("drill/O1001.nc", "archive/O1001.nc")]
    assert shown["first_seen"] < shown["last_seen"]


async def test_assets_and_the_device_model_keep_their_newest_version(api: Api) -> None:
    tool_xml = '<CuttingTool assetId="T1.1" toolId="T1"><CutterStatus><Status>NEW</Status></CutterStatus></CuttingTool>'
    asset = {"asset_type": "CuttingTool", "asset_id": "T1.1", "device_uuid": "OKUMA.123456",
             "timestamp": "2026-01-01T00:00:00Z", "xml": tool_xml, "removed": False}
    model = {"uuid": "OKUMA.123456", "name": "OKUMA", "device_id": "okuma-1", "instance_id": 5, "items": [
        {"id": "Lpexecution", "key": "Lpexecution", "name": "pexecution", "category": "EVENT", "type": "EXECUTION",
         "sub_type": None, "units": None},
        {"id": "Xact", "key": "Xact", "name": "X1actm", "category": "SAMPLE", "type": "POSITION",
         "sub_type": "ACTUAL", "units": "MILLIMETER"}]}
    docs = [document(1, "asset", "T1.1", {**asset, "xml": tool_xml.replace("NEW", "USED")}, at=5),
            document(2, "asset", "T1.1", asset, at=1),  # older by the edge's clock: history only
            document(3, "mtconnect_device", "OKUMA.123456", model, at=2)]
    assert (await api.sync({**batch("edge-1", []), "documents": docs})).json()["documents_acked_through"] == 3
    found = await get(api, "/api/v1/assets")
    assert [(a["asset_id"], "USED" in a["xml"]) for a in found["assets"]] == [("T1.1", True)]
    assert (await get(api, "/api/v1/assets", device="okuma-1"))["assets"][0]["asset_type"] == "CuttingTool"
    assert (await get(api, "/api/v1/assets", type="File"))["assets"] == []
    models = await get(api, "/api/v1/devices/okuma-1/mtconnect")
    assert [(i["key"], i["type"], i["units"]) for i in models[0]["items"]] == [
        ("Lpexecution", "EXECUTION", None), ("Xact", "POSITION", "MILLIMETER")]
    model["items"] = model["items"][1:]  # the agent's new model lost an item: it is gone from the registry
    await api.sync({**batch("edge-1", []), "documents": [document(4, "mtconnect_device", "OKUMA.123456", model, at=9)]})
    assert [i["key"] for i in (await get(api, "/api/v1/devices/okuma-1/mtconnect"))[0]["items"]] == ["Xact"]


async def _stored_documents(api: Api) -> list[tuple[Any, ...]]:
    return await api.ctx.storage.select(lambda _p: ("SELECT seq, kind, status, reason FROM documents ORDER BY seq",
                                                    []))


async def test_hostile_documents_are_kept_as_invalid_and_the_frames_still_go_in(api: Api) -> None:
    bad_program = {**DRILL, "tools": [{"tool": -1}], "sha256": sha("bad")}
    docs = [
        document(1, "program", bad_program["sha256"], bad_program),  # no ProgramRecord
        document(2, "program", "not-its-hash", DRILL),  # key is not the body's hash
        document(3, "program", "x" * 64, {"blob": "x" * (300 * 1024)}),  # over 256 KiB
        {"seq": 4, "document": {"ts": 1e12, "kind": "Bad Kind!", "key": "", "body": []}},  # no Document at all
        document(5, "asset", "A1", {"asset_type": "File"}),  # an asset without its fields
        document(6, "gauge_reading", "g-1", {"value": 3}),  # a kind from a newer edge: kept as it came
        {"seq": 7, "document": "not a map"},
        document(8, "program", MILL["sha256"], MILL),  # the good one among them
        document(9, "asset", "A2", {"value": float("nan")}),  # MessagePack carries NaN; JSON has no form for it
    ]
    resp = await api.sync({**batch("edge-1", [(1, wire(1)), (2, wire(2))]), "documents": docs})
    assert resp.status_code == 200, resp.text
    ack = resp.json()
    assert ack["acked_through"] == 2 and ack["stored"] == 2 and ack["documents_acked_through"] == 9
    rows = await _stored_documents(api)
    status = {seq: (kind, state) for seq, kind, state, _ in rows}
    assert status == {1: ("program", "invalid"), 2: ("program", "invalid"), 3: ("program", "invalid"),
                      4: ("Bad Kind!", "invalid"), 5: ("asset", "invalid"), 6: ("gauge_reading", "ok"),
                      7: ("?", "invalid"), 8: ("program", "ok"), 9: ("asset", "invalid")}
    reasons = {seq: reason for seq, _, _, reason in rows}
    assert "tools[0].tool" in reasons[1] and "sha256" in reasons[2] and "262,144" in reasons[3]
    assert "kind" in reasons[4] and "asset_id" in reasons[5] and "NaN" in reasons[9]
    assert shas(await get(api, "/api/v1/programs")) == {MILL["sha256"]}
    invalid = await get(api, "/api/v1/documents", status="invalid", limit=3)
    assert [d["seq"] for d in invalid] == [9, 7, 5] and invalid[0]["reason"] == reasons[9]
    older = await get(api, "/api/v1/documents", status="invalid", before=invalid[-1]["id"])
    assert [d["seq"] for d in older] == [4, 3, 2, 1]
    [kept] = await get(api, "/api/v1/documents", kind="gauge_reading", body="true")
    assert kept["body"] == {"value": 3} and kept["status"] == "ok"


@pytest.mark.parametrize("documents", [
    [{"seq": 0, "document": {}}],
    [{"document": {}}],
    [{"seq": "1", "document": {}}],
    {"seq": 1},
    [{"seq": 1, "document": {}}] * 1001,
])
async def test_a_document_list_without_sequences_is_a_malformed_batch(api: Api, documents: Any) -> None:
    resp = await api.sync({**batch("edge-1", [(1, wire(1))]), "documents": documents})
    assert resp.status_code == 422, resp.text
    assert resp.json()["detail"][0]["path"].startswith("documents")


@pytest.mark.parametrize("params", [
    {"tool": "x" * 65}, {"text": "y" * 101}, {"offset": "G99"}, {"offset": "G54.1"}, {"diameter": "-1"},
    {"diameter": "nan"}, {"min_holes": "-3"}, {"dialect": "mazatrol"}, {"cursor": "bm90IGEgY3Vyc29y"},
    {"cursor": "z" * 101}, {"limit": "0"}, {"has_errors": "perhaps"}, {"edge": "../../etc"}, {"tool": ""},
    {"limit": "501"},
])
async def test_bad_search_parameters_get_400_or_422_never_500(api: Api, params: dict[str, str]) -> None:
    resp = await api.client.get("/api/v1/programs", params=params, headers=auth(api.viewer))
    assert resp.status_code in (400, 422), resp.text
    assert resp.json()["detail"][0]["message"]


async def test_unknown_programs_and_devices_get_404_or_400_and_edges_cannot_read(api: Api) -> None:
    missing = "0" * 64
    assert (await api.client.get(f"/api/v1/programs/{missing}", headers=auth(api.viewer))).status_code == 404
    assert (await api.client.get(f"/api/v1/programs/{missing}/runs", headers=auth(api.viewer))).status_code == 404
    assert (await api.client.get("/api/v1/programs/NOTAHASH", headers=auth(api.viewer))).status_code == 422
    resp = await api.client.get("/api/v1/devices/press-9/runs", headers=auth(api.viewer))
    assert resp.status_code == 400 and "EXECUTION" in resp.json()["detail"][0]["message"]
    assert (await api.client.get("/api/v1/programs", headers=auth(api.edge))).status_code == 403
    assert (await api.client.get("/api/v1/programs")).status_code == 401


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def both(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Api]:
    database = {}
    if request.param == "postgres":
        database = {"url": await fresh_pg_database(request.getfixturevalue("pg_server"))}
    async with make_api(tmp_path, database=database) as client:
        yield client


@pytest.mark.parametrize(("path", "params"), [
    ("/api/v1/programs", {"text": "a\x00b"}), ("/api/v1/programs", {"tool": "drill\x00"}),
    ("/api/v1/assets", {"type": "Cutting\x00Tool"}), ("/api/v1/documents", {"key": "T1\x00"}),
    ("/api/v1/assets", {"cursor": base64.urlsafe_b64encode(b"aedge-1\nT\x001").decode()}),
])
async def test_a_nul_character_in_a_parameter_is_a_4xx_on_both_backends(both: Api, path: str,
                                                                        params: dict[str, str]) -> None:
    """PostgreSQL takes no NUL character in a text: a parameter carrying one must be refused as bad input, not
    sent to the database (which answered 503, 'retry after 2 s', as if it were down)."""
    resp = await both.client.get(path, params=params, headers=auth(both.viewer))
    assert resp.status_code in (400, 422), resp.text
    assert resp.json()["detail"][0]["message"]


async def test_a_program_search_waits_in_the_query_gate_like_history(tmp_path: Path) -> None:
    """A text search scans the programs: a token sending many must wait its turn, past the bound get 503."""
    async with make_api(tmp_path, queries={"max_running": 1, "max_queued": 0}) as api:
        resp = await api.sync({**batch("edge-1", [(1, wire(1))]), "documents": [program_doc(7, DRILL)]})
        assert resp.status_code == 200, resp.text
        async with api.ctx.queries.slot("user:someone-else"):  # another dashboard's query runs
            resp = await api.client.get("/api/v1/programs", params={"text": "bracket"}, headers=auth(api.viewer))
            assert resp.status_code == 503
            assert resp.headers["Retry-After"] == "2"
            assert "waiting already" in resp.json()["detail"][0]["message"]
        assert shas(await get(api, "/api/v1/programs", text="bracket")) == {DRILL["sha256"]}
