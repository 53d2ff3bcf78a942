"""The moulding station live: a real twinsim station, a real edge daemon polling it and a real cloud with the
PUR foam model bound to it. Shared by the live end-to-end test and ``bench/bench_station.py``.

    async with StationPlant(tmp, cycle_s=20) as plant:
        await plant.bind()
        ...  plant.cloud.base_url, plant.cloud.admin_token
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from tests.cloud.server import CloudServer
from tests.e2e.daemon import EdgeDaemon
from tests.support import free_ports

EDGE = "edge-station"
STATION = "station-1"


def pur_binding(cycle_s: float, name: str = "pur") -> dict[str, Any]:
    """The PUR foam model on the station: each shot-counter change opens a run, each mould temperature
    reading re-solves it (as `make run` binds it)."""
    return {"name": name, "device": STATION, "spec": {
        "kind": "model", "model": "pur-foam", "start_on": "shot_count", "start_when": "change",
        "inputs": {"mould_temperature": {"sensor": "mould_temp", "unit": "degC"}},
        "parameters": {"material": "water-pentane", "shot_mass_kg": 0.3, "mould_volume_l": 10.0,
                       "mould_area_m2": 0.33, "cycle_time_s": max(cycle_s, 10.0), "alpha_demold": 0.6,
                       "hardness_demold": 10.0, "horizon_s": 300.0},
        "solver": {"backend": "cvode", "rtol": 1e-6, "atol": 1e-9},
        "outputs": {o: f"{name}.{o}" for o in ("t_demold", "t_core", "alpha", "p_mould")},
        "max_run_s": max(600.0, 2 * cycle_s)}}


class StationPlant:
    """Cloud, simulator (one machine, one moulding station, Modbus only) and an edge reading the station."""

    def __init__(self, directory: Path, *, cycle_s: float = 20.0, poll: str = "500ms", uplink_interval: str = "100ms",
                 faults: tuple[str, ...] = ()) -> None:
        self.dir = directory
        self.cycle_s = cycle_s
        self.poll = poll
        self.uplink_interval = uplink_interval
        self.faults = faults
        self.cloud = CloudServer(directory / "cloud", edges=[EDGE])
        self.sim: asyncio.subprocess.Process | None = None
        self.edge: EdgeDaemon | None = None
        self.http = httpx.AsyncClient(timeout=30)

    def _sim_args(self, modbus: int) -> list[str]:
        return ["--machines", "1", "--stations", "1", "--modbus-port", str(modbus), "--no-opcua"]

    async def __aenter__(self) -> StationPlant:
        try:
            await self._start()
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def _start(self) -> None:
        await asyncio.to_thread(self.cloud.start)
        modbus = free_ports(2)
        gen = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "twinsim.cli", "config", *self._sim_args(modbus), "--poll-interval", self.poll,
            stdout=subprocess.PIPE)
        generated = (await gen.communicate())[0].decode()
        station_source = generated[generated.index(f"# {STATION}:"):]
        ready = self.dir / "sim.ready"
        faults = [arg for f in self.faults for arg in ("--fault", f)]
        self.sim = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "twinsim.cli", "run", *self._sim_args(modbus), "--station-cycle",
            f"{self.cycle_s:g}s", *faults, "--summary-every", "0s", "--ready-file", str(ready),
            "--log-level", "warning", stdout=subprocess.DEVNULL)
        uplink = (f'\n[uplink]\nurl = "{self.cloud.base_url}"\ntoken = "{self.cloud.edge_tokens[EDGE]}"\n'
                  f'retry_initial = "50ms"\nretry_max = "500ms"\ntimeout = "5s"\n'
                  f'interval = "{self.uplink_interval}"\n\n')
        self.edge = EdgeDaemon(self.dir / "edge", uplink + station_source, edge_id=EDGE)
        async with asyncio.timeout(60):
            while not ready.exists():
                if self.sim.returncode is not None:
                    raise RuntimeError(f"twinsim exited with {self.sim.returncode}")
                await asyncio.sleep(0.1)
        await self.edge.start()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self.edge is not None and self.edge.proc is not None:
            await self.edge.stop()
        if self.sim is not None and self.sim.returncode is None:
            self.sim.terminate()
            await self.sim.wait()
        await asyncio.to_thread(self.cloud.stop)
        await self.http.aclose()

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.cloud.admin_token}"}

    async def get(self, path: str, **params: Any) -> Any:
        response = await self.http.get(self.cloud.base_url + path, params=params, headers=self.headers)
        response.raise_for_status()
        return response.json()

    async def post(self, path: str, body: Any) -> Any:
        response = await self.http.post(self.cloud.base_url + path, json=body, headers=self.headers)
        assert response.status_code < 300, response.text
        return response.json()

    async def bind(self, binding: dict[str, Any] | None = None) -> dict[str, Any]:
        """Once the station's fields are in the cloud: define the binding (the PUR model by default)."""
        async with asyncio.timeout(60):
            while STATION not in await self.get("/api/v1/twin/devices"):
                await asyncio.sleep(0.2)
        binding = binding or pur_binding(self.cycle_s)
        await self.post("/api/v1/process/bindings", binding)
        return binding
