"""``twinsim``: run the plant simulator, or print an edge config that reads it.

    twinsim run --machines 3 --modbus-port 5020 --opcua-port 4840 --fault machine-2:overheat@30s
    twinsim config --machines 3 --modbus-port 5020 --opcua-port 4840 > sim-edge.toml
    twinsim mtconnect --port 5000 --speed 1 --buffer 131072     (an MTConnect agent replaying a CNC lathe)

Exit codes: 0 stopped cleanly (SIGINT, SIGTERM or SIGHUP, whether or not stdout is
still open), 1 a port could not be bound,
2 bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import shlex
import signal
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, TextIO

from shared.configbase import parse_duration
from twinsim.edgeconfig import ConfigSettings, render_edge_config
from twinsim.faults import FaultSpecError, parse_fault_spec
from twinsim.modbus_server import MAX_REGISTERS
from twinsim.mtconnect import DATA_DIR, VERSIONS, AgentSettings, MTConnectAgent
from twinsim.opcua_server import MAX_ITEMS
from twinsim.registers import CORE_HOLDING
from twinsim.runner import SimSettings, Simulator

__all__ = ["main"]

log = logging.getLogger(__name__)

READY_LINE = "twinsim ready"
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # SIGHUP: the terminal was closed
LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"  # the edge's terminal format


def _bounded_int(low: int, high: int) -> type[int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number (got {text!r})") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be {low}..{high} (got {value})")
        return value

    return parse  # type: ignore[return-value]


def _duration(low: float, high: float) -> type[float]:
    def parse(text: str) -> float:
        try:
            value = float(parse_duration(text))
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low:g}s and {high:g}s (got {text!r})")
        return value

    return parse  # type: ignore[return-value]


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--machines", type=_bounded_int(1, 1000), default=3, help="number of machines (default 3)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on / to put in the config")
    p.add_argument("--modbus-port", type=_bounded_int(1, 65535), default=5020,
                   help="Modbus TCP port of machine-1; machine-n listens on port+n-1 (default 5020)")
    p.add_argument("--opcua-port", type=_bounded_int(1, 65535), default=4840, help="OPC-UA port (default 4840)")
    p.add_argument("--unit-ids", action="store_true",
                   help="serve all machines on one Modbus port as unit ids 1..n (like a gateway)")
    p.add_argument("--no-modbus", action="store_true", help="no Modbus server")
    p.add_argument("--no-opcua", action="store_true", help="no OPC-UA server")
    p.add_argument("--registers", type=_bounded_int(CORE_HOLDING, MAX_REGISTERS), default=CORE_HOLDING,
                   help=f"pad each device to N holding registers for benchmarks (default {CORE_HOLDING})")
    p.add_argument("--opcua-items", type=_bounded_int(0, MAX_ITEMS), default=0,
                   help="extra OPC-UA Double variables changing every tick, for benchmarks")
    p.add_argument("--stations", type=_bounded_int(0, 99), default=0,
                   help="PUR moulding stations (Modbus only), on the ports (or unit ids) after the machines "
                   "(default 0)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="twinsim", description="Plant simulator: machines behind Modbus TCP "
                                     "and OPC-UA, with fault injection (see docs/simulator.md).")
    sub = parser.add_subparsers(dest="command", metavar="{run,config,mtconnect}")
    run = sub.add_parser("run", help="serve the simulated machines until SIGINT, SIGTERM or SIGHUP")
    _common(run)
    run.add_argument("--seed", type=_bounded_int(0, 2**31 - 1), default=1, help="random seed (default 1)")
    run.add_argument("--tick", type=_duration(0.01, 10.0), default=0.1, help="model and register update period "
                     "(default 100ms)")
    run.add_argument("--fault", action="append", default=[], metavar="SPEC",
                     help="e.g. machine-2:overheat@30s, machine-1:bearing_wear@0s, "
                     "machine-3:dropout=exception@1m+20s, machine-1:plc_restart@45s+5s, opcua:plc_restart@2m+5s, "
                     "station-1:cold_mould@1m, station-1:blocked_vent@0s")
    run.add_argument("--station-cycle", type=_duration(10.0, 3600.0), default=120.0,
                     help="the moulding stations' cycle time: a shot starts this often (default 2m)")
    run.add_argument("--summary-every", type=_duration(0.0, 3600.0), default=5.0,
                     help="print one line per machine this often; 0s for never (default 5s)")
    run.add_argument("--ready-file", type=Path, help="write this file (JSON endpoints) once both servers listen")
    run.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info")
    cfg = sub.add_parser("config", help="print an edge config (TOML) that reads this simulator")
    _common(cfg)
    cfg.add_argument("--edge-id", default="sim-edge", help="the edge's id (default sim-edge)")
    cfg.add_argument("--state-dir", default=".twinedge", help="edge state directory (default .twinedge)")
    cfg.add_argument("--poll-interval", default="1s", help="Modbus poll interval (default 1s)")
    cfg.add_argument("--publishing-interval", default="1s", help="OPC-UA publishing interval (default 1s)")
    cfg.add_argument("-o", "--output", type=Path, help="write to this file instead of stdout")
    _mtconnect_parser(sub.add_parser("mtconnect", help="serve an MTConnect agent replaying a recorded CNC lathe "
                                     "(SHDR) until SIGINT, SIGTERM or SIGHUP"))
    return parser


def _speed(text: str) -> float:
    if text.lower() in ("max", "inf", "fast"):
        return math.inf
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a factor like 1, 10 or 0.5, or 'max' (got {text!r})") from None
    if not 0.001 <= value <= 100_000:
        raise argparse.ArgumentTypeError(f"must be 0.001..100000 or 'max' (got {text!r})")
    return value


def _mtconnect_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=_bounded_int(0, 65535), default=5000, help="HTTP port (default 5000; 0: any)")
    p.add_argument("--speed", type=_speed, default=1.0,
                   help="replay rate: 1 the recording's, 10 ten times faster, max as fast as possible (default 1)")
    p.add_argument("--buffer", type=_bounded_int(1, 2**24), default=131072,
                   help="observations the agent keeps (default 131072)")
    p.add_argument("--asset-buffer", type=_bounded_int(1, 2**20), default=1024, help="assets kept (default 1024)")
    p.add_argument("--instance-id", type=_bounded_int(1, 2**63 - 1), help="instanceId (default: the start time)")
    p.add_argument("--schema-version", choices=tuple(VERSIONS), default="2.0", help="MTConnect version served "
                   "(namespaces, header, error form; default 2.0)")
    p.add_argument("--max-gap", type=_duration(0.0, 3600.0), default=10.0,
                   help="longest pause between two recorded lines (default 10s)")
    p.add_argument("--once", action="store_true", help="replay the recording once (default: start again at its end)")
    p.add_argument("--timestamps", choices=("replay", "wall"), default="replay",
                   help="replay: start time + re-timed recording offset; wall: time of emission (default replay)")
    p.add_argument("--shdr", type=Path, default=DATA_DIR / "okuma.txt", help="SHDR recording (default: the Okuma "
                   "lathe)")
    p.add_argument("--devices-xml", type=Path, default=DATA_DIR / "Devices.xml", help="device model (Devices.xml)")
    p.add_argument("--device", action="append", help="serve only this device of the model (repeatable)")
    p.add_argument("--ready-file", type=Path, help="write this file (JSON: pid, url) once the agent listens")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info")


def _to_devnull(stream: TextIO) -> None:
    """Point a stream that can no longer be written (the reader of its pipe exited, the terminal hung up)
    at /dev/null: what follows, the interpreter's last flush included, is dropped instead of failing."""
    with contextlib.suppress(OSError, ValueError):
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, stream.fileno())
        os.close(null)


