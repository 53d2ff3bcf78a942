"""The harvester's records as the cloud reads them: real programs in a real folder, harvested by the edge's program
source, synced to the cloud app, found there by tool, work offset, holes and text, and a rename followed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge.sources.programs.source import ProgramsSource
from tests.cloud.apiclient import Api, auth, batch
from tests.edge.sources.test_programs import FakeSink, config

DRILLING = """%
O2001 (BRACKET - DRILL AND TAP)
(MATERIAL 6061)
G21 G90 G17 G40 G80
T3 M6 (T3 8.5MM DRILL)
G54.1 P2
G0 X10. Y10. S1200 M3
G43 H3 Z25.
G99 G81 X10. Y10. Z-12. R2. F150.
X30.
X50.
G80
T7 M6 (T7 M10 TAP)
G55
G43 H7 Z25.
G84 X10. Y10. Z-10. R3. F375. S250
X30.
G80
G28 G91 Z0.
M30
%
"""


async def sync_documents(api: Api, sink: FakeSink, first_seq: int) -> None:
    docs = [{"seq": first_seq + k, "document": d.model_dump(mode="json")} for k, d in enumerate(sink.documents())]
    resp = await api.sync({**batch("edge-1", []), "documents": docs})
    assert resp.status_code == 200 and resp.json()["documents_acked_through"] == docs[-1]["seq"], resp.text[:300]


async def programs(api: Api, **params: Any) -> list[dict[str, Any]]:
    resp = await api.client.get("/api/v1/programs", params=params, headers=auth(api.viewer))
    assert resp.status_code == 200, resp.text
    return resp.json()["programs"]  # type: ignore[no-any-return]


async def test_a_harvested_program_is_found_by_its_features_and_followed_through_a_rename(
        api: Api, tmp_path: Path) -> None:
    (tmp_path / "bracket.nc").write_text(DRILLING)
    sink = FakeSink()
    source = ProgramsSource(config(tmp_path), sink)
    await source.scan_once()
    await sync_documents(api, sink, 1)
    [found] = await programs(api, tool="T7")
    assert (found["number"], found["tools"], found["holes"], found["device"]) == ("O2001", [3, 7], 5, "vmc-2")
    assert found["offsets"] == ["G54.1 P2", "G55"]
    assert [p["path"] for p in await programs(api, offset="g54.1 p2")] == ["bracket.nc"]
    assert [p["path"] for p in await programs(api, tool="tap")] == ["bracket.nc"]
    assert [p["path"] for p in await programs(api, diameter=8.5)] == ["bracket.nc"]
    assert [p["path"] for p in await programs(api, text="6061")] == ["bracket.nc"]
    assert await programs(api, min_holes=6) == []
    (tmp_path / "bracket.nc").rename(tmp_path / "bracket-op1.nc")
    await source.scan_once()
    await sync_documents(api, sink, 1)  # the earlier document again (a lost ack), and the rename
    [moved] = await programs(api)
    assert moved["path"] == "bracket-op1.nc" and moved["sha256"] == found["sha256"]
    shown = (await api.client.get(f"/api/v1/programs/{found['sha256']}", headers=auth(api.viewer))).json()
    assert [(r["from"], r["to"]) for r in shown["renames"]] == [("bracket.nc", "bracket-op1.nc")]
    assert shown["estimate"]["total_s"] > 0 and shown["tool_uses"][1]["comment"] == "T7 M10 TAP"
