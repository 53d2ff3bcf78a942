"""``twincloud model ...``, ``twincloud alerts ...``, ``twincloud drift`` and ``twincloud events``: the registry
from the command line, with the edges' alerts, drift and events.

Like the device commands, these work on the configured database directly (no
token needed: whoever may run them may read the database), with the same
checks as the HTTP API (``cloud.models.registry``). Exit codes: 0 ok, 1 an
unknown model, version, rule, edge or alert, or a version still assigned; 2
a package that is refused (the reasons are printed).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cloud.identities import UnknownIdentity
from cloud.models import registry
from cloud.storage.base import Storage
from cloud.storage.registry import (
    DRIFTED,
    AlertQuery,
    Assignment,
    ModelInUse,
    UnknownAlert,
    UnknownModel,
    UnknownRule,
)
from shared.errors import InputError
from shared.modelpackage import MAX_PACKAGE

__all__ = ["add_subcommands"]

Runner = Callable[[argparse.Namespace, Callable[[Storage], Awaitable[int]]], int]
_NOT_FOUND = (UnknownModel, UnknownRule, UnknownAlert, UnknownIdentity, ModelInUse)


def _when(us: int | float | None) -> str:
    return "-" if us is None else datetime.fromtimestamp(us / 1e6, UTC).isoformat(timespec="seconds")


def _where(a: Assignment) -> str:
    return "fleet" if a.scope == "fleet" else f"{a.scope} {a.target}"


def _rule(args: argparse.Namespace) -> tuple[str, str | None]:
    if args.fleet:
        return "fleet", None
    return ("device", args.device) if args.device else ("edge", args.edge)


def _command(action: str, run: Runner, who: Callable[[], str]) -> Callable[[argparse.Namespace], int]:
    def handler(args: argparse.Namespace) -> int:
        if action == "upload":
            try:
                data = _read_package(args.file)
            except OSError as exc:
                print(f"twincloud: cannot read {args.file}: {exc.strerror or exc}", file=sys.stderr)
                return 1

            async def act(storage: Storage) -> int:
                stored, new = await registry.upload(storage, data, who())
                print(f"model {stored.name} version {stored.version} sha256 {stored.sha256}"
                      + ("" if new else " (stored already)"))
                return 0
        else:
            async def act(storage: Storage) -> int:
                return await _ACTIONS[action](storage, args, who)
        try:
            return run(args, act)
        except _NOT_FOUND as exc:
            print(f"twincloud: {exc}", file=sys.stderr)
            return 1
    return handler


def _read_package(path: Path) -> bytes:
    with path.open("rb") as f:
        data = f.read(MAX_PACKAGE + 1)
    if len(data) > MAX_PACKAGE:
        raise InputError(f"{path} is larger than a model package may be ({MAX_PACKAGE:,} bytes)", "FILE")
    return data


async def _list(storage: Storage, args: argparse.Namespace, who: Callable[[], str]) -> int:
    found = await storage.models()
    if args.json:
        print(json.dumps([{"name": m.name, "version": m.version, "kind": m.kind, "sha256": m.sha256, "size": m.size,
                           "uploaded_by": m.uploaded_by, "uploaded_at": m.uploaded_at / 1e6} for m in found], indent=2))
        return 0
    for m in found:
        print(f"{m.name:<24} v{m.version:<4} {m.kind:<10} {m.size:>10,} B  {m.sha256[:12]}  {_when(m.uploaded_at)}  "
              f"{m.uploaded_by}")
    return 0


async def _info(storage: Storage, args: argparse.Namespace, who: Callable[[], str]) -> int:
    if args.version is None:
        versions = await storage.models(args.name)
        if not versions:
            raise UnknownModel(f"no model named {args.name!r}", "name")
        args.version = versions[-1].version
    m = await storage.model_version(args.name, args.version)
    if m is None:
        raise UnknownModel(f"model {args.name!r} has no version {args.version}", "version")
    card, schema = m.card_dict(), m.schema_dict()
    rules = [a for a in await storage.assignments() if (a.model, a.version) == (m.name, m.version)]
    if args.json:
        print(json.dumps({"name": m.name, "version": m.version, "sha256": m.sha256, "size": m.size, "schema": schema,
                          "card": card, "assignments": [_where(a) for a in rules]}, indent=2))
        return 0
    sensors = ", ".join(s["name"] + (f" [{s['unit']}]" if s.get("unit") else "") for s in schema["sensors"])
    print(f"{m.name} version {m.version} ({m.kind}), {m.size:,} bytes, sha256 {m.sha256}")
    print(f"  uploaded {_when(m.uploaded_at)} by {m.uploaded_by}; {card.get('description') or 'no description'}")
    print(f"  input: {schema['mode']} mode, sensors {sensors}"
          + (f", features {', '.join(schema['features'])}" if schema.get("features") else ""))
    source = card.get("source", {})
    print(f"  trained on: {source.get('kind')} {source.get('device_id') or source.get('path') or ''}, "
          f"{source.get('rows', 0):,} rows; {card.get('training', {}).get('algorithm', '')}")
    metrics = card.get("metrics", {})
    for key in sorted({k for variant in metrics.values() for k in variant}):
        print(f"  {key:<22} fp32 {metrics.get('fp32', {}).get(key, float('nan')):>10.4g}   "
              f"int8 {metrics.get('int8', {}).get(key, float('nan')):>10.4g}")
    print(f"  assigned to: {', '.join(_where(a) for a in rules) or 'nothing'}")
    return 0


async def _download(storage: Storage, args: argparse.Namespace, who: Callable[[], str]) -> int:
    found = await storage.model_package(args.name, args.version)
    if found is None:
        raise UnknownModel(f"model {args.name!r} has no version {args.version}", "version")
    sha256, data = found
    if hashlib.sha256(data).hexdigest() != sha256:
        print(f"twincloud: the stored package of {args.name} version {args.version} does not match its sha256",
              file=sys.stderr)
        return 1
    args.output.write_bytes(data)
    print(f"{args.output}: {len(data):,} bytes, sha256 {sha256}")
    return 0


async def _assign(storage: Storage, args: argparse.Namespace, who: Callable[[], str]) -> int:
    scope, target = _rule(args)
    rule = await registry.assign(storage, scope, target, args.name, args.version, who())
    print(f"{_where(rule)}: model {rule.model} version {rule.version}")
    return 0


async def _unassign(storage: Storage, args: argparse.Namespace, who: Callable[[], str]) -> int:
    scope, target = _rule(args)
    if not await registry.unassign(storage, scope, target, who()):
        raise UnknownRule(f"no {scope} rule" + ("" if target is None else f" for {target!r}"), "target")
    print(f"{scope if target is None else f'{scope} {target}'}: rule removed")
    return 0


async def _delete(storage: Storage, args: argparse.Namespace, who: Callable[[], str]) -> int:
    await storage.delete_model(args.name, args.version)
    print(f"model {args.name} version {args.version} deleted")
    return 0


async def _assignments(storage: Storage, args: argparse.Namespace, who: Callable[[], str]) -> int:
    if args.history:
        for c in await storage.assignment_changes(1000):
            where = "fleet" if c.scope == "fleet" else f"{c.scope} {c.target}"
            before = f"{c.previous_model} v{c.previous_version}" if c.previous_model else "(none)"
            after = f"{c.model} v{c.version}" if c.model else "(removed)"
            print(f"{_when(c.at)}  {where:<30} {before} -> {after}  by {c.changed_by}")
        return 0
    rules = await storage.assignments()
    if args.json:
        print(json.dumps([{"scope": a.scope, "target": a.target, "model": a.model, "version": a.version,
                           "sha256": a.sha256, "assigned_by": a.assigned_by, "assigned_at": a.assigned_at / 1e6}
                          for a in rules], indent=2))
        return 0
    for a in rules:
        print(f"{_where(a):<32} {a.model} v{a.version}  {_when(a.assigned_at)}  by {a.assigned_by}")
    return 0


async def _alerts(storage: Storage, args: argparse.Namespace, who: Callable[[], str]) -> int:
    found = await storage.alerts(AlertQuery(device=args.device, edge=args.edge, state=args.state, limit=args.limit))
    if args.json:
        print(json.dumps([_alert_json(a) for a in found], indent=2))
        return 0
    for a in found:
        acked = f"acked by {a.acked_by}" if a.acked_by else "unacknowledged"
        print(f"{a.id:>7}  {_when(a.at)}  {a.state:<8} {a.device:<20} {a.model} v{a.version}  "
              f"score {a.score if a.score is not None else '-'}  {acked}  {a.message or ''}".rstrip())
    return 0


def _alert_json(a: Any) -> dict[str, Any]:
    return {"id": a.id, "edge": a.edge, "alert_id": a.alert_id, "device": a.device, "model": a.model,
            "version": a.version, "state": a.state, "at": a.at / 1e6, "score": a.score, "peak": a.peak,
            "message": a.message, "acked_by": a.acked_by, "acked_at": None if a.acked_at is None else a.acked_at / 1e6,
            "ack_comment": a.ack_comment}


async def _ack(storage: Storage, args: argparse.Namespace, who: Callable[[], str]) -> int:
    a = await storage.ack_alert(args.id, who(), args.comment, time.time_ns() // 1000)
    print(f"alert {a.id} ({a.device}) acknowledged by {a.acked_by} at {_when(a.acked_at)}")
    return 0


async def _events(storage: Storage, args: argparse.Namespace, who: Callable[[], str]) -> int:
    from cloud.storage.events import EventQuery
    from shared.batch import EVENT_LEVELS, levels_up_to

    shown = tuple(EVENT_LEVELS.index(level) for level in levels_up_to(args.level))
    found = await storage.events(EventQuery(edge=args.edge, device=args.device, levels=shown, limit=args.limit))
    if args.json:
        print(json.dumps([{"id": e.id, "edge": e.edge, "seq": e.seq, "ts": e.ts / 1e6, "level": e.level_name,
                           "kind": e.kind, "device": e.device, "source": e.source, "message": e.message,
                           "details": json.loads(e.details)} for e in found], indent=2))
        return 0
    for e in reversed(found):  # oldest first, like a log
        print(f"{_when(e.ts)}  {e.edge:<16} {e.level_name:<9} {e.kind:<18} {e.message}")
    return 0


async def _drift(storage: Storage, args: argparse.Namespace, who: Callable[[], str]) -> int:
    rows = [r for r in await storage.model_reports() if not args.drifted or r.drift in DRIFTED]
    if args.json:
        print(json.dumps([{"edge": r.edge, "device": r.device, "model": r.model, "version": r.version,
                           "state": r.state, "drift": r.drift, "psi": r.psi, "rows": r.rows} for r in rows], indent=2))
        return 0
    for r in rows:
        moved = ", ".join(f"{k} {v:.3f}" for k, v in sorted(r.psi.items(), key=lambda kv: -kv[1])[:5])
        print(f"{r.device:<24} {r.edge:<16} {r.model} v{r.version}  {r.state:<8} {r.drift:<7} {moved}".rstrip())
    return 0


_ACTIONS: dict[str, Callable[[Storage, argparse.Namespace, Callable[[], str]], Awaitable[int]]] = {
    "list": _list, "info": _info, "download": _download, "assign": _assign, "unassign": _unassign,
    "delete": _delete, "assignments": _assignments, "alerts-list": _alerts, "alerts-ack": _ack, "drift": _drift,
    "events": _events}


def _number(limit: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if not 1 <= value <= limit:
            raise ValueError(text)
        return value
    parse.__name__ = "number"  # argparse says "invalid number value"
    return parse


VERSION = _number(2**31 - 1)


def _rule_options(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--device", metavar="D", help="one device")
    where.add_argument("--edge", metavar="E", help="every device of one edge (a canary)")
    where.add_argument("--fleet", action="store_true", help="every device")


def add_subcommands(sub: Any, run: Runner, who: Callable[[], str]) -> Any:
    """Register ``model``, ``alerts`` and ``drift``; returns the ``model`` group's subparsers (for ``train``)."""
    model = sub.add_parser("model", help="model registry: upload, assign, roll back").add_subparsers(
        dest="model_command", required=True)
    p = model.add_parser("upload", help="check a model package and store it as the next version")
    p.add_argument("file", type=Path, metavar="FILE")
    p.set_defaults(handler=_command("upload", run, who))
    p = model.add_parser("list", help="every model version")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_command("list", run, who))
    p = model.add_parser("info", help="a version's card: input, metrics fp32/int8, source, where assigned")
    p.add_argument("name")
    p.add_argument("version", type=VERSION, nargs="?", help="default: the newest")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_command("info", run, who))
    p = model.add_parser("download", help="write a version's package to a file")
    p.add_argument("name")
    p.add_argument("version", type=VERSION)
    p.add_argument("-o", "--output", type=Path, required=True, metavar="FILE")
    p.set_defaults(handler=_command("download", run, who))
    p = model.add_parser("assign", help="serve a version to a device, an edge's devices or the fleet "
                                        "(assign the previous version to roll back)")
    p.add_argument("name")
    p.add_argument("version", type=VERSION)
    _rule_options(p)
    p.set_defaults(handler=_command("assign", run, who))
    p = model.add_parser("unassign", help="remove a rule: its devices fall back to the next rule")
    _rule_options(p)
    p.set_defaults(handler=_command("unassign", run, who))
    p = model.add_parser("delete", help="delete a version no rule names")
    p.add_argument("name")
    p.add_argument("version", type=VERSION)
    p.set_defaults(handler=_command("delete", run, who))
    p = model.add_parser("assignments", help="which version scores which devices")
    p.add_argument("--history", action="store_true", help="every change, who and when")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_command("assignments", run, who))

    alerts = sub.add_parser("alerts", help="the edges' alerts").add_subparsers(dest="alerts_command", required=True)
    p = alerts.add_parser("list", help="alerts, newest first")
    p.add_argument("--device")
    p.add_argument("--edge")
    p.add_argument("--state", choices=["open", "cleared", "acknowledged", "unacknowledged"])
    p.add_argument("--limit", type=_number(10_000), default=50)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_command("alerts-list", run, who))
    p = alerts.add_parser("ack", help="acknowledge an alert (by the id `alerts list` shows)")
    p.add_argument("id", type=_number(2**63 - 1))
    p.add_argument("--comment", default="", help="recorded with the acknowledgement")
    p.set_defaults(handler=_command("alerts-ack", run, who))

    p = sub.add_parser("events", help="the edges' event log, newest last (GET /api/v1/events)")
    p.add_argument("--edge")
    p.add_argument("--device")
    p.add_argument("--level", choices=["operator", "technical", "developer"], default="operator",
                   help="up to this level (default operator: operator events only)")
    p.add_argument("--limit", type=_number(10_000), default=50, help="the newest N (default 50)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_command("events", run, who))

    p = sub.add_parser("drift", help="each device's model as its edge reported it, and the inputs that moved")
    p.add_argument("--drifted", action="store_true", help="only warn and drift")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_command("drift", run, who))
    return model