def _say(line: str) -> None:
    """Print a line; nothing the simulator prints may keep it from closing its servers."""
    try:
        print(line, flush=True)
    except OSError:
        _to_devnull(sys.stdout)


class _LogHandler(logging.StreamHandler[TextIO]):
    """A record that cannot be written (closed pipe, hung-up terminal) is dropped, without the
    "--- Logging error ---" report that would go to the same closed stream, record after record."""

    def handleError(self, record: logging.LogRecord) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            _to_devnull(self.stream)
        else:
            super().handleError(record)


def _without_output(argv: Sequence[str]) -> list[str]:
    """The command line minus -o/--output, to record in the generated file."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("-o", "--output"):
            skip = True
        elif not arg.startswith(("--output=", "-o")):
            out.append(arg)
    return out


def _config(args: argparse.Namespace, argv: Sequence[str]) -> int:
    for value, what in ((args.poll_interval, "--poll-interval"), (args.publishing_interval, "--publishing-interval")):
        try:
            parse_duration(value)
        except ValueError as exc:
            print(f"twinsim config: {what}: {exc}", file=sys.stderr)
            return 2
    settings = ConfigSettings(
        machines=args.machines, host=args.host, modbus_port=args.modbus_port, opcua_port=args.opcua_port,
        per_port=not args.unit_ids, modbus=not args.no_modbus, opcua=not args.no_opcua, registers=args.registers,
        opcua_items=args.opcua_items, stations=args.stations, edge_id=args.edge_id, state_dir=args.state_dir,
        poll_interval=args.poll_interval, publishing_interval=args.publishing_interval,
        command=shlex.join(["twinsim", *_without_output(argv)]),
    )
    try:
        text = render_edge_config(settings)
    except ValueError as exc:
        print(f"twinsim config: {exc}", file=sys.stderr)
        return 2
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text, encoding="utf-8")
    return 0


def _write_ready(path: Path, info: dict[str, object]) -> None:
    """The ready file: the process id and its endpoints as JSON, written whole (a script never sees half a file)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"pid": os.getpid(), **info}, indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)


