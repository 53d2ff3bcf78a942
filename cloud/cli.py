"""``twincloud``: serve the API, manage edge and user tokens and devices' edges, migrate the database, physics,
the model registry, alerts and drift (``cloud.models.cli``).

Exit codes: 0 ok, 1 a runtime problem (database unreachable, name taken, the
cloud extra not installed), 2 usage or refused input, 78 (EX_CONFIG) a config error. Commands
that create a token print only the token on stdout, so
``TOKEN=$(twincloud edge add line-1)`` works.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import importlib.util
import json
import logging
import os
import re
import socket
import sys
import tempfile
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cloud.config import (
    CONFIG_ENV,
    MULTIPROC_ENV,
    REPLICA_ENV,
    REPLICA_PATTERN,
    CloudConfig,
    ConfigFileError,
    load_cloud_config,
    redact_url,
)
from cloud.storage import open_storage
from cloud.storage.base import DeviceExists, Storage, StorageError, UnknownDevice
from shared.configbase import EX_CONFIG
from shared.errors import InputError, TwinedgeError

__all__ = ["SERVICE_MODULES", "main"]

DEFAULT_CONFIG = Path("/etc/twincloud/cloud.toml")
# What the service and its physics run on (the cloud extra of pyproject.toml), looked for before anything else.
SERVICE_MODULES = ("fastapi", "uvicorn", "numpy", "scipy", "trimesh")


def _config_path(args: argparse.Namespace) -> str | Path | None:
    return args.config or os.environ.get(CONFIG_ENV) or (DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None)


def _config(args: argparse.Namespace) -> CloudConfig:
    return load_cloud_config(_config_path(args))


def _with_storage(args: argparse.Namespace, action: Callable[[Storage], Awaitable[int]]) -> int:
    async def run() -> int:
        storage = open_storage(_config(args).database)
        await storage.open()
        try:
            return await action(storage)
        finally:
            await storage.close()
    return asyncio.run(run())


def cmd_serve(args: argparse.Namespace) -> int:
    from cloud.headdeadline import http_protocol
    from cloud.serving import serve

    config = _config(args)
    host = args.host or config.server.host
    port = config.server.port if args.port is None else args.port
    workers = args.workers or config.server.workers
    replica = args.replica or config.server.replica or f"{socket.gethostname()}:{port}"
    if not re.fullmatch(REPLICA_PATTERN, replica) or len(replica) > 100:
        print(f"twincloud: --replica: use letters, digits and . _ : / - (at most 100; got {replica!r})",
              file=sys.stderr)
        return EX_CONFIG
    config = config.model_copy(update={"server": config.server.model_copy(update={"replica": replica})})
    logging.getLogger(__name__).info("serving on http://%s:%d with %s", host, port,
                                     redact_url(config.database.url.get_secret_value()))
    common: dict[str, Any] = {"host": host, "port": port, "log_level": config.log.level.lower(),
                              "timeout_graceful_shutdown": 10, "access_log": args.access_log,
                              "http": http_protocol(config.server.header_timeout)}
    app: Any = "cloud.app:app_from_env"
    shared_metrics: tempfile.TemporaryDirectory[str] | None = None
    if workers > 1:
        path = _config_path(args)
        if path:  # each worker process loads the same file
            os.environ[CONFIG_ENV] = str(Path(path).resolve())
        os.environ[REPLICA_ENV] = replica
        # The workers count together: each writes its counters into files here, and whichever answers a scrape
        # adds them up (prometheus_client's multiprocess mode). A directory of this run only, removed after it.
        shared_metrics = tempfile.TemporaryDirectory(prefix="twincloud-metrics-")
        os.environ[MULTIPROC_ENV] = shared_metrics.name
    else:
        from cloud.app import create_app

        app = create_app(config)
    try:
        serve(app, workers, **common)
    except OSError as exc:
        logging.getLogger(__name__).error("cannot listen on %s:%d: %s", host, port, exc.strerror or exc)
        return 1
    finally:
        if shared_metrics is not None:
            os.environ.pop(MULTIPROC_ENV, None)
            shared_metrics.cleanup()
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    async def action(storage: Storage) -> int:
        print(f"{storage.backend} database at schema version {await storage.schema_version()}")
        return 0
    return _with_storage(args, action)


def cmd_copy(args: argparse.Namespace) -> int:
    from cloud.config import DatabaseConfig
    from cloud.transfer import copy_database

    target = DatabaseConfig.model_validate({"url": args.to})

    async def action(src: Storage) -> int:
        dst = open_storage(target)
        await dst.open()
        try:
            stored = await copy_database(src, dst, lambda device, n: print(f"{device}: {n:,} frames"))
        finally:
            await dst.close()
        print(f"copied into {redact_url(args.to)}: {stored:,} frames newly stored")
        return 0
    return _with_storage(args, action)


def cmd_check_config(args: argparse.Namespace) -> int:
    config = load_cloud_config(args.file)
    shown = config.model_dump(mode="json")
    shown["database"]["url"] = redact_url(config.database.url.get_secret_value())
    print(json.dumps(shown, indent=2) if args.json else f"{args.file}: ok ({config.database.backend} storage)")
    return 0


def _identity_cmd(kind: str, action: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from cloud import identities as ids

        async def act(storage: Storage) -> int:
            if action == "add":
                token = await (ids.add_edge(storage, args.name) if kind == "edge"
                               else ids.add_user(storage, args.name, args.role))
                print(token)
                print(f"{kind} {args.name!r} added; the token above is shown only once", file=sys.stderr)
            elif action == "token":
                print(await ids.rotate(storage, kind, args.name))  # type: ignore[arg-type]
                print(f"new token for {kind} {args.name!r}; the old one no longer works", file=sys.stderr)
            elif action == "revoke":
                await ids.revoke(storage, kind, args.name)  # type: ignore[arg-type]
                print(f"{kind} {args.name!r} revoked")
            else:
                rows = await storage.identities(kind)
                if args.json:
                    print(json.dumps(rows, indent=2))
                for row in [] if args.json else rows:
                    state = "revoked" if row["revoked_at"] else "active"
                    print(f"{row['name']:<32} {row['role']:<9} {state}")
            return 0
        try:
            return _with_storage(args, act)
        except ids.IdentityError as exc:  # a name taken or unknown: exit 1, as for the database
            print(f"twincloud: {exc}", file=sys.stderr)
            return 1
    return run


def _who() -> str:
    """Who made a change from the command line, for the record: the account running it."""
    try:
        return f"{getpass.getuser()} (command line)"
    except (OSError, KeyError):  # no login name in some containers
        return "command line"


def _when(us: int | None) -> str:
    return "never" if us is None else datetime.fromtimestamp(us / 1e6, UTC).isoformat(timespec="seconds")


def _device_cmd(action: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from cloud import devices
        from cloud.identities import IdentityError

        async def act(storage: Storage) -> int:
            if action == "add":
                await devices.add_device(storage, args.name, args.edge, _who(), args.reason)
                print(f"device {args.name!r} belongs to edge {args.edge!r}")
            elif action == "move":
                moved = await devices.move_device(storage, args.name, args.to, _who(), args.reason)
                print(f"device {args.name!r} moved from edge {moved.from_edge!r} to {args.to!r}" if moved
                      else f"device {args.name!r} belongs to edge {args.to!r} already; nothing changed")
            elif action == "moves":
                rows = await storage.device_moves(args.name, 1000)
                if args.json:
                    print(json.dumps([{"from_edge": m.from_edge, "to_edge": m.to_edge, "by": m.by,
                                       "at": m.at / 1e6, "reason": m.reason} for m in rows], indent=2))
                for m in [] if args.json else rows:
                    print(f"{_when(m.at)}  {m.from_edge or '(new)'} -> {m.to_edge}  by {m.by}  {m.reason}".rstrip())
            else:
                records = await storage.device_records()
                if args.json:
                    print(json.dumps([{"name": d.name, "edge": d.owner, "last_seen": _when(d.last_ts)}
                                      for d in records], indent=2))
                for d in [] if args.json else records:
                    print(f"{d.name:<32} {d.owner or '(none yet)':<32} {_when(d.last_ts)}")
            return 0
        try:
            return _with_storage(args, act)
        except (IdentityError, DeviceExists, UnknownDevice) as exc:  # an unknown name, a taken one: exit 1
            print(f"twincloud: {exc}", file=sys.stderr)
            return 1
    return run


def _add_device_commands(sub: Any) -> None:
    group = sub.add_parser("device", help="which edge each device belongs to").add_subparsers(
        dest="device_command", required=True)
    lst = group.add_parser("list", help="devices, the edge each belongs to, and their newest frame")
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(handler=_device_cmd("list"))
    add = group.add_parser("add", help="bind a device to an edge before it first sends")
    add.add_argument("name")
    add.add_argument("--edge", required=True)
    add.add_argument("--reason", default="", help="recorded with the binding")
    add.set_defaults(handler=_device_cmd("add"))
    move = group.add_parser("move", help="move a device to another edge (recorded)")
    move.add_argument("name")
    move.add_argument("--to", required=True, metavar="EDGE")
    move.add_argument("--reason", default="", help="recorded with the move")
    move.set_defaults(handler=_device_cmd("move"))
    moves = group.add_parser("moves", help="who bound or moved a device, when and why")
    moves.add_argument("name")
    moves.add_argument("--json", action="store_true")
    moves.set_defaults(handler=_device_cmd("moves"))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="twincloud", description="twinedge cloud aggregator")
    parser.add_argument("--config", help=f"config file (default ${CONFIG_ENV} or {DEFAULT_CONFIG} if present)")
    parser.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the API (OpenAPI at /docs)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int, help="worker processes")
    serve.add_argument("--access-log", action="store_true", help="log every request")
    serve.add_argument("--replica", help="this replica's name in /metrics (default: server.replica, or host:port)")
    serve.set_defaults(handler=cmd_serve)
    sub.add_parser("migrate", help="bring the database schema up to date").set_defaults(handler=cmd_migrate)
    copy = sub.add_parser("copy", help="copy the configured database into another (e.g. SQLite -> PostgreSQL)")
    copy.add_argument("--to", required=True, metavar="URL", help="target database URL (migrated first)")
    copy.set_defaults(handler=cmd_copy)
    check = sub.add_parser("check-config", help="validate a config file")
    check.add_argument("file")
    check.add_argument("--json", action="store_true")
    check.set_defaults(handler=cmd_check_config)
    for kind in ("edge", "user"):
        group = sub.add_parser(kind, help=f"{kind} tokens").add_subparsers(dest=f"{kind}_command", required=True)
        add = group.add_parser("add", help=f"add a{'n edge' if kind == 'edge' else ' person'}; prints the token")
        add.add_argument("name")
        if kind == "user":
            add.add_argument("--role", required=True, choices=["admin", "operator", "viewer"])
        add.set_defaults(handler=_identity_cmd(kind, "add"))
        for action, text in (("token", "issue a new token (the old one stops working)"), ("revoke", "revoke")):
            p = group.add_parser(action, help=text)
            p.add_argument("name")
            p.set_defaults(handler=_identity_cmd(kind, action))
        lst = group.add_parser("list", help=f"list {kind}s")
        lst.add_argument("--json", action="store_true")
        lst.set_defaults(handler=_identity_cmd(kind, "list"))
    _add_device_commands(sub)
    from cloud.ml.cli import register as register_model_train
    from cloud.models.cli import add_subcommands as add_model_commands
    from cloud.physics.cli import add_subcommands
    from cloud.process.cli import add_subcommands as add_process_commands
    from cloud.process.sim_cli import add_sim_commands
    from cloud.programs_cli import add_subcommands as add_program_commands

    register_model_train(add_model_commands(sub, _with_storage, _who))
    add_program_commands(sub, _with_storage)
    add_subcommands(sub)
    add_sim_commands(add_process_commands(sub, _config))
    return parser


def _missing_cloud_extra() -> str | None:
    """The first library of the cloud extra that cannot be imported here, or None.

    ``pip install twinedge[edge]`` installs the ``twincloud`` command too (a
    distribution's commands cannot depend on an extra), without what it runs on.
    """
    for module in SERVICE_MODULES:
        try:
            if importlib.util.find_spec(module) is None:
                return module
        except (ImportError, ValueError):
            return module
    return None


def _say_install_the_extra(module: str) -> int:
    print(f"twincloud: {module} is not installed: this is an edge-only install. "
          f"The cloud service needs the cloud extra: pip install 'twinedge[cloud]'", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    missing = _missing_cloud_extra()
    if missing is not None:
        return _say_install_the_extra(missing)
    try:
        return _main(argv)
    except ModuleNotFoundError as exc:  # another library of the extra is missing
        if exc.name is None or exc.name.partition(".")[0] in ("cloud", "shared", "edge"):
            raise
        return _say_install_the_extra(exc.name)


def _main(argv: list[str] | None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level or "INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.handler(args))
    except ConfigFileError as exc:
        print(exc.report(), file=sys.stderr)
        return EX_CONFIG
    except StorageError as exc:
        print(f"twincloud: {exc}", file=sys.stderr)
        return 1
    except InputError as exc:  # physics input errors, among others
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        return 2
    except TwinedgeError as exc:
        print(f"twincloud: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
