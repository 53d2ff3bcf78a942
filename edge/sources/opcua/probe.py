"""`twinedge probe opcua`: read nodes exactly as the source would decode them, or browse a subtree.

Either ad hoc (``--url opc.tcp://10.0.0.9:4840 --node 'ns=2;s=Press.Temp'``, with
optional security and user options) or from the edge config (``--config FILE
--source NAME [--node NAME ...]``), so an operator can check a node before
deploying. For each node it shows the raw value and its data type, the status
code, both timestamps, and what a frame would carry (or why it is refused).
``--browse [NODE_ID]`` lists the tree under a node (default: Objects) to help
write the config. ``--json`` prints one JSON document for scripts.

Exit status: 0 every node readable and carried; 1 some node refused or bad;
2 the server could not be reached or refused us; 78 a usage or config error.
"""

from __future__ import annotations

import argparse
import json
import logging
from datetime import datetime
from typing import Any

from asyncua import Client, ua
from pydantic import ValidationError

from edge.sources.opcua.client import (
    TRANSPORT_ERRORS,
    OpcUaConnectError,
    close,
    connect,
    describe_error,
    is_good,
    read_values,
    resolve_node_ids,
)
from edge.sources.opcua.config import OpcUaSourceConfig, check_node_id
from edge.sources.opcua.values import decode_data_value, describe_status
from shared.configbase import EX_CONFIG, ConfigFileError, format_validation_error

__all__ = ["add_arguments", "run"]

log = logging.getLogger(__name__)

EXIT_OK, EXIT_NODE_PROBLEM, EXIT_UNREACHABLE, EXIT_CONFIG = 0, 1, 2, EX_CONFIG
_BROWSE_LIMIT = 2000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    where = parser.add_argument_group("server (ad hoc)")
    where.add_argument("--url", help="opc.tcp://host:port of the server")
    where.add_argument("--username", help="user name for the session")
    where.add_argument("--password-file", help="file holding the password")
    where.add_argument("--security", choices=["None", "Basic256Sha256"], default="None", help="security policy")
    where.add_argument("--mode", choices=["Sign", "SignAndEncrypt"], default="SignAndEncrypt")
    where.add_argument("--certificate", help="our certificate (PEM or DER)")
    where.add_argument("--private-key", help="its private key")
    where.add_argument("--server-certificate", help="pin the server's certificate")
    where.add_argument("--timeout", default="5s", help="request timeout, e.g. '5s' (default)")
    conf = parser.add_argument_group("server from the edge config")
    conf.add_argument("--config", help="the edge config file")
    conf.add_argument("--source", help="name of an opcua source in that file")
    parser.add_argument("--node", action="append", default=[],
                        help="node id ('ns=2;s=Press.Temp'); with --config a node name. Repeatable")
    parser.add_argument("--browse", nargs="?", const="i=85", metavar="NODE_ID",
                        help="list the tree under a node (default: the Objects folder)")
    parser.add_argument("--depth", type=int, default=3, help="browse depth (default 3)")
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")


class _UsageError(Exception):
    def __init__(self, lines: list[str]) -> None:
        super().__init__("; ".join(lines))
        self.lines = lines


def _from_config_file(args: argparse.Namespace) -> OpcUaSourceConfig:
    from edge.config import load_gateway_config  # the probe may run without a config file

    try:
        gateway = load_gateway_config(args.config)
    except ConfigFileError as exc:
        raise _UsageError([f"{exc.path}: {line}" for line in exc.lines]) from None
    sources = [s for s in gateway.sources if s.kind == "opcua"]
    match = [s for s in sources if s.name == args.source]
    if not match:
        names = ", ".join(repr(s.name) for s in sources) or "none"
        raise _UsageError([f"{args.config}: no opcua source named {args.source!r} (opcua sources: {names})"])
    config = match[0]
    assert isinstance(config, OpcUaSourceConfig)
    if args.node:
        known = {n.name for n in config.nodes}
        unknown = [n for n in args.node if n not in known]
        if unknown:
            raise _UsageError([f"source {config.name!r} has no node named {n!r}" for n in unknown])
        nodes = [n for n in config.nodes if n.name in args.node]
        config = config.model_copy(update={"nodes": nodes})
    return config


