"""The MTConnect acceptance test: the Okuma recording replayed fast through the simulator's agent, the edge
daemon SIGKILLed 20 times at random moments, and in the cloud every observation exactly once.

For every key of every device the cloud's series (values in time order, UNAVAILABLE read from the
``<key>.quality`` flag) must equal the agent's observations of that item in sequence order: nothing
missing, nothing twice, same values.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cloud.server import CloudServer
from tests.e2e.daemon import EdgeDaemon
from tests.edge.sources.mtconnect.sourcesupport import agent_series
from twinsim.mtconnect import AgentSettings, MTConnectAgent

pytestmark = pytest.mark.slow

KILLS = 20
EDGE = "edge-cnc"
DEVICE_IDS = {"OKUMA.123456": "OKUMA", "Mazak": "Mazak"}


async def cloud_series(cloud: CloudServer, device: str) -> dict[tuple[str, str], list[Any]]:
    """Per (device, key): the stored values in time order, None where the key was flagged unavailable."""
    points: dict[str, list[tuple[float, Any]]] = {}
    cursor: str | None = None
    async with httpx.AsyncClient(base_url=cloud.base_url, timeout=30,
                                 headers={"Authorization": f"Bearer {cloud.admin_token}"}) as http:
        while True:
            params = {"device": device, "limit": "10000", **({"cursor": cursor} if cursor else {})}
            response = await http.get("/api/v1/twin/history", params=params)
            response.raise_for_status()
            page = response.json()
            for series in page["series"]:
                points.setdefault(series["field"], []).extend((ts, v) for ts, v in series["points"])
            cursor = page.get("next_cursor")
            if not cursor:
                break
    merged: dict[str, list[tuple[float, Any]]] = {}
    for field, pts in points.items():
        if field.endswith(".quality"):
            merged.setdefault(field.removesuffix(".quality"), []).extend((ts, None) for ts, v in pts
                                                                         if v == "unavailable")
        else:
            merged.setdefault(field, []).extend(pts)
    return {(device, key): [v for _, v in sorted(pts, key=lambda p: p[0])] for key, pts in merged.items()}


def okuma(status: dict[str, Any]) -> dict[str, Any]:
    """The MTConnect source's detail in the edge's status."""
    return next(s for s in status["sources"] if s["name"] == "okuma")["detail"]


async def synced(daemon: EdgeDaemon, agent: MTConnectAgent) -> bool:
    status = await daemon.status()
    return okuma(status)["next_sequence"] == agent.buffer.next_sequence and status["queue"]["depth"] == 0


async def seeded(daemon: EdgeDaemon) -> None:
    """Wait until the edge's first session has taken the agent's state from ``/current``. A first start reads
    from the state then (not the agent's whole buffer): the replay must not begin before it, or the observations
    it replaced in ``/current`` would count as lost."""
    async with asyncio.timeout(60):
        while okuma(await daemon.status())["next_sequence"] is None:
            await asyncio.sleep(0.05)


async def test_twenty_kills_lose_and_repeat_no_observation(tmp_path: Path) -> None:
    rng = random.Random(14_2026)
    cloud = CloudServer(tmp_path / "cloud", edges=[EDGE])
    await asyncio.to_thread(cloud.start)
    try:
        # wall-clock timestamps: the cloud refuses data from too far in the future (a fast replay would be)
        async with MTConnectAgent(AgentSettings(speed=45.0, paused=True, timestamps="wall")) as agent:
            uplink = (f'\n[uplink]\nurl = "{cloud.base_url}"\ntoken = "{cloud.edge_tokens[EDGE]}"\n'
                      'retry_initial = "50ms"\nretry_max = "500ms"\ntimeout = "5s"\ninterval = "50ms"\n')
            source = (f'\n[[sources]]\nkind = "mtconnect"\nname = "okuma"\nurl = "{agent.url}"\n'
                      'heartbeat = "1s"\ninterval = "20ms"\n')
            daemon = EdgeDaemon(tmp_path / "edge", uplink + source, edge_id=EDGE)
            kills = while_replaying = 0
            while kills < KILLS:
                await daemon.start()
                if kills == 0:
                    await seeded(daemon)
                    agent.resume()
                await asyncio.sleep(rng.uniform(0.05, 1.0))
                await daemon.kill()
                kills += 1
                while_replaying += not agent.replay_done.is_set()
            assert while_replaying >= KILLS // 2, "the replay ended before most kills: slow it down"
            await daemon.start()
            async with asyncio.timeout(120):
                await agent.replay_done.wait()
                while not await synced(daemon, agent):
                    await asyncio.sleep(0.2)
            status = await daemon.status()
            assert await daemon.stop() == 0
            want = agent_series(agent.produced, DEVICE_IDS)
            got = {**await cloud_series(cloud, "OKUMA"), **await cloud_series(cloud, "Mazak")}
    finally:
        await asyncio.to_thread(cloud.stop)
    # each frame says the highest sequence it covers: in time order they only grow (no frame twice)
    for device in ("OKUMA", "Mazak"):
        seqs = got.pop((device, "metrics.mtconnect.seq"))
        assert seqs == sorted(set(seqs)) and seqs
    missing = sum(max(0, len(v) - len(got.get(k, []))) for k, v in want.items())
    extra = sum(max(0, len(v) - len(want.get(k, []))) for k, v in got.items())
    differ = {k: (len(want.get(k, [])), len(got.get(k, []))) for k in sorted(set(want) | set(got))
              if want.get(k) != got.get(k)}
    assert (missing, extra) == (0, 0), f"(device, key): (observations, stored) that differ: {differ}"
    assert got == want
    assert sum(map(len, got.values())) == len(agent.produced) > 25_000
    assert okuma(status)["gaps"] == 0
