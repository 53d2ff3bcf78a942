"""`twinedge probe modbus`: read registers with exactly the decoding the gateway would use.

Two ways to say what to read:

* ad hoc: ``--host 10.0.0.7 --unit 1 --table holding --address 100 --type float32 --order CDAB``
  (or ``--serial /dev/ttyUSB0 --baudrate 9600 ...`` for RTU);
* from a config: ``--config edge.toml --source press-3 [--register temperature]``.

Both build a ``ModbusSourceConfig`` and run one poll cycle of the source's own
poller, so block planning, splitting, decoding and scaling are the ones the
daemon runs. The raw register words are shown next to each value, which is
what a person checking a register map against a device manual needs.

Exit codes: 0 every value read; 1 the device could not be reached or some reads
failed; 2 bad arguments; 78 the config file is invalid or does not have the source.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from typing import Any, get_args

from pydantic import ValidationError

from edge.config import load_gateway_config
from edge.sources.modbus.client import BusConflictError, LinkError
from edge.sources.modbus.config import ModbusSourceConfig
from edge.sources.modbus.map import DataType, Order, Table
from edge.sources.modbus.poll import CycleResult
from edge.sources.modbus.source import make_link, make_poller
from shared.configbase import EX_CONFIG, ConfigFileError, format_validation_error

__all__ = ["add_arguments", "run"]

log = logging.getLogger(__name__)



def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = "Read Modbus registers with exactly the decoding a twinedge config would use."
    src = parser.add_argument_group("from a config file")
    src.add_argument("--config", help="edge config file (TOML)")
    src.add_argument("--source", help="name of a modbus source in that config")
    src.add_argument("--register", action="append", help="only this register name (repeatable)")
    dev = parser.add_argument_group("ad hoc: where")
    dev.add_argument("--host", help="Modbus TCP host")
    dev.add_argument("--port", type=int, default=502, help="Modbus TCP port (default 502)")
    dev.add_argument("--serial", help="serial port for Modbus RTU, e.g. /dev/ttyUSB0")
    dev.add_argument("--baudrate", type=int, default=19200)
    dev.add_argument("--parity", choices=["none", "even", "odd"], default="even")
    dev.add_argument("--stopbits", type=int, choices=[1, 2], default=1)
    dev.add_argument("--bytesize", type=int, choices=[7, 8], default=8)
    dev.add_argument("--unit", type=int, default=1, help="unit (slave) id, default 1")
    dev.add_argument("--timeout", default="1s", help="per request, e.g. 500ms (default 1s)")
    what = parser.add_argument_group("ad hoc: what (one register entry, as in the config)")
    what.add_argument("--name", default="value")
    what.add_argument("--table", choices=get_args(Table), default="holding")
    what.add_argument("--address", type=int, help="0-based PDU address (register 40001 is holding 0)")
    what.add_argument("--type", choices=get_args(DataType), help="default: bool for bit tables, else uint16")
    what.add_argument("--order", choices=get_args(Order), default="ABCD")
    what.add_argument("--bit", type=int, help="for --type bool in a register: bit 0..15")
    what.add_argument("--length", type=int, help="characters, for --type string")
    what.add_argument("--scale", type=float, default=1.0)
    what.add_argument("--offset", type=float, default=0.0)
    what.add_argument("--unit-text", dest="unit_text", help="engineering unit to print")
    parser.add_argument("--json", action="store_true", help="JSON output for scripts")


def _from_config(args: argparse.Namespace) -> ModbusSourceConfig:
    config = load_gateway_config(args.config)
    sources = [s for s in config.sources if isinstance(s, ModbusSourceConfig)]
    chosen = [s for s in sources if s.name == args.source] if args.source else sources[:1] if len(sources) == 1 else []
    if not chosen:
        names = ", ".join(repr(s.name) for s in sources) or "none"
        wanted = f"no modbus source named {args.source!r}" if args.source else "give --source NAME"
        raise ConfigFileError(args.config, [f"{wanted}; modbus sources in this file: {names}"])
    source = chosen[0]
    if args.register:
        missing = [r for r in args.register if r not in {reg.name for reg in source.registers}]
        if missing:
            known = ", ".join(reg.name for reg in source.registers)
            problem = f"source {source.name!r} has no register {missing[0]!r}; it has: {known}"
            raise ConfigFileError(args.config, [problem])
        keep = [reg for reg in source.registers if reg.name in args.register]
        source = source.model_copy(update={"registers": keep})
    return source


def _ad_hoc(args: argparse.Namespace) -> ModbusSourceConfig:
    register: dict[str, Any] = {"name": args.name, "table": args.table, "address": args.address,
                                "order": args.order, "scale": args.scale, "offset": args.offset}
    for key in ("type", "bit", "length"):
        if getattr(args, key) is not None:
            register[key] = getattr(args, key)
    if args.unit_text:
        register["unit"] = args.unit_text
    data: dict[str, Any] = {"kind": "modbus", "name": "probe", "unit_id": args.unit, "timeout": args.timeout,
                            "registers": [register]}
    if args.serial:
        data["rtu"] = {"port": args.serial, "baudrate": args.baudrate, "parity": args.parity,
                       "stopbits": args.stopbits, "bytesize": args.bytesize}
    if args.host:
        data["tcp"] = {"host": args.host, "port": args.port}
    return ModbusSourceConfig.model_validate(data)


def _words(raw: list[int] | list[bool]) -> str:
    if raw and isinstance(raw[0], bool):
        return " ".join("1" if b else "0" for b in raw)
    return " ".join(f"0x{w:04X}" for w in raw)


def _rows(config: ModbusSourceConfig, result: CycleResult) -> list[dict[str, Any]]:
    rows = []
    for reg in config.registers:
        rows.append({
            "name": reg.name, "table": reg.table, "address": reg.address, "type": reg.data_type,
            "order": reg.order, "words": result.raw.get(reg.name), "value": result.values.get(reg.name),
            "unit": reg.unit, "problem": result.invalid.get(reg.name),
        })
    return rows


def _render(config: ModbusSourceConfig, result: CycleResult, elapsed_ms: float) -> str:
    lines = [f"{config.describe()}: {result.requests} read(s) in {elapsed_ms:.1f} ms"]
    width = max(len(r.name) for r in config.registers)
    for row in _rows(config, result):
        end = row["address"] + len(row["words"]) - 1 if row["words"] else row["address"]
        where = f"{row['table']} {row['address']}" + (f"..{end}" if end != row["address"] else "")
        if row["value"] is not None:
            shown = f"= {row['value']!r}" + (f" {row['unit']}" if row["unit"] else "")
        else:
            shown = f"not read: {row['problem'] or 'see below'}"
        words = _words(row["words"]) if row["words"] is not None else "-"
        lines.append(f"  {row['name']:<{width}}  {where:<20} {row['type']:<8} {row['order']}  [{words}]  {shown}")
    for block, reason in result.failing.items():
        lines.append(f"  FAILED {block}: {reason}")
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> int:
    try:
        if args.config:
            config = _from_config(args)
        elif args.host or args.serial:
            if args.address is None:
                print("give --address (0-based), or --config FILE --source NAME", file=sys.stderr)
                return 2
            config = _ad_hoc(args)
        else:
            print("say where to read: --host HOST, --serial PORT, or --config FILE --source NAME", file=sys.stderr)
            return 2
    except ConfigFileError as exc:
        print(exc.report(), file=sys.stderr)
        return EX_CONFIG
    except ValidationError as exc:
        for line in format_validation_error(exc, ModbusSourceConfig):
            line = line.replace("registers[0]: ", "").replace("registers[0].", "--").replace("unit_id", "--unit")
            print(line.split(" (got {")[0], file=sys.stderr)
        return 2
    link = make_link(config)
    poller = make_poller(config, link, keep_raw=True)
    started = time.perf_counter()
    try:
        await link.connect()
        result = await poller.read_cycle()
    except (LinkError, BusConflictError) as exc:
        message = f"{config.describe()} {exc}"
        print(json.dumps({"device": config.describe(), "error": message}) if args.json else message)
        return 1
    finally:
        await link.close()
    elapsed_ms = (time.perf_counter() - started) * 1000
    if args.json:
        print(json.dumps({
            "device": config.describe(), "requests": result.requests, "elapsed_ms": round(elapsed_ms, 2),
            "values": _rows(config, result), "failing": result.failing, "error": None,
        }))
    else:
        print(_render(config, result, elapsed_ms))
    return 0 if not result.failing and not result.invalid else 1
