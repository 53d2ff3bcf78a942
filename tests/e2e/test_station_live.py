"""The PUR foam model live on the simulator's moulding station, and its replay.

A real twinsim station (shots every 15 s, the mould heater failing at 20 s so
the mould temperature moves), a real edge daemon polling it over Modbus TCP,
and a real cloud with the ``pur-foam`` model bound to it. After a few shots,
the engine's test route replays the binding over the same range from an
empty state: it reproduces every live point within the solver tolerance.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.e2e.plant import STATION, StationPlant

CYCLE_S = 15.0
RTOL = 1e-6  # the binding's solver rtol


async def test_live_demould_predictions_on_the_station_equal_their_replay(tmp_path: Path) -> None:
    async with StationPlant(tmp_path, cycle_s=CYCLE_S, faults=("station-1:cold_mould@20s",)) as plant:
        binding = await plant.bind()
        name = binding["name"]
        async with asyncio.timeout(75):  # three shots (15, 30, 45 s), then a few readings of the third
            while True:
                rows = await plant.get(f"/api/v1/process/bindings/{name}/points", limit=10_000)
                shots = (await plant.get(f"/api/v1/twin/{STATION}/state"))["values"]["shot_count"]["value"]
                if shots >= 3 and len(rows) > 0 and rows[-1]["ts"] > rows[0]["ts"] + 2 * CYCLE_S + 5:
                    break
                await asyncio.sleep(1.0)
        info = await plant.get(f"/api/v1/process/bindings/{name}")
        live = await plant.get(f"/api/v1/process/bindings/{name}/points", limit=10_000)
        history = await plant.get("/api/v1/twin/history", device=STATION, fields="shot_count", limit=10_000)
        first = min(ts for series in history["series"] for ts, _ in series["points"])  # the first reading
        watermark = info["watermark"]
        live = [p for p in live if p["ts"] <= watermark]
        replay = await plant.post("/api/v1/process/test", {
            "name": name, "start": f"{first:.6f}", "stop": f"{watermark + 1e-6:.6f}", "max_points": 10_000})
    assert not replay["truncated"]
    got = {(p["field"], round(p["ts"] * 1e6)): p for p in replay["points"]}
    assert len(got) == len(live), (len(got), len(live))
    fields = {p["field"] for p in live}
    assert fields == {f"{name}.{o}" for o in ("t_demold", "t_core", "alpha", "p_mould")}
    valued = 0
    for p in live:
        r = got[(p["field"], round(p["ts"] * 1e6))]
        assert (r["value"] is None) == (p["value"] is None), (p, r)
        if p["value"] is not None:
            valued += 1
            assert abs(r["value"] - p["value"]) <= RTOL * abs(p["value"]) + 1e-9, (p, r)
    assert valued > 40
    demould = [p["value"] for p in live if p["field"] == f"{name}.t_demold" and p["value"] is not None]
    assert all(60 < v < 300 for v in demould), demould
    assert {p["backend"] for p in live} == {"cvode"}
