"""The simulator's clock: steps every machine at a fixed tick, publishes to Modbus and OPC-UA, runs faults.

Simulated time follows wall-clock time: a tick that comes late is caught up
by stepping the machines several times (always by the same ``tick``), so a
seed gives the same readings at the same simulated time. Fault times count
from the moment both servers listen.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from twinsim.faults import FaultSpec
from twinsim.machine import Machine
from twinsim.modbus_server import ModbusSim
from twinsim.opcua_server import NAMESPACE_URI, OpcUaSim
from twinsim.registers import CORE_HOLDING
from twinsim.station import Station

__all__ = ["SimSettings", "Simulator"]

log = logging.getLogger(__name__)

MAX_CATCH_UP_TICKS = 50
STOP_TIMEOUT = 10.0


@dataclass(frozen=True)
class SimSettings:
    machines: int = 3
    host: str = "127.0.0.1"
    modbus_port: int = 5020
    opcua_port: int = 4840
    seed: int = 1
    tick: float = 0.1
    faults: tuple[FaultSpec, ...] = field(default_factory=tuple)
    modbus: bool = True
    opcua: bool = True
    per_port: bool = True
    registers: int = CORE_HOLDING
    opcua_items: int = 0
    summary_every: float = 5.0  # 0: no summaries
    stations: int = 0  # PUR moulding stations, served over Modbus after the machines
    station_cycle: float = 120.0  # the stations' recipe cycle time, s


class Simulator:
    """Machines plus their servers. ``await run()`` serves until cancelled, then closes the servers."""

    def __init__(self, settings: SimSettings, out: Callable[[str], None] | None = None) -> None:
        self.settings = settings
        self._out = out or (lambda line: None)
        self.machines = [Machine(n, settings.seed) for n in range(1, settings.machines + 1)]
        self.stations = [Station(n, settings.seed, cycle_s=settings.station_cycle)
                         for n in range(1, settings.stations + 1)]
        for fault in settings.faults:
            if fault.machine is not None:
                self.machines[fault.machine - 1].inject(fault)
            elif fault.station is not None:
                self.stations[fault.station - 1].inject(fault)
        self.modbus = (
            ModbusSim(self.machines, settings.host, settings.modbus_port, per_port=settings.per_port,
                      registers=settings.registers, stations=self.stations)
            if settings.modbus else None
        )
        self.opcua = (
            OpcUaSim(self.machines, settings.host, settings.opcua_port, items=settings.opcua_items)
            if settings.opcua else None
        )
        self.ticks = 0
        self._online = {m.name: True for m in self.machines}
        self._changed: asyncio.Condition | None = None

    @property
    def sim_time(self) -> float:
        return self.ticks * self.settings.tick

    def machine(self, number: int) -> Machine:
        return self.machines[number - 1]

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Wait (without polling) until ``predicate()`` holds after a tick; wrap it in asyncio.timeout."""
        if self._changed is None:
            self._changed = asyncio.Condition()
        async with self._changed:
            await self._changed.wait_for(predicate)

    async def run(self, on_ready: Callable[[], None] | None = None) -> None:
        if self._changed is None:
            self._changed = asyncio.Condition()
        try:
            await self._start()
            self._announce()
            if on_ready is not None:
                on_ready()
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._clock(), name="twinsim-clock")
                if self.settings.summary_every > 0:
                    tg.create_task(self._summaries(), name="twinsim-summaries")
                for fault in self.settings.faults:
                    if fault.target == "opcua" and self.opcua is not None:
                        tg.create_task(self._restart_opcua(fault), name=f"twinsim-fault-{fault}")
        finally:
            await asyncio.shield(self._stop())

    async def _start(self) -> None:
        if self.modbus is not None:
            await self.modbus.start()
        if self.opcua is not None:
            try:
                await self.opcua.start()
            except OSError:
                await self._stop()
                raise

    async def _stop(self) -> None:
        try:
            async with asyncio.timeout(STOP_TIMEOUT):
                if self.modbus is not None:
                    await self.modbus.stop()
                if self.opcua is not None:
                    await self.opcua.stop()
        except TimeoutError:
            log.warning("the simulator's servers did not close within %.0f s; leaving anyway", STOP_TIMEOUT)

    def _announce(self) -> None:
        s = self.settings
        if self.modbus is not None:
            for ep in self.modbus.endpoints():
                self._out(f"modbus  {ep.machine:<11} {ep.host}:{ep.port} unit {ep.unit}")
        if self.opcua is not None:
            self._out(f"opcua   {self.opcua.endpoint} namespace {NAMESPACE_URI} (ns={self.opcua.namespace_index}), "
                      f"nodes like ns={self.opcua.namespace_index};s=Machine1.SpindleTemp")
        for fault in s.faults:
            self._out(f"fault   {fault}")

    async def _clock(self) -> None:
        loop = asyncio.get_running_loop()
        tick = self.settings.tick
        start = loop.time()
        behind_logged = False
        while True:
            due = int((loop.time() - start) / tick)
            if due - self.ticks > MAX_CATCH_UP_TICKS:
                if not behind_logged:
                    log.warning("the simulator fell %d ticks behind (CPU busy?); skipping ahead",
                                due - self.ticks)
                    behind_logged = True
                start += (due - self.ticks - 1) * tick  # simulated time pauses instead of jumping
                due = self.ticks + 1
            while self.ticks < due:
                for machine in self.machines:
                    machine.step(tick)
                for station in self.stations:
                    station.step(tick)
                self.ticks += 1
            await self._publish()
            await asyncio.sleep(max(0.0, start + (self.ticks + 1) * tick - loop.time()))

    async def _publish(self) -> None:
        if self.modbus is not None:
            self.modbus.tick()
            for machine in self.machines:
                if machine.online != self._online[machine.name]:
                    self._online[machine.name] = machine.online
                    await self.modbus.set_online(machine.name, machine.online)
        if self.opcua is not None:
            await self.opcua.tick()
        assert self._changed is not None
        async with self._changed:
            self._changed.notify_all()

    async def _summaries(self) -> None:
        while True:
            await asyncio.sleep(self.settings.summary_every)
            self._out(f"t={self.sim_time:.0f}s")
            for machine in self.machines:
                self._out("  " + machine.summary())
            for station in self.stations:
                self._out("  " + station.summary())

    async def _restart_opcua(self, fault: FaultSpec) -> None:
        assert self.opcua is not None
        await self.wait_for(lambda: self.sim_time >= fault.start)
        log.info("OPC-UA server %s restarts (fault %s)", self.opcua.endpoint, fault)
        await self.opcua.stop()
        await self.wait_for(lambda: self.sim_time >= fault.end)
        await self.opcua.start()
        log.info("OPC-UA server %s is back", self.opcua.endpoint)
