"""A simulated machine stops answering: its edge tells the operator in a plain sentence, in the cloud within
seconds and in `twinedge events` on the edge.

The real simulator (twinsim, two Modbus machines, one port each), the real edge daemon polling them and syncing to
a real twincloud process; the simulator takes machine-2 off the network 12 s after it starts.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.plant import Plant
from tests.e2e.test_cloud_sync import wait_for

STOP_AT = 12.0  # seconds after the simulator starts


async def operator_events(plant: Plant) -> list[dict[str, Any]]:
    cloud = plant.cloud
    async with httpx.AsyncClient(base_url=cloud.base_url, timeout=10,
                                 headers={"Authorization": f"Bearer {cloud.viewer_token}"}) as client:
        page = await client.get("/api/v1/events", params={"edge": plant.edge_id, "level": "operator"})
        return page.raise_for_status().json()["events"]  # type: ignore[no-any-return]


async def test_a_stopped_machine_is_an_operator_event_in_the_cloud_and_on_the_edge(tmp_path: Path) -> None:
    async with Plant(tmp_path, machines=2, faults=(f"machine-2:plc_restart@{STOP_AT:g}s+120s",)) as plant:
        daemon = await plant.start()
        modbus, sim_started = plant.modbus, plant.started_at
        found: list[dict[str, Any]] = []

        async def stopped_in_cloud() -> bool:
            found[:] = [e for e in await operator_events(plant)
                        if e["source"] == "machine-2" and e["kind"] == "source_lost"]
            return bool(found)

        await wait_for(stopped_in_cloud, timeout=STOP_AT + 30, every=0.1)
        seen_at = time.time()
        [lost] = found
        assert lost["message"].startswith(f"machine-2 stopped answering on 127.0.0.1:{modbus + 1}; retrying in ")
        assert lost["level"] == "operator" and lost["details"]["endpoint"] == f"127.0.0.1:{modbus + 1}"
        assert lost["ts"] - (sim_started + STOP_AT) < 5  # the edge noticed within seconds ...
        assert seen_at - lost["ts"] < 5  # ... and the cloud had it seconds later
        kinds = {e["kind"] for e in await operator_events(plant)}
        assert "edge_started" in kinds
        machine_1 = [e for e in await operator_events(plant) if e["source"] == "machine-1"]
        assert machine_1 == []  # the other machine kept answering: nothing for the operator

        shown = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "edge.cli", "events", "--socket", str(daemon.socket), "--json",
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = await shown.communicate()
        assert shown.returncode == 0, err.decode()
        local = [json.loads(line) for line in out.decode().splitlines()]
        assert any(e["message"] == lost["message"] and e["seq"] == lost["seq"] for e in local)
        assert all(e["level"] == "operator" for e in local)  # the default: operator events only
        text = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "edge.cli", "events", "--socket", str(daemon.socket), "--device", "none-such",
            stdout=subprocess.PIPE)
        assert (await text.communicate())[0] == b""
        plain = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "edge.cli", "events", "--socket", str(daemon.socket), "--level", "technical",
            "--since", "10m", stdout=subprocess.PIPE)
        printed = (await plain.communicate())[0].decode()
        assert "machine-2 stopped answering on" in printed and "source_connected" in printed