def _ad_hoc(args: argparse.Namespace) -> OpcUaSourceConfig:
    if not args.url:
        raise _UsageError(["give --url (or --config and --source)"])
    if not args.node and args.browse is None:
        raise _UsageError(["give at least one --node, or --browse"])
    security: dict[str, Any] = {"policy": args.security}
    if args.security != "None":
        security.update(mode=args.mode, certificate=args.certificate, private_key=args.private_key,
                        server_certificate=args.server_certificate)
    data: dict[str, Any] = {
        "kind": "opcua", "name": "probe", "url": args.url, "request_timeout": args.timeout, "security": security,
        "nodes": [{"name": f"node{i}", "node_id": nid} for i, nid in enumerate(args.node or ["i=2256"])],
    }
    if args.username:
        data.update(username=args.username, password_file=args.password_file)
    try:
        return OpcUaSourceConfig.model_validate(data)
    except ValidationError as exc:
        lines = format_validation_error(exc, OpcUaSourceConfig)
        renamed = {"nodes[": "--node[", "request_timeout:": "--timeout:", "security.": "--"}
        for old, new in renamed.items():
            lines = [line.replace(old, new, 1) if line.startswith(old) else line for line in lines]
        raise _UsageError(lines) from None


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment is not None else None


def _raw(value: Any) -> Any:
    """The raw value in a JSON-friendly form (never huge)."""
    if isinstance(value, bool | int | float | str) or value is None:
        return value if not isinstance(value, str) or len(value) <= 300 else value[:300] + "..."
    if isinstance(value, list) and len(value) <= 20 and all(isinstance(v, bool | int | float) for v in value):
        return value
    text = repr(value)
    return text if len(text) <= 300 else text[:300] + "..."


async def _read_nodes(client: Client, config: OpcUaSourceConfig) -> list[dict[str, Any]]:
    resolved = await resolve_node_ids(client, [n.node_id for n in config.nodes])
    ids = [r for r in resolved if isinstance(r, ua.NodeId)]
    per_call = config.max_items_per_call
    values = await read_values(client, ids, per_call)
    types = await read_values(client, ids, per_call, ua.AttributeIds.DataType)
    type_ids = [dv.Value.Value if is_good(dv) and dv.Value is not None else ua.NodeId() for dv in types]
    names = await read_values(client, type_ids, per_call, ua.AttributeIds.BrowseName)
    found = iter(zip(values, type_ids, names, strict=True))
    report = []
    for node, res in zip(config.nodes, resolved, strict=True):
        entry: dict[str, Any] = {"name": node.name, "node_id": node.node_id, "device_id": node.device_id
                                 or config.frame_device}
        if isinstance(res, str):
            entry.update(status="(not read)", carried=None, problem=res)
            report.append(entry)
            continue
        dv, type_id, type_name = next(found)
        value, problem, ts = decode_data_value(dv)
        variant = dv.Value
        entry.update(
            value=_raw(variant.Value if variant is not None else None),
            variant_type=getattr(getattr(variant, "VariantType", None), "name", None),
            data_type=(type_name.Value.Value.Name if is_good(type_name) and type_name.Value is not None
                       and type_name.Value.Value else None),
            data_type_id=type_id.to_string() if not type_id.is_null() else None,
            status=describe_status(dv.StatusCode),
            source_timestamp=_iso(dv.SourceTimestamp),
            server_timestamp=_iso(dv.ServerTimestamp),
            carried=value,
            problem=problem,
        )
        report.append(entry)
    return report


