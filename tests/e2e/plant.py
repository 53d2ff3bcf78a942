"""A real plant for end-to-end tests: the twinsim simulator, a real edge daemon polling it and a real cloud.

`Plant` runs machines; `StationPlant` a moulding station with the PUR foam model bound to it (shared by the live
end-to-end test and ``bench/bench_station.py``).

    async with Plant(tmp, machines=2, faults=("machine-2:plc_restart@12s",)) as plant:
        ...  # the cloud is up: add users, models
        daemon = await plant.start()  # the simulator, then the edge; plant.started_at, plant.modbus

    async with StationPlant(tmp, cycle_s=20) as plant:
        await plant.bind()
        ...  plant.cloud.base_url, plant.cloud.admin_token
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Awaitable, Callable
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


class Plant:
    """Cloud, simulator (Modbus only) and an edge daemon polling it. Entering starts the cloud; `start()` starts
    the simulator and the edge, so a test can prepare the cloud (users, models) before the plant runs."""

    def __init__(self, directory: Path, *, machines: int = 1, stations: int = 0, edge_id: str = "edge-e2e",
                 poll: str = "200ms", uplink_interval: str = "100ms", faults: tuple[str, ...] = (),
                 sources_from: str = "[[sources]]", edge_toml: str = "", run_args: tuple[str, ...] = ()) -> None:
        self.dir = directory
        self.machines = machines
        self.stations = stations
        self.edge_id = edge_id
        self.poll = poll
        self.uplink_interval = uplink_interval
        self.faults = faults
        self.sources_from = sources_from
        self.edge_toml = edge_toml
        self.run_args = run_args
        self.cloud = CloudServer(directory / "cloud", edges=[edge_id])
        self.modbus = 0  # the first machine's Modbus port, once started; the others follow it
        self.started_at = 0.0  # when the simulator was serving (epoch seconds), once started
        self.sim: asyncio.subprocess.Process | None = None
        self.edge: EdgeDaemon | None = None
        self.http = httpx.AsyncClient(timeout=30)

    def _sim_args(self) -> list[str]:
        stations = ["--stations", str(self.stations)] if self.stations else []
        return ["--machines", str(self.machines), *stations, "--modbus-port", str(self.modbus), "--no-opcua"]

    async def __aenter__(self) -> Plant:
        await self._entered(self._start_cloud)
        return self

    async def _entered(self, start: Callable[[], Awaitable[None]]) -> None:
        try:
            await start()
        except BaseException:
            await self.__aexit__(None, None, None)
            raise

    async def _start_cloud(self) -> None:
        await asyncio.to_thread(self.cloud.start)

    async def start(self) -> EdgeDaemon:
        """The simulator, then (once it serves) the edge daemon reading it, which is returned."""
        self.modbus = free_ports(self.machines + self.stations)
        gen = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "twinsim.cli", "config", *self._sim_args(), "--poll-interval", self.poll,
            stdout=subprocess.PIPE)
        generated = (await gen.communicate())[0].decode()
        sources = generated[generated.index(self.sources_from):]
        ready = self.dir / "sim.ready"
        faults = [arg for f in self.faults for arg in ("--fault", f)]
        self.sim = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "twinsim.cli", "run", *self._sim_args(), *self.run_args, *faults,
            "--summary-every", "0s", "--ready-file", str(ready), "--log-level", "warning", stdout=subprocess.DEVNULL)
        uplink = (f'\n[uplink]\nurl = "{self.cloud.base_url}"\ntoken = "{self.cloud.edge_tokens[self.edge_id]}"\n'
                  f'retry_initial = "50ms"\nretry_max = "500ms"\ntimeout = "5s"\n'
                  f'interval = "{self.uplink_interval}"\n')
        self.edge = EdgeDaemon(self.dir / "edge", uplink + self.edge_toml + "\n" + sources, edge_id=self.edge_id)
        async with asyncio.timeout(60):
            while not ready.exists():
                if self.sim.returncode is not None:
                    raise RuntimeError(f"twinsim exited with {self.sim.returncode}")
                await asyncio.sleep(0.1)
        self.started_at = ready.stat().st_mtime
        await self.edge.start()
        return self.edge

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


class StationPlant(Plant):
    """One machine and one moulding station, with an edge reading the station; entering starts it all."""

    def __init__(self, directory: Path, *, cycle_s: float = 20.0, poll: str = "500ms", uplink_interval: str = "100ms",
                 faults: tuple[str, ...] = ()) -> None:
        super().__init__(directory, machines=1, stations=1, edge_id=EDGE, poll=poll, uplink_interval=uplink_interval,
                         faults=faults, sources_from=f"# {STATION}:", run_args=("--station-cycle", f"{cycle_s:g}s"))
        self.cycle_s = cycle_s

    async def __aenter__(self) -> StationPlant:
        await self._entered(self._start_all)
        return self

    async def _start_all(self) -> None:
        await self._start_cloud()
        await self.start()

    async def bind(self, binding: dict[str, Any] | None = None) -> dict[str, Any]:
        """Once the station's fields are in the cloud: define the binding (the PUR model by default)."""
        async with asyncio.timeout(60):
            while STATION not in await self.get("/api/v1/twin/devices"):
                await asyncio.sleep(0.2)
        binding = binding or pur_binding(self.cycle_s)
        await self.post("/api/v1/process/bindings", binding)
        return binding
