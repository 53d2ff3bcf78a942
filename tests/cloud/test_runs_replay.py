"""The Okuma runs end to end at the protocol: the simulator's MTConnect agent replays the recording as fast as it
can, the edge's MTConnect source maps it (frames, the device model, the tool assets), and the cloud, fed those
frames and documents by sync batches, finds the four runs with their recorded durations, linked to the harvested
programs and calibrating the machine."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from edge.sources.mtconnect.source import MTConnectSource
from tests.cloud.apiclient import Api, auth, batch, make_api
from tests.cloud.documents import program_doc
from tests.cloud.test_runs import okuma_programs
from tests.edge.sources.mtconnect.sourcesupport import HoldingSink, config, replay_whole, running
from twinsim.mtconnect import AgentSettings, MTConnectAgent

# In the file's order (the agent re-times the spliced recording into one timeline, keeping each run's duration).
FILE_ORDER = [("IMTS-2022-2-HOB.MIN", 186.7), ("IMTS-2022-1E-mm.MIN", 605.0), ("IMTS-2022-4B-mm.MIN", 548.9),
              ("IMTS-2022-3-TRAN.MIN", 16.8)]


async def test_the_replayed_recording_gives_the_four_runs_in_the_cloud(tmp_path: Path) -> None:
    async with make_api(tmp_path, sync={"max_future_skew": "2h"}) as api:  # the replay runs ahead of the clock
        await check(api)


async def check(api: Api) -> None:
    async with MTConnectAgent(AgentSettings(speed=math.inf, paused=True)) as agent:
        sink = HoldingSink()
        async with running(MTConnectSource(config(agent), sink)) as source:
            await replay_whole(agent, source, sink)
    frames = [f.to_wire() for f in sink.frames if f.device_id == "OKUMA"]
    docs = [d.model_dump(mode="json") for d in sink.documents]
    assert {d["kind"] for d in docs} == {"mtconnect_device", "asset"}
    programs = okuma_programs()
    for start in range(0, len(frames), 5000):
        body = batch("edge-1", [(start + k + 1, f) for k, f in enumerate(frames[start:start + 5000])])
        if start == 0:
            body["documents"] = [{"seq": k + 1, "document": d} for k, d in enumerate(docs)]
            body["documents"] += [program_doc(len(docs) + k + 1, p) for k, p in enumerate(programs)]
        resp = await api.sync(body)
        assert resp.status_code == 200 and not resp.json()["rejected"], resp.text[:500]
    lo, hi = min(f["ts"] for f in frames), max(f["ts"] for f in frames) + 1
    resp = await api.client.get("/api/v1/devices/OKUMA/runs", params={"from": lo, "to": hi}, headers=auth(api.viewer))
    assert resp.status_code == 200, resp.text
    page = resp.json()
    assert [r["program"] for r in page["runs"]] == [name for name, _ in FILE_ORDER]
    assert [r["duration_s"] for r in page["runs"]] == pytest.approx([s for _, s in FILE_ORDER], abs=0.05)
    assert all(r["completed"] and r["end_state"] == "PROGRAM_COMPLETED" for r in page["runs"])
    by_name = {p["path"].split("/")[-1]: p["sha256"] for p in programs}
    assert [r["sha256"] for r in page["runs"]] == [by_name[name] for name, _ in FILE_ORDER]
    assert page["calibrations"][0]["runs"] == 4
    assets = (await api.client.get("/api/v1/assets", params={"removed": "true"}, headers=auth(api.viewer))).json()
    assert assets["assets"] and all(a["asset_type"] == "CuttingTool" for a in assets["assets"])
    units = (await api.client.get("/api/v1/devices/OKUMA/mtconnect", headers=auth(api.viewer))).json()
    assert {i["key"]: i["units"] for i in units[0]["items"]}["LX1actm"] == "MILLIMETER"
