"""OPC-UA side of the simulator: the same machines as Objects with Variables, in namespace urn:twinedge:sim.

Node ids are strings in namespace 2: ``ns=2;s=Machine1.SpindleTemp``. Values
are written through ``Server.write_attribute_value`` (the fast path, which
also feeds subscriptions), and only when they changed. A failed sensor shows
as ``BadSensorFailure`` on its variable; a restarting PLC as
``BadNoCommunication`` on all its variables. ``items`` extra Double variables
(``ns=2;s=Bench.Item0000``...) change on every tick for benchmarks.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC

from asyncua import Server, ua

from twinsim.machine import Machine, Reading

__all__ = ["MAX_ITEMS", "NAMESPACE_URI", "OPCUA_VARIABLES", "OpcUaSim", "OpcUaVariable", "node_id"]

log = logging.getLogger(__name__)

NAMESPACE_URI = "urn:twinedge:sim"
MAX_ITEMS = 100_000
_D, _U, _B = ua.VariantType.Double, ua.VariantType.UInt32, ua.VariantType.Boolean


@dataclass(frozen=True)
class OpcUaVariable:
    browse_name: str
    variant: ua.VariantType
    value: Callable[[Reading], float | int | bool]
    unit: str = ""

    @property
    def type_name(self) -> str:
        return self.variant.name


OPCUA_VARIABLES: tuple[OpcUaVariable, ...] = (
    OpcUaVariable("SpindleTemp", _D, lambda r: r.spindle_temp_c, "°C"),
    OpcUaVariable("MotorTemp", _D, lambda r: r.motor_temp_c, "°C"),
    OpcUaVariable("CoolantTemp", _D, lambda r: r.coolant_temp_c, "°C"),
    OpcUaVariable("CoolantFlow", _D, lambda r: r.coolant_flow_l_min, "l/min"),
    OpcUaVariable("AmbientTemp", _D, lambda r: r.ambient_temp_c, "°C"),
    OpcUaVariable("VibrationRms", _D, lambda r: r.vibration_rms_mm_s, "mm/s"),
    OpcUaVariable("MotorCurrent", _D, lambda r: r.motor_current_a, "A"),
    OpcUaVariable("Pressure", _D, lambda r: r.pressure_bar, "bar"),
    OpcUaVariable("SpindleSpeed", _D, lambda r: float(r.spindle_speed_rpm), "rpm"),
    OpcUaVariable("Load", _D, lambda r: float(r.load_pct), "%"),
    OpcUaVariable("CycleCount", _U, lambda r: r.cycle_count),
    OpcUaVariable("Uptime", _U, lambda r: r.uptime_s, "s"),
    OpcUaVariable("AlarmCode", _U, lambda r: r.alarm_code),
    OpcUaVariable("Running", _B, lambda r: r.running),
    OpcUaVariable("Fault", _B, lambda r: r.fault),
    OpcUaVariable("OvertempAlarm", _B, lambda r: r.overtemp_alarm),
    OpcUaVariable("VibrationAlarm", _B, lambda r: r.vibration_alarm),
    OpcUaVariable("SensorFault", _B, lambda r: r.sensor_fault),
)
_SENSOR_FAILURE = ua.StatusCode(ua.UInt32(ua.StatusCodes.BadSensorFailure))
_NO_COMMUNICATION = ua.StatusCode(ua.UInt32(ua.StatusCodes.BadNoCommunication))
_GOOD = ua.StatusCode(ua.UInt32(ua.StatusCodes.Good))


def _nid(identifier: str, ns: int) -> ua.NodeId:
    return ua.NodeId(ua.String(identifier), ua.Int16(ns))


def object_name(machine: Machine | int) -> str:
    number = machine if isinstance(machine, int) else machine.number
    return f"Machine{number}"


def node_id(machine: Machine | int, browse_name: str, ns: int = 2) -> str:
    """``ns=2;s=Machine1.SpindleTemp``: the string node id of one machine variable."""
    return f"ns={ns};s={object_name(machine)}.{browse_name}"


class OpcUaSim:
    """An asyncua server exposing the machines; ``await tick()`` publishes their current readings."""

    def __init__(self, machines: Sequence[Machine], host: str = "127.0.0.1", port: int = 4840, *,
                 items: int = 0) -> None:
        if not 0 <= items <= MAX_ITEMS:
            raise ValueError(f"items must be 0..{MAX_ITEMS} (got {items})")
        self.machines = list(machines)
        self.host = host
        self.port = port
        self.items = items
        self.endpoint = f"opc.tcp://{host}:{port}"
        self._server: Server | None = None
        self._listening = False
        self._ns = 2
        self._nodes: dict[str, list[ua.NodeId]] = {}  # machine name -> node ids in OPCUA_VARIABLES order
        self._last: dict[ua.NodeId, object] = {}
        self._offline: set[str] = set()
        self._bench: list[ua.NodeId] = []
        self._tick = 0

    @property
    def namespace_index(self) -> int:
        return self._ns

    async def start(self) -> None:
        """Build the address space and listen (takes about 3 s); raises OSError when the port is taken."""
        started = time.monotonic()
        server = Server()
        await server.init()
        server.set_endpoint(self.endpoint)
        server.set_server_name("twinsim plant simulator")
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        server.set_identity_tokens([ua.AnonymousIdentityToken])
        self._ns = await server.register_namespace(NAMESPACE_URI)
        objects = server.nodes.objects
        for machine in self.machines:
            name = object_name(machine)
            obj = await objects.add_object(_nid(name, self._ns), ua.QualifiedName(name, self._ns))
            reading = machine.reading()
            ids = []
            for var in OPCUA_VARIABLES:
                nid = _nid(f"{name}.{var.browse_name}", self._ns)
                await obj.add_variable(nid, ua.QualifiedName(var.browse_name, self._ns),
                                       ua.Variant(var.value(reading), var.variant))
                ids.append(nid)
            self._nodes[machine.name] = ids
        if self.items:
            bench = await objects.add_object(_nid("Bench", self._ns), ua.QualifiedName("Bench", self._ns))
            for i in range(self.items):
                nid = _nid(f"Bench.Item{i:04d}", self._ns)
                await bench.add_variable(nid, ua.QualifiedName(f"Item{i:04d}", self._ns), ua.Variant(0.0, _D))
                self._bench.append(nid)
        self._last.clear()
        self._offline.clear()
        try:
            await server.start()
        except OSError as exc:
            raise OSError(f"cannot listen for OPC-UA on {self.host}:{self.port} (port in use?)") from exc
        self._server = server
        self._listening = True
        await self.tick()
        log.info("OPC-UA server listening at %s with %d machines and %d bench items (started in %.1f s)",
                 self.endpoint, len(self.machines), self.items, time.monotonic() - started)

    async def stop(self) -> None:
        server, self._server = self._server, None  # ticks stop publishing at once
        if server is not None:
            await server.stop()
        self._listening = False

    @property
    def running(self) -> bool:
        """True while the port accepts connections."""
        return self._listening

    async def tick(self) -> None:
        """Publish every machine's current reading (changed values only) and move the bench items."""
        server = self._server
        if server is None:
            return
        self._tick += 1
        now = ua.DateTime.now(UTC)
        last = self._last
        for machine in self.machines:
            ids = self._nodes[machine.name]
            reading = machine.reading()
            if not reading.online:
                if machine.name not in self._offline:
                    self._offline.add(machine.name)
                    for nid in ids:
                        await server.write_attribute_value(nid, ua.DataValue(StatusCode=_NO_COMMUNICATION,
                                                                             SourceTimestamp=now, ServerTimestamp=now))
                        last[nid] = _NO_COMMUNICATION
                continue
            self._offline.discard(machine.name)
            for var, nid in zip(OPCUA_VARIABLES, ids, strict=True):
                if var.browse_name == "SpindleTemp" and reading.spindle_temp_status == "failed":
                    if last.get(nid) is not _SENSOR_FAILURE:
                        await server.write_attribute_value(nid, ua.DataValue(StatusCode=_SENSOR_FAILURE,
                                                                             SourceTimestamp=now, ServerTimestamp=now))
                        last[nid] = _SENSOR_FAILURE
                    continue
                value = var.value(reading)
                if last.get(nid) == value and type(last.get(nid)) is type(value):
                    continue
                last[nid] = value
                await server.write_attribute_value(
                    nid, ua.DataValue(ua.Variant(value, var.variant), _GOOD, SourceTimestamp=now, ServerTimestamp=now)
                )
        if self._bench:
            base = float(self._tick)
            for i, nid in enumerate(self._bench):
                await server.write_attribute_value(
                    nid, ua.DataValue(ua.Variant(base + i * 0.001, _D), _GOOD, SourceTimestamp=now,
                                      ServerTimestamp=now)
                )
