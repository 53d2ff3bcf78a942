"""`twinedge`: run the daemon and diagnose it (status, tail, probe, check-config, queue, passwd).

Exit codes: 0 ok, 1 a runtime problem (daemon unreachable, device error),
2 usage, 78 (EX_CONFIG) a config error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from edge import __version__
from edge.config import ConfigFileError, GatewayConfig, load_gateway_config
from edge.control import ControlError, request, stream
from edge.render import render_quarantine, render_queue_peek, render_queue_stats, render_status
from edge.secretfiles import readable_secrets
from shared.configbase import EX_CONFIG

__all__ = ["main"]

DEFAULT_CONFIG = Path("/etc/twinedge/edge.toml")
DEFAULT_SOCKET = Path("/run/twinedge/control.sock")


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, sort_keys=True, default=str))


def _socket_path(args: argparse.Namespace) -> Path:
    if args.socket:
        return Path(args.socket)
    if args.config:
        return load_gateway_config(args.config).control_socket
    if env := os.environ.get("TWINEDGE_SOCKET"):
        return Path(env)
    return DEFAULT_SOCKET


def cmd_run(args: argparse.Namespace) -> int:
    from edge.app import DaemonFailed, StartupError, run_daemon
    from edge.sdnotify import setup_logging

    path = Path(args.config or DEFAULT_CONFIG)
    config = load_gateway_config(path)
    setup_logging(args.log_level or config.log.level)
    for line in readable_secrets(config, path):
        logging.getLogger("edge").warning("%s", line)
    try:
        asyncio.run(run_daemon(config))
    except StartupError as exc:
        print(f"twinedge: cannot start: {exc}", file=sys.stderr)
        return EX_CONFIG
    except DaemonFailed as exc:
        print(f"twinedge: stopped after an error: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    try:
        config = load_gateway_config(args.file)
    except ConfigFileError as exc:
        if args.json:
            _print_json({"ok": False, "file": exc.path, "errors": exc.lines})
        else:
            print(exc.report(), file=sys.stderr)
        return EX_CONFIG
    warnings = readable_secrets(config, Path(args.file))
    if args.json:
        # Secrets do not show: tokens and passwords are masked, and so is a password in the uplink URL.
        _print_json({"ok": True, "file": args.file, "config": config.model_dump(mode="json"), "warnings": warnings})
    else:
        print(_summary(args.file, config))
        for line in warnings:
            print(f"warning: {line}", file=sys.stderr)
    return 0


def _summary(path: str, config: GatewayConfig) -> str:
    kinds: dict[str, int] = {}
    for src in config.sources:
        kinds[src.kind] = kinds.get(src.kind, 0) + 1
    sources = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) or "no sources"
    if config.mqtt_client is not None:
        mqtt = f"external broker {config.mqtt_client.host}:{config.mqtt_client.port}"
    elif config.broker.enabled:
        mqtt = "embedded broker on " + ", ".join(
            f"{lst.host}:{lst.port}{' (TLS)' if lst.tls else ''}" for lst in config.broker.listeners
        )
    else:
        mqtt = "no MQTT"
    return f"{path}: OK — edge {config.edge.id}; {sources}; {mqtt}; queue {config.store_path}"


def cmd_status(args: argparse.Namespace) -> int:
    result = asyncio.run(request(_socket_path(args), "status"))
    _print_json(result) if args.json else print(render_status(result))
    return 0


def cmd_tail(args: argparse.Namespace) -> int:
    async def tail() -> None:
        count = 0
        async for frame in stream(_socket_path(args), args.device):
            if args.json:
                print(json.dumps(frame), flush=True)
            else:
                sensors = " ".join(f"{k}={v}" for k, v in frame.get("sensors", {}).items())
                print(f"{frame['ts']:.3f} {frame['device_id']} {frame.get('status', 'ok')} {sensors}", flush=True)
            count += 1
            if args.count and count >= args.count:
                return

    try:
        asyncio.run(tail())
    except KeyboardInterrupt:
        pass
    return 0


def cmd_queue(args: argparse.Namespace) -> int:
    sock = _socket_path(args)
    if args.action == "stats":
        result = asyncio.run(request(sock, "queue_stats"))
        _print_json(result) if args.json else print(render_queue_stats(result))
    elif args.action == "peek":
        rows = asyncio.run(request(sock, "queue_peek", limit=args.limit))
        _print_json(rows) if args.json else print(render_queue_peek(rows))
    else:
        rows = asyncio.run(request(sock, "quarantine", limit=args.limit))
        _print_json(rows) if args.json else print(render_quarantine(rows))
    return 0


def cmd_probe(args: argparse.Namespace) -> int:
    # Imported on use: `twinedge status` should not pay for loading pymodbus and asyncua.
    if args.protocol == "modbus":
        from edge.sources import modbus_probe as module
    else:
        from edge.sources import opcua_probe as module  # type: ignore[no-redef]
    parser = argparse.ArgumentParser(prog=f"twinedge probe {args.protocol}")
    module.add_arguments(parser)
    return int(asyncio.run(module.run(parser.parse_args(args.rest))))


def cmd_passwd(args: argparse.Namespace) -> int:
    from edge.broker import passwd_cli

    parser = argparse.ArgumentParser(prog="twinedge passwd")
    passwd_cli.add_arguments(parser)
    return int(passwd_cli.run(parser.parse_args(args.rest)))


def _add_target(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", help="edge config (to find the control socket)")
    parser.add_argument("--socket", help="control socket path (default /run/twinedge/control.sock)")
    parser.add_argument("--json", action="store_true", help="JSON output for scripts")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="twinedge", description="twinedge edge gateway")
    parser.add_argument("--version", action="version", version=f"twinedge {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run the gateway daemon")
    p.add_argument("-c", "--config", help=f"config file (default {DEFAULT_CONFIG})")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("check-config", help="validate a config file (exit 78 on errors)")
    p.add_argument("file")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser("status", help="sources, broker, queue and drops of the running daemon")
    _add_target(p)
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("tail", help="print frames as the daemon stores them")
    _add_target(p)
    p.add_argument("--device", help="only this device id")
    p.add_argument("-n", "--count", type=int, default=0, help="stop after this many frames")
    p.set_defaults(func=cmd_tail)

    p = sub.add_parser("queue", help="the durable queue: stats, oldest frames, quarantine")
    p.add_argument("action", choices=["stats", "peek", "quarantine"])
    _add_target(p)
    p.add_argument("--limit", type=int, default=10)
    p.set_defaults(func=cmd_queue)

    p = sub.add_parser(
        "probe",
        help="read a Modbus register or an OPC-UA node with the config's decoding",
        description="twinedge probe {modbus,opcua} --help shows each protocol's options",
    )
    p.add_argument("protocol", choices=["modbus", "opcua"])
    p.add_argument("rest", nargs=argparse.REMAINDER, help="the protocol's options")
    p.set_defaults(func=cmd_probe)

    p = sub.add_parser("passwd", help="add or change a user in the broker's password file")
    p.add_argument("rest", nargs=argparse.REMAINDER, help="FILE USER (see twinedge passwd -- --help)")
    p.set_defaults(func=cmd_passwd)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigFileError as exc:
        print(exc.report(), file=sys.stderr)
        return EX_CONFIG
    except ControlError as exc:
        print(f"twinedge: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
