"""``twincloud process define|list|test|enable|disable``: virtual-sensor bindings through the running cloud's API.

Unlike the registry commands, these talk to the API rather than the database:
the running service holds the engine (it compiles a binding against the
process models its config names, and runs ``test`` replays), so the commands
check and run a binding exactly as the service will. The service's address
comes from ``--url`` or ``$TWINCLOUD_URL`` (default: the config's
``server.host``/``server.port``), the token (operator role; viewer enough for
``list``) from ``--token-file`` or ``$TWINCLOUD_TOKEN`` — never from the command
line, where other users could read it.

Exit codes: 0 ok; 1 the service refused for another reason (unknown binding,
a name taken, no token or not allowed, the service unreachable); 2 a binding
that cannot run as given (each problem printed as ``path: message``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tomllib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

__all__ = ["add_subcommands"]

URL_ENV = "TWINCLOUD_URL"
TOKEN_ENV = "TWINCLOUD_TOKEN"
_TIMEOUT = httpx.Timeout(120.0, connect=10.0)  # a test replay of a model over a long range takes a while


class _Refused(Exception):
    """The service answered with an error: the exit code and the lines to print."""

    def __init__(self, code: int, lines: list[str]) -> None:
        super().__init__("; ".join(lines))
        self.code, self.lines = code, lines


def _base_url(args: argparse.Namespace, config: Callable[[], Any]) -> str:
    url = args.url or os.environ.get(URL_ENV)
    if not url:
        server = config().server
        host = "127.0.0.1" if server.host in ("0.0.0.0", "::") else server.host
        url = f"http://{host}:{server.port}"
    return str(url).rstrip("/")


def _token(args: argparse.Namespace) -> str:
    if args.token_file is not None:
        try:
            return Path(args.token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise _Refused(1, [f"cannot read the token file {args.token_file}: {exc.strerror or exc}"]) from None
    token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        raise _Refused(1, [f"no token: set ${TOKEN_ENV} or give --token-file (an operator's token, from "
                           "`twincloud user add NAME --role operator`)"])
    return token


def _call(args: argparse.Namespace, config: Callable[[], Any], method: str, path: str, **kw: Any) -> Any:
    url = _base_url(args, config)
    try:
        resp = httpx.request(method, url + "/api/v1/process" + path, timeout=_TIMEOUT,
                             headers={"Authorization": f"Bearer {_token(args)}"}, **kw)
    except httpx.HTTPError as exc:
        raise _Refused(1, [f"the cloud at {url} cannot be reached: {exc} (is `twincloud serve` running? "
                           f"--url or ${URL_ENV} names it)"]) from None
    if resp.status_code < 400:
        return resp.json()
    try:
        detail = resp.json().get("detail")
    except ValueError:
        detail = None
    if isinstance(detail, list):
        lines = [f"{d.get('path')}: {d.get('message')}" if d.get("path") else str(d.get("message")) for d in detail]
    else:
        lines = [str(detail or resp.text or resp.reason_phrase)]
    raise _Refused(2 if resp.status_code == 422 else 1, [f"{resp.status_code}: {line}" for line in lines])


def _read_definition(path: str) -> Any:
    """A binding definition from a JSON or TOML file ('-': JSON on stdin)."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise _Refused(1, [f"cannot read {path}: {exc.strerror or exc}"]) from None
    try:
        if path.endswith(".toml"):
            return tomllib.loads(text)
        return json.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise _Refused(2, [f"{path}: not valid {'TOML' if path.endswith('.toml') else 'JSON'}: {exc}"]) from None


def _when(seconds: float | None) -> str:
    return "-" if seconds is None else datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")


def _print_binding(b: dict[str, Any]) -> None:
    spec = b["spec"].get("spec", {})
    what = spec.get("expression") if b["kind"] == "formula" else f"model {spec.get('model')}"
    print(f"{b['name']:<20} {b['device']:<16} {b['kind']:<8} {'on ' if b['enabled'] else 'off'} "
          f"{b['points']:>8,} pts {b['flagged']:>6,} flagged  up to {_when(b['watermark'])}  {what}")
    if b.get("last_flag"):
        print(f"{'':<20} last flag: {b['last_flag']}")


def _define(args: argparse.Namespace, config: Callable[[], Any]) -> int:
    body = _read_definition(args.file)
    found = _call(args, config, "POST", "/bindings", json=body, params={"replace": str(args.replace).lower()})
    print(f"binding {found['name']} of {found['device']} defined ({found['kind']}); it runs from the device's "
          "next readings")
    return 0


