"""`twinedge`: run the daemon and diagnose it (status, tail, probe, check-config, queue, passwd, cert).

Exit codes (decided in ``edge.errors``): 0 ok, 1 a runtime problem (daemon
unreachable, device error), 2 usage, 78 (EX_CONFIG) a config error. Output to a
pipe that closes early (``twinedge status | head``) ends the command quietly.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge import __version__
from edge.errors import exit_code
from shared.errors import EX_CONFIG, ConfigFileError, TwinedgeError

if TYPE_CHECKING:
    from edge.config import GatewayConfig

# Protocol libraries, pydantic models and asyncio machinery are imported by the command that needs
# them: `twinedge --help` and `twinedge status` must answer at once, on a Pi too.

__all__ = ["main"]

DEFAULT_CONFIG = Path("/etc/twinedge/edge.toml")
DEFAULT_SOCKET = Path("/run/twinedge/control.sock")


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, sort_keys=True, default=str))


def _socket_path(args: argparse.Namespace) -> Path:
    if args.socket:
        return Path(args.socket)
    if args.config:
        from edge.config import load_gateway_config

        return load_gateway_config(args.config).control_socket
    if env := os.environ.get("TWINEDGE_SOCKET"):
        return Path(env)
    return DEFAULT_SOCKET


def cmd_run(args: argparse.Namespace) -> int:
    import asyncio

    from edge.app import run_daemon
    from edge.config import load_gateway_config
    from edge.sdnotify import setup_logging
    from edge.secretfiles import readable_secrets

    path = Path(args.config or DEFAULT_CONFIG)
    config = load_gateway_config(path)
    setup_logging(args.log_level or config.log.level)
    for line in readable_secrets(config, path):
        logging.getLogger("edge").warning("%s", line)
    asyncio.run(run_daemon(config))
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    from edge.config import load_gateway_config
    from edge.secretfiles import readable_secrets

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
    from edge.control.client import call
    from edge.render import render_status

    result = call(_socket_path(args), "status")
    _print_json(result) if args.json else print(render_status(result))
    return 0


def cmd_tail(args: argparse.Namespace) -> int:
    from edge.control.client import follow
    from edge.render import render_frame_line

    count = 0
    for frame in follow(_socket_path(args), args.device):
        print(json.dumps(frame) if args.json else render_frame_line(frame), flush=True)
        count += 1
        if args.count and count >= args.count:
            break
    return 0


def _since(text: str) -> float:
    """--since: a duration back from now ('10m', '2h'), epoch seconds, or an ISO 8601 time."""
    import time
    from datetime import datetime

    from shared.configbase import parse_duration

    try:
        return time.time() - float(parse_duration(text))
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text).astimezone().timestamp()
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a duration back from now ('10m', '2h'), epoch seconds or an ISO 8601 time (got {text!r})"
        ) from None


def cmd_events(args: argparse.Namespace) -> int:
    import time

    from edge.control.client import call
    from edge.render import render_event_line

    sock = _socket_path(args)
    ask: dict[str, Any] = {"level": args.level, "device": args.device, "since": args.since, "limit": args.count}
    last = 0
    while True:
        for event in call(sock, "events", **ask, after_seq=last):
            print(json.dumps(event) if args.json else render_event_line(event), flush=True)
            last = max(last, int(event["seq"]))
        if not args.follow:
            return 0
        ask["limit"] = 1000
        time.sleep(1.0)  # a CLI process of its own: the daemon is asked again each second


def cmd_queue(args: argparse.Namespace) -> int:
    from edge.control.client import call
    from edge.render import render_quarantine, render_queue_peek, render_queue_stats

    sock = _socket_path(args)
    if args.action == "stats":
        result = call(sock, "queue_stats")
        _print_json(result) if args.json else print(render_queue_stats(result))
    elif args.action == "peek":
        rows = call(sock, "queue_peek", limit=args.limit)
        _print_json(rows) if args.json else print(render_queue_peek(rows))
    else:
        rows = call(sock, "quarantine", limit=args.limit)
        _print_json(rows) if args.json else print(render_quarantine(rows))
    return 0


def cmd_model(args: argparse.Namespace) -> int:
    from edge.control.client import call
    from edge.render import render_model_status

    sock = _socket_path(args)
    if args.action == "rollback":
        if not args.device:
            print("twinedge model rollback: name the device (twinedge model rollback DEVICE)", file=sys.stderr)
            return 2
        result = call(sock, "model_rollback", device=args.device)
        if args.json:
            _print_json(result)
        else:
            back = f"; v{result['previous']['version']} can be rolled back to" if result.get("previous") else ""
            print(f"{args.device}: now scored by {result['model']} v{result['version']} again (pinned until its "
                  f"assignment changes){back}")
        return 0
    result = call(sock, "model_status")
    _print_json(result) if args.json else print(render_model_status(result))
    return 0


def cmd_probe(args: argparse.Namespace) -> int:
    import asyncio

    if args.protocol == "modbus":
        from edge.sources.modbus import probe as module
    elif args.protocol == "mtconnect":
        from edge.sources.mtconnect import probe as module  # type: ignore[no-redef]
    else:
        from edge.sources.opcua import probe as module  # type: ignore[no-redef]
    parser = argparse.ArgumentParser(prog=f"twinedge probe {args.protocol}")
    module.add_arguments(parser)
    return int(asyncio.run(module.run(parser.parse_args(args.rest))))


def cmd_passwd(args: argparse.Namespace) -> int:
    from edge.broker import passwd_cli

    parser = argparse.ArgumentParser(prog="twinedge passwd")
    passwd_cli.add_arguments(parser)
    return int(passwd_cli.run(parser.parse_args(args.rest)))


def cmd_cert(args: argparse.Namespace) -> int:
    import socket

    from edge.sources.opcua.certs import create_application_certificate, default_application_uri

    cert, key = Path(args.cert), Path(args.key)
    if not args.force:
        existing = [str(path) for path in (cert, key) if path.exists()]
        if existing:
            print(f"twinedge: {' and '.join(existing)} already exist(s); --force replaces them", file=sys.stderr)
            return 1
    host = socket.gethostname()
    uri = args.uri or default_application_uri(args.source, host)
    try:
        info = create_application_certificate(
            cert, key, application_uri=uri, common_name=f"twinedge {args.source}@{host}",
            hostnames=args.dns or [host], days=args.days, key_size=args.key_size,
        )
    except OSError as exc:
        print(f"twinedge: cannot write {exc.filename or cert}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"wrote {cert} and its key {key} (readable by this user only)\n"
          f"  application URI  {info.uri}\n"
          f"  subject          {info.subject}\n"
          f"  SHA-1 thumbprint {info.thumbprint}\n"
          f"  valid until      {info.not_after:%Y-%m-%d}\n"
          f"Copy {cert} into the trusted certificates of the OPC-UA server, and set in the source\n"
          f"  [sources.security] certificate = \"{cert}\", private_key = \"{key}\"")
    return 0


def _days(text: str) -> int:
    try:
        days = int(text)
    except ValueError:
        days = 0
    if not 1 <= days <= 36_500:
        raise argparse.ArgumentTypeError(f"must be 1 to 36500 days (got {text!r})")
    return days


def _add_target(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", help="edge config (to find the control socket)")
    parser.add_argument("--socket", help="control socket path (default /run/twinedge/control.sock)")
    parser.add_argument("--json", action="store_true", help="JSON output for scripts")


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 10_000:
        raise argparse.ArgumentTypeError(f"expected a number of events from 1 to 10000 (got {text!r})")
    return value


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

    p = sub.add_parser("events", help="what happened on this edge, in plain words (sources, queue, models)",
                       description="The edge's event log, oldest first. Levels: operator (what a person at the "
                       "machine must know), technical (adds connections, policies), developer (everything).")
    _add_target(p)
    p.add_argument("--level", choices=["operator", "technical", "developer"], default="operator",
                   help="show events up to this level (default operator: operator events only)")
    p.add_argument("--device", help="only events about this device id")
    p.add_argument("--since", type=_since, help="only events from then on: '10m', '2h', epoch seconds or ISO 8601")
    p.add_argument("-n", "--count", type=_count, default=50, help="the newest N events (default 50)")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new events as they are recorded")
    p.set_defaults(func=cmd_events)

    p = sub.add_parser("queue", help="the durable queue: stats, oldest frames, quarantine")
    p.add_argument("action", choices=["stats", "peek", "quarantine"])
    _add_target(p)
    p.add_argument("--limit", type=int, default=10)
    p.set_defaults(func=cmd_queue)

    p = sub.add_parser("model", help="the models scoring each device: status, rollback to the previous one")
    p.add_argument("action", choices=["status", "rollback"])
    p.add_argument("device", nargs="?", help="rollback: the device whose previous model serves again")
    _add_target(p)
    p.set_defaults(func=cmd_model)

    p = sub.add_parser(
        "probe",
        help="read a Modbus register or an OPC-UA node with the config's decoding; show what an MTConnect agent "
             "serves",
        description="twinedge probe {modbus,opcua,mtconnect} --help shows each protocol's options",
    )
    p.add_argument("protocol", choices=["modbus", "opcua", "mtconnect"])
    p.add_argument("rest", nargs=argparse.REMAINDER, help="the protocol's options")
    p.set_defaults(func=cmd_probe)

    p = sub.add_parser(
        "cert", help="make the OPC-UA application certificate and key a source presents to its server",
        description="Writes a self-signed certificate that OPC-UA servers accept (RSA, the application URI in "
        "subjectAltName, keyUsage digitalSignature, nonRepudiation, keyEncipherment, dataEncipherment; "
        "extendedKeyUsage clientAuth and serverAuth) and its unencrypted key (mode 0600).",
    )
    p.add_argument("action", choices=["create"])
    p.add_argument("--source", required=True, help="the source's name (it goes into the application URI)")
    p.add_argument("--cert", required=True, help="certificate file to write (.der: DER, else PEM)")
    p.add_argument("--key", required=True, help="private key file to write (PEM)")
    p.add_argument("--uri", help="application URI (default urn:twinedge:<hostname>:<source>, what the source "
                   "announces; if you set security.application_uri, give the same here)")
    p.add_argument("--dns", action="append", help="host name or IP address for subjectAltName (repeatable; "
                   "default: this host's name)")
    p.add_argument("--days", type=_days, default=1825, help="validity in days, 1 to 36500 (default 1825, five years)")
    p.add_argument("--key-size", type=int, choices=[2048, 3072, 4096], default=2048)
    p.add_argument("--force", action="store_true", help="replace existing files")
    p.set_defaults(func=cmd_cert)

    p = sub.add_parser("passwd", help="add or change a user in the broker's password file")
    p.add_argument("rest", nargs=argparse.REMAINDER, help="FILE USER (see twinedge passwd -- --help)")
    p.set_defaults(func=cmd_passwd)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = int(args.func(args))
        sys.stdout.flush()
    except ConfigFileError as exc:
        print(exc.report(), file=sys.stderr)
        return exit_code(exc)
    except TwinedgeError as exc:
        print(f"twinedge: {exc}", file=sys.stderr)
        return exit_code(exc)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `twinedge status | head`: the reader is gone; nothing left to say, and nowhere to say it.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return code


if __name__ == "__main__":
    sys.exit(main())