async def _browse(client: Client, root: str, depth: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    async def walk(node_id: ua.NodeId, path: str, level: int) -> None:
        if level > depth or len(out) >= _BROWSE_LIMIT:
            return
        for ref in await client.get_node(node_id).get_children_descriptions():
            if len(out) >= _BROWSE_LIMIT:
                return
            name = ref.BrowseName.Name
            child_path = f"{path}/{name}" if path else name
            child_id = ua.NodeId(ref.NodeId.Identifier, ref.NodeId.NamespaceIndex, ref.NodeId.NodeIdType)
            out.append({"path": child_path, "node_id": child_id.to_string(), "class": ref.NodeClass.name,
                        "depth": level})
            if ref.NodeClass in (ua.NodeClass.Object, ua.NodeClass.Variable):
                await walk(child_id, child_path, level + 1)

    start = (await resolve_node_ids(client, [root]))[0]
    if isinstance(start, str):
        raise OpcUaConnectError(start)
    await walk(start, "", 1)
    return out


def _print_nodes(report: list[dict[str, Any]], from_config: bool) -> None:
    for entry in report:
        if from_config:
            print(f"{entry['name']}  {entry['node_id']}  (device {entry['device_id']})")
        else:
            print(entry["node_id"])
        if "value" in entry:
            dtype = entry["data_type"] or entry["variant_type"]
            print(f"  value:        {entry['value']!r}  [{dtype}]")
            print(f"  status:       {entry['status']}")
            print(f"  source time:  {entry['source_timestamp'] or '-'}")
            print(f"  server time:  {entry['server_timestamp'] or '-'}")
        if entry["problem"] is None:
            print(f"  in a frame:   {entry['carried']!r}")
        else:
            print(f"  REFUSED:      {entry['problem']}")


def _print_tree(tree: list[dict[str, Any]]) -> None:
    for item in tree:
        indent = "  " * (item["depth"] - 1)
        print(f"{indent}{item['path'].rsplit('/', 1)[-1]}  [{item['class']}]  {item['node_id']}")
    if len(tree) >= _BROWSE_LIMIT:
        print(f"(stopped after {_BROWSE_LIMIT} nodes; browse a deeper node or lower --depth)")


async def run(args: argparse.Namespace) -> int:
    """Probe as the arguments say; print the result; return the exit status."""
    library = logging.getLogger("asyncua")
    if library.level == logging.NOTSET and not logging.getLogger().isEnabledFor(logging.DEBUG):
        library.setLevel(logging.CRITICAL)  # its warnings and tracebacks repeat what we print in plain words
    try:
        if args.config and not args.source:
            raise _UsageError(["--config needs --source NAME"])
        if args.browse is not None:
            try:
                check_node_id(args.browse)
            except ValueError as exc:
                raise _UsageError([f"--browse {args.browse!r}: {exc}"]) from None
        config = _from_config_file(args) if args.config else _ad_hoc(args)
    except _UsageError as exc:
        for line in exc.lines:
            print(f"error: {line}")
        return EXIT_CONFIG
    try:
        client = await connect(config)
    except OpcUaConnectError as exc:
        print(json.dumps({"error": exc.reason}) if args.json else f"error: {exc.reason}")
        return EXIT_UNREACHABLE
    try:
        result: dict[str, Any] = {"url": config.url}
        if args.browse is not None:
            result["browse"] = await _browse(client, args.browse, args.depth)
        if args.node or args.browse is None:
            result["nodes"] = await _read_nodes(client, config)
    except (*TRANSPORT_ERRORS, OpcUaConnectError) as exc:
        reason = describe_error(exc, config)[0]
        print(json.dumps({"error": reason}) if args.json else f"error: {reason}")
        return EXIT_UNREACHABLE
    finally:
        await close(client, config.request_timeout)
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        if "browse" in result:
            _print_tree(result["browse"])
        if "nodes" in result:
            _print_nodes(result["nodes"], from_config=bool(args.config))
    nodes = result.get("nodes", [])
    return EXIT_NODE_PROBLEM if any(entry["problem"] for entry in nodes) else EXIT_OK
