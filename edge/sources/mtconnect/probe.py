"""`twinedge probe mtconnect URL`: what an MTConnect agent serves, before writing the config.

Shows the agent's header (version, instanceId, buffer, sequences, assets), each device with its data items
counted by category and the device id its frames would carry, and the current values of a few items as the
source would store them. ``--config FILE --source NAME`` takes the URL and device ids from the edge config.
``--json`` prints one JSON document for scripts.

Exit status: 0 the agent answered; 2 it could not be reached, timed out or did not speak MTConnect; 78 a
usage or config error.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from typing import Any

from pydantic import ValidationError

from edge.sources.mtconnect.client import AgentClient, AgentUnreachable
from edge.sources.mtconnect.config import MTConnectSourceConfig
from edge.sources.mtconnect.mapping import Mapper, Registry
from edge.sources.mtconnect.protocol import AgentErrors, Header, ProtocolError
from shared.configbase import EX_CONFIG, ConfigFileError, format_validation_error, parse_duration

__all__ = ["add_arguments", "run"]

EXIT_OK, EXIT_UNREACHABLE = 0, 2
_FIRST = ("EXECUTION", "PROGRAM", "CONTROLLER_MODE", "PART_COUNT", "TOOL_NUMBER", "AVAILABILITY")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("url", nargs="?", help="the agent's base URL, e.g. http://10.0.0.21:5000")
    parser.add_argument("--config", help="the edge config file (with --source)")
    parser.add_argument("--source", help="name of an mtconnect source in that file")
    parser.add_argument("--timeout", default="5s", help="per request, e.g. '5s' (default)")
    parser.add_argument("--items", type=int, default=8, help="current values shown per device (default 8)")
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")


def _config(args: argparse.Namespace) -> MTConnectSourceConfig:
    if args.config:
        from edge.config import load_gateway_config

        config = load_gateway_config(args.config)
        found = [s for s in config.sources if s.kind == "mtconnect" and (args.source in (None, s.name))]
        if not found:
            raise ValueError(f"{args.config} has no mtconnect source" + (f" named {args.source!r}" if args.source
                                                                          else ""))
        return found[0]
    if not args.url:
        raise ValueError("give the agent's URL (twinedge probe mtconnect http://HOST:PORT) or --config FILE")
    return MTConnectSourceConfig.model_validate({"kind": "mtconnect", "name": "probe", "url": args.url,
                                                 "timeout": args.timeout})


async def run(args: argparse.Namespace) -> int:
    try:
        parse_duration(args.timeout)
        config = _config(args)
    except ConfigFileError as exc:
        print(exc)
        return EX_CONFIG
    except ValidationError as exc:
        print("\n".join(format_validation_error(exc, MTConnectSourceConfig)))
        return EX_CONFIG
    except ValueError as exc:
        print(f"error: {exc}")
        return EX_CONFIG
    client = AgentClient(str(config.url), timeout=config.timeout)
    try:
        result = await _probe(client, config, max(0, args.items))
    except (AgentUnreachable, ProtocolError) as exc:
        print(f"error: {exc}" if isinstance(exc, AgentUnreachable) else
              f"error: {client.url} did not answer as an MTConnect agent: {exc}")
        return EXIT_UNREACHABLE
    finally:
        await client.close()
    print(json.dumps(result, indent=2) if args.json else _render(result))
    return EXIT_OK


async def _probe(client: AgentClient, config: MTConnectSourceConfig, shown: int) -> dict[str, Any]:
    probe = await client.probe()
    if isinstance(probe, AgentErrors):
        raise ProtocolError("/probe answered with errors: " + "; ".join(f"{c}: {t}" for c, t in probe.errors))
    try:
        registry = Registry.build(probe, config.device_ids)
    except ValueError as exc:
        raise ProtocolError(str(exc)) from None
    current = await client.current()
    header: Header = probe.header
    values: dict[str, dict[str, Any]] = {}
    if not isinstance(current, AgentErrors):
        header = Header(**{k: v if v is not None else getattr(probe.header, k)
                           for k, v in vars(current.header).items()})
        out = Mapper(registry, "probe").map(sorted(current.observations, key=lambda o: o.sequence))
        for frame in out.frames:
            values.setdefault(frame.device_id, {}).update(frame.sensors)
    devices = []
    for dev in probe.devices:
        device_id = registry.device_ids[dev.uuid]
        counts = Counter(i.category for i in dev.items)
        keys = {registry.items[i.id].key: i for i in dev.items}
        state = values.get(device_id, {})
        shown_first = sorted((k for k in keys if k in state and keys[k].category != "CONDITION"),
                             key=lambda k: (keys[k].category != "SAMPLE", keys[k].type not in _FIRST))
        sample = shown_first[:shown]
        devices.append({"name": dev.name, "uuid": dev.uuid, "device_id": device_id, "items": len(dev.items),
                        "by_category": {c: counts.get(c, 0) for c in ("SAMPLE", "EVENT", "CONDITION")},
                        "unavailable": sum(1 for k in keys if state.get(k + ".quality") == "unavailable"),
                        "current": {k: {"value": state[k], "type": keys[k].type, "units": keys[k].units}
                                    for k in sample}})
    return {"url": client.url, "header": {
        "instance_id": header.instance_id, "version": header.version, "buffer_size": header.buffer_size,
        "first_sequence": header.first_sequence, "last_sequence": header.last_sequence,
        "next_sequence": header.next_sequence, "asset_buffer_size": header.asset_buffer_size,
        "asset_count": header.asset_count}, "devices": devices}


def _n(value: int | None) -> str:
    return "?" if value is None else f"{value:,}"


def _render(result: dict[str, Any]) -> str:
    h = result["header"]
    lines = [f"MTConnect agent {result['url']}: version {h['version'] or '?'}, instanceId {h['instance_id']}",
             f"  buffer {_n(h['buffer_size'])} observations: sequences {_n(h['first_sequence'])}.."
             f"{_n(h['last_sequence'])} (next {_n(h['next_sequence'])}); assets {_n(h['asset_count'])} of "
             f"{_n(h['asset_buffer_size'])}"]
    for dev in result["devices"]:
        c = dev["by_category"]
        lines.append(f"device {dev['name']} (uuid {dev['uuid']}) -> frames of {dev['device_id']}: {dev['items']} "
                     f"data items (SAMPLE {c['SAMPLE']}, EVENT {c['EVENT']}, CONDITION {c['CONDITION']})")
        if dev["unavailable"]:
            lines.append(f"  {dev['unavailable']} of them UNAVAILABLE now")
        for key, v in dev["current"].items():
            units = f" {v['units']}" if v["units"] else ""
            text = str(v["value"])
            text = text if len(text) <= 40 else text[:39] + "…"
            lines.append(f"  {key:<28} {text:<24}{units}  ({v['type']})")
    return "\n".join(lines)
