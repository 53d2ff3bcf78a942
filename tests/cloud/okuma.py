"""The Okuma recording (``twinsim/data/mtconnect``) as the edge's MTConnect source maps it (docs/cnc.md): one frame
per timestamp, keys the data item ids, SAMPLEs numbers, EVENTs text, UNAVAILABLE a ``<key>.quality`` flag; and
the device's model as an ``mtconnect_device`` document body. For cloud tests that need the real sequences
without an agent and an edge."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any

from defusedxml import ElementTree

DATA = Path(__file__).resolve().parents[2] / "twinsim" / "data" / "mtconnect"
_KEY_OK = re.compile(r"^[A-Za-z_]")


def _key(item_id: str) -> str:
    key = re.sub(r"[^A-Za-z0-9_.:/-]", "_", item_id)
    return key if _KEY_OK.match(key) else f"i_{key}"


def okuma_model(device_id: str = "OKUMA") -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The OKUMA device's ``mtconnect_device`` body, and its items by the name the SHDR uses."""
    root = ElementTree.parse(DATA / "Devices.xml").getroot()
    device = next(e for e in root.iter() if e.tag.rsplit("}", 1)[-1] == "Device" and e.get("name") == "OKUMA")
    items: list[dict[str, Any]] = []
    by_name: dict[str, dict[str, Any]] = {}
    for e in device.iter():
        if e.tag.rsplit("}", 1)[-1] != "DataItem":
            continue
        item = {"id": e.get("id"), "key": _key(e.get("id") or ""), "name": e.get("name"),
                "category": e.get("category"), "type": e.get("type"), "sub_type": e.get("subType"),
                "units": e.get("units")}
        items.append(item)
        by_name[item["name"] or item["id"]] = item
        by_name.setdefault(item["id"], item)
    body = {"uuid": device.get("uuid"), "name": "OKUMA", "device_id": device_id, "instance_id": 1, "items": items}
    return body, by_name


def okuma_frames(device_id: str = "OKUMA") -> list[dict[str, Any]]:
    """The recording's frames in file order (its four parts are not in time order), as wire dicts."""
    _, items = okuma_model(device_id)
    frames: dict[float, dict[str, Any]] = {}
    unavailable: set[str] = set()
    for line in (DATA / "okuma.txt").read_text().splitlines():
        if not line[:1].isdigit() or "@ASSET@" in line:
            continue
        stamp, *fields = line.split("|")
        ts = datetime.fromisoformat(stamp[:26].rstrip("Z") + "+00:00").timestamp()
        item = items.get(fields[0]) if fields else None
        sensors: dict[str, Any] = {}
        if item is not None and item["category"] == "CONDITION":
            continue  # conditions become alarm events on the edge, not frame values
        for name, value in zip(fields[0::2], fields[1::2], strict=False):
            item = items.get(name)
            if item is None or item["category"] == "CONDITION":
                continue
            key = item["key"]
            if value == "UNAVAILABLE":
                sensors[f"{key}.quality"] = "unavailable"
                unavailable.add(key)
                continue
            if item["category"] == "SAMPLE":
                try:
                    sensors[key] = float(value)
                except ValueError:
                    sensors[key] = value[:256]
            else:
                sensors[key] = value if len(value) <= 256 else value[:255] + "\u2026"
            if key in unavailable:
                unavailable.discard(key)
                sensors[f"{key}.quality"] = "ok"
        if sensors:
            frames.setdefault(ts, {"ts": ts, "device_id": device_id, "sensors": {}, "metrics": {}, "status": "ok"})[
                "sensors"].update(sensors)
    return list(frames.values())