def _serve_then_clean(serve: Coroutine[Any, Any, int], ready_file: Path | None) -> int:
    """Run ``serve`` to its end; the ready file goes with the process."""
    try:
        return asyncio.run(serve)
    finally:
        if ready_file is not None:
            ready_file.unlink(missing_ok=True)


async def _serve(sim: Simulator, ready_file: Path | None) -> int:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    stopping: list[str] = []

    def stop(name: str) -> None:
        task.cancel()  # first: saying so may fail
        if not stopping:
            _say(f"twinsim stopping ({name})")
        stopping.append(name)

    def ready() -> None:
        if ready_file is not None:
            _write_ready(ready_file, {
                "modbus": [ep.__dict__ for ep in sim.modbus.endpoints()] if sim.modbus else [],
                "opcua": sim.opcua.endpoint if sim.opcua else None,
            })
        _say(READY_LINE)

    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop, sig.name)
    try:
        await sim.run(on_ready=ready)
    except asyncio.CancelledError:
        if not stopping:
            raise
    except OSError as exc:
        print(f"twinsim run: cannot start: {exc}", file=sys.stderr)
        return 1
    finally:
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)
    return 0


def _run(args: argparse.Namespace) -> int:
    handler = _LogHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT, "%H:%M:%S"))
    logging.basicConfig(level=args.log_level.upper(), handlers=[handler])
    if args.log_level != "debug":  # their INFO lines are per-connection chatter
        logging.getLogger("asyncua").setLevel(logging.WARNING)
        logging.getLogger("pymodbus").setLevel(logging.WARNING)
    try:
        faults = tuple(parse_fault_spec(spec, args.machines, args.stations) for spec in args.fault)
        settings = SimSettings(
            machines=args.machines, host=args.host, modbus_port=args.modbus_port, opcua_port=args.opcua_port,
            seed=args.seed, tick=args.tick, faults=faults, modbus=not args.no_modbus, opcua=not args.no_opcua,
            per_port=not args.unit_ids, registers=args.registers, opcua_items=args.opcua_items,
            summary_every=args.summary_every, stations=args.stations, station_cycle=args.station_cycle,
        )
        if not (settings.modbus or settings.opcua):
            raise ValueError("nothing to serve: both --no-modbus and --no-opcua were given")
        if settings.stations and not settings.modbus:
            raise ValueError("the moulding stations are served over Modbus only (drop --no-modbus)")
        if any(f.target == "opcua" for f in faults) and not settings.opcua:
            raise ValueError("an opcua fault needs the OPC-UA server (drop --no-opcua)")
        sim = Simulator(settings, out=_say)
    except (FaultSpecError, ValueError) as exc:
        print(f"twinsim run: {exc}", file=sys.stderr)
        return 2
    return _serve_then_clean(_serve(sim, args.ready_file), args.ready_file)


async def _serve_agent(agent: MTConnectAgent, ready_file: Path | None) -> int:
    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()
    names: list[str] = []

    def stop(name: str) -> None:
        names.append(name)
        stopped.set()

    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop, sig.name)
    try:
        try:
            await agent.start()
        except OSError as exc:
            print(f"twinsim mtconnect: cannot start: {exc}", file=sys.stderr)
            return 1
        if ready_file is not None:
            _write_ready(ready_file, {"url": agent.url, "instance_id": agent.instance_id})
        _say(f"MTConnect agent at {agent.url}/probe (instanceId {agent.instance_id}, buffer "
             f"{agent.buffer.size}, MTConnect {agent.settings.version})")
        _say(READY_LINE)
        await stopped.wait()
        _say(f"twinsim stopping ({names[0]})")
        return 0
    finally:
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)
        await agent.stop()


def _mtconnect(args: argparse.Namespace) -> int:
    handler = _LogHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT, "%H:%M:%S"))
    logging.basicConfig(level=args.log_level.upper(), handlers=[handler])
    try:
        settings = AgentSettings(
            host=args.host, port=args.port, shdr=args.shdr, devices_xml=args.devices_xml,
            devices=tuple(args.device) if args.device else None, buffer_size=args.buffer,
            asset_buffer_size=args.asset_buffer, instance_id=args.instance_id, speed=args.speed,
            max_gap=args.max_gap, loop=not args.once, version=args.schema_version, timestamps=args.timestamps,
            record=False,
        )
        agent = MTConnectAgent(settings)
    except (OSError, ValueError) as exc:
        print(f"twinsim mtconnect: {exc}", file=sys.stderr)
        return 2
    return _serve_then_clean(_serve_agent(agent, args.ready_file), args.ready_file)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse has printed the usage error (or --help)
        return int(exc.code or 0)
    if args.command == "run":
        return _run(args)
    if args.command == "config":
        return _config(args, argv)
    if args.command == "mtconnect":
        return _mtconnect(args)
    parser.print_help(sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