def _list(args: argparse.Namespace, config: Callable[[], Any]) -> int:
    found = _call(args, config, "GET", "/bindings", params={"device": args.device} if args.device else {})
    if args.json:
        print(json.dumps(found, indent=2))
        return 0
    for b in found:
        _print_binding(b)
    if not found:
        print("no bindings" + (f" of {args.device}" if args.device else ""))
    return 0


def _switch(enabled: bool) -> Callable[[argparse.Namespace, Callable[[], Any]], int]:
    def run(args: argparse.Namespace, config: Callable[[], Any]) -> int:
        found = _call(args, config, "POST", f"/bindings/{args.name}/{'enable' if enabled else 'disable'}")
        print(f"binding {found['name']} {'enabled: it catches up from its watermark' if enabled else 'disabled'}")
        return 0
    return run


def _test(args: argparse.Namespace, config: Callable[[], Any]) -> int:
    if (args.name is None) == (args.file is None):
        raise _Refused(2, ["give a binding's NAME or --file DEFINITION (one of them)"])
    body: dict[str, Any] = {"start": args.start, "stop": args.stop, "max_points": args.max_points}
    if args.file is not None:
        body["binding"] = _read_definition(args.file)
    else:
        body["name"] = args.name
    found = _call(args, config, "POST", "/test", json=body)
    if args.json:
        print(json.dumps(found, indent=2))
        return 0
    rows = found["points"]
    width = max([len("field"), *(len(p["field"]) for p in rows)])
    print(f"{'time (UTC)':<29} {'field':<{width}} {'value':>16}  flag")
    for p in rows:
        value = "-" if p["value"] is None else f"{p['value']:.6g}"
        print(f"{_when(p['ts']):<29} {p['field']:<{width}} {value:>16}  {p['flag'] or ''}")
    print(f"{len(rows)} points{' (cut at --max-points)' if found['truncated'] else ''}; nothing was stored")
    return 0


def _handler(action: Callable[[argparse.Namespace, Callable[[], Any]], int],
             config: Callable[[argparse.Namespace], Any]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return action(args, lambda: config(args))
        except _Refused as exc:
            for line in exc.lines:
                print(f"twincloud: {line}", file=sys.stderr)
            return exc.code
    return run


def add_subcommands(sub: Any, config: Callable[[argparse.Namespace], Any]) -> Any:
    """Register ``process``; ``config(args)`` loads the cloud config (for the default URL). Returns the
    ``process`` subparsers, for more commands of the group."""
    parser = sub.add_parser("process", help="process models: virtual sensors bound to devices (through the API), "
                                            "and PUR moulding simulation and optimization")
    group = parser.add_subparsers(dest="process_command", required=True)

    def common(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--url", help=f"the cloud's address (default ${URL_ENV}, else server.host:port of the config)")
        p.add_argument("--token-file", help=f"a file holding the token (default ${TOKEN_ENV})")
        return p

    define = common(group.add_parser("define", help="define a binding from a JSON or TOML file ('-': stdin)"))
    define.add_argument("file", metavar="FILE")
    define.add_argument("--replace", action="store_true", help="replace a binding of the same name")
    define.set_defaults(handler=_handler(_define, config))
    lst = common(group.add_parser("list", help="bindings, their progress and last flag"))
    lst.add_argument("--device")
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(handler=_handler(_list, config))
    test = common(group.add_parser("test", help="run a binding over a stored range and print its outputs; "
                                                "nothing is stored"))
    test.add_argument("name", nargs="?", help="a defined binding")
    test.add_argument("--file", help="a definition to try instead (JSON or TOML)")
    test.add_argument("--start", required=True, help="epoch seconds or ISO 8601")
    test.add_argument("--stop", required=True, help="epoch seconds or ISO 8601")
    test.add_argument("--max-points", type=int, default=1000)
    test.add_argument("--json", action="store_true")
    test.set_defaults(handler=_handler(_test, config))
    for name, enabled in (("enable", True), ("disable", False)):
        p = common(group.add_parser(name, help="run the binding again (it catches up)" if enabled
                                    else "stop running the binding (what it derived stays)"))
        p.add_argument("name")
        p.set_defaults(handler=_handler(_switch(enabled), config))
    return group
