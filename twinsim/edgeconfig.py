"""``twinsim config``: an edge config (TOML) that reads the simulator exactly as it serves.

The register entries come from the same table the Modbus server encodes
(``twinsim.registers``) and the node ids from the same list the OPC-UA server
builds (``twinsim.opcua_server``), so the two cannot drift apart. Modbus
frames carry the device id ``machine-<n>``, OPC-UA frames ``machine-<n>-opcua``,
so the two paths never collide on one (device, timestamp) identity.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass

from shared.frame import MAX_SENSORS
from twinsim.opcua_server import OPCUA_VARIABLES, node_id
from twinsim.registers import (
    COILS,
    CORE_HOLDING,
    DISCRETE_INPUTS,
    HOLDING,
    INPUT,
    STATION_COILS,
    STATION_HOLDING,
    RegisterField,
)

__all__ = ["MAX_SENSORS_PER_FRAME", "ConfigSettings", "render_edge_config"]

MAX_SENSORS_PER_FRAME = MAX_SENSORS  # one frame holds at most this many values
BENCH_ITEMS_PER_DEVICE = 500

Scalar = str | int | float | bool


@dataclass(frozen=True)
class ConfigSettings:
    machines: int = 3
    host: str = "127.0.0.1"
    modbus_port: int = 5020
    opcua_port: int = 4840
    per_port: bool = True
    modbus: bool = True
    opcua: bool = True
    registers: int = CORE_HOLDING
    opcua_items: int = 0
    stations: int = 0
    edge_id: str = "sim-edge"
    state_dir: str = ".twinedge"
    poll_interval: str = "1s"
    publishing_interval: str = "1s"
    command: str = ""


def _value(value: Scalar) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value, ensure_ascii=False)  # a JSON string is a valid TOML basic string


def _table(header: str, items: Iterable[tuple[str, Scalar | None]]) -> list[str]:
    lines = [header]
    lines.extend(f"{key} = {_value(value)}" for key, value in items if value is not None)
    return lines


def _inline(items: Iterable[tuple[str, Scalar | None]]) -> str:
    return "{ " + ", ".join(f"{key} = {_value(value)}" for key, value in items if value is not None) + " }"


def _register(field: RegisterField) -> str:
    return _inline([
        ("name", field.name),
        ("table", field.table),
        ("address", field.address),
        ("type", None if field.type == "bool" else field.type),
        ("order", field.order if field.count == 2 else None),
        ("scale", field.scale if field.scale != 1.0 else None),
        ("unit", field.unit or None),
    ])


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _modbus_sources(s: ConfigSettings) -> list[str]:
    padding = s.registers - CORE_HOLDING
    fields = [*HOLDING, *INPUT, *COILS, *DISCRETE_INPUTS]
    if len(fields) + padding > MAX_SENSORS_PER_FRAME:
        raise ValueError(
            f"a Modbus source reads at most {MAX_SENSORS_PER_FRAME} values per frame; "
            f"--registers {s.registers} would need {len(fields) + padding}"
        )
    fields.extend(RegisterField(f"bench_{a:04d}", "holding", a, "uint16") for a in range(CORE_HOLDING, s.registers))
    lines: list[str] = []
    for n in range(1, s.machines + 1):
        lines += _modbus_source(s, n, f"machine-{n}", "", fields)
    station_fields = [*STATION_HOLDING, *STATION_COILS]
    for k in range(1, s.stations + 1):
        lines += _modbus_source(s, s.machines + k, f"station-{k}", "the PUR moulding station, ", station_fields)
    return lines


def _modbus_source(s: ConfigSettings, n: int, name: str, what: str, fields: list[RegisterField]) -> list[str]:
    """The source for the device in place ``n`` on the bus: port ``n`` of the range, or unit id ``n``."""
    port = s.modbus_port + n - 1 if s.per_port else s.modbus_port
    unit = 1 if s.per_port else n
    lines = [f"# {name}: {what}Modbus TCP at {s.host}:{port}, unit {unit}"]
    lines += _table("[[sources]]", [
        ("kind", "modbus"), ("name", name), ("unit_id", unit),
        ("poll_interval", s.poll_interval), ("timeout", "1s"),
    ])
    lines.append(f"tcp = {_inline([('host', s.host), ('port', port)])}")
    lines.append("registers = [")
    lines.extend(f"  {_register(field)}," for field in fields)
    lines += ["]", ""]
    return lines


def _opcua_source(s: ConfigSettings) -> list[str]:
    lines = [f"# all machines over OPC-UA at opc.tcp://{s.host}:{s.opcua_port}, namespace urn:twinedge:sim"]
    lines += _table("[[sources]]", [
        ("kind", "opcua"), ("name", "sim-opcua"), ("url", f"opc.tcp://{s.host}:{s.opcua_port}"),
        ("mode", "subscribe"), ("publishing_interval", s.publishing_interval),
    ])
    lines.append("nodes = [")
    for n in range(1, s.machines + 1):
        for v in OPCUA_VARIABLES:
            entry = [("name", _snake(v.browse_name)), ("node_id", node_id(n, v.browse_name)),
                     ("device_id", f"machine-{n}-opcua")]
            lines.append(f"  {_inline(entry)},")
    for i in range(s.opcua_items):
        entry = [("name", f"item_{i:04d}"), ("node_id", f"ns=2;s=Bench.Item{i:04d}"),
                 ("device_id", f"sim-bench-{i // BENCH_ITEMS_PER_DEVICE}")]
        lines.append(f"  {_inline(entry)},")
    lines += ["]", ""]
    return lines


def render_edge_config(s: ConfigSettings) -> str:
    """The whole config file as TOML text; raises ValueError when the settings cannot be expressed."""
    if not (s.modbus or s.opcua):
        raise ValueError("nothing to read: both Modbus and OPC-UA are turned off")
    if s.stations and not s.modbus:
        raise ValueError("the moulding stations are read over Modbus only (drop --no-modbus)")
    lines = [
        "# Edge config for the twinsim plant simulator (docs/simulator.md), generated by:",
        f"#   {s.command or 'twinsim config'}",
        "# Start the simulator with the same machine count, host and ports (twinsim run ...).",
        "",
    ]
    lines += _table("[edge]", [("id", s.edge_id), ("state_dir", s.state_dir)]) + [""]
    lines += _table("[store]", [
        ("batch_max_frames", 1000), ("batch_max_delay", "50ms"), ("disk_budget", "256MB"),
        ("when_full", "drop_oldest"), ("synchronous", "full"),
    ]) + [""]
    lines += _table("[log]", [("level", "info")]) + [""]
    if s.modbus:
        lines += _modbus_sources(s)
    if s.opcua:
        lines += _opcua_source(s)
    return "\n".join(lines).rstrip("\n") + "\n"
