"""The device model the test agent serves, read from a ``Devices.xml`` (the simulator's own file).

Each data item knows what it needs to be replayed and rendered: its category, the XML element its
observations take (``EXECUTION`` → ``Execution``), the component it belongs to (for the
``ComponentStream``) and how many SHDR fields it reads. Like the reference agent, a device without
``ASSET_CHANGED`` / ``ASSET_REMOVED`` items gets them (ids ``<device id>_asset_chg`` / ``_asset_rem``).
Each ``<Device>`` of the probe is rendered once, without namespaces, and wrapped per request in the
namespace of the schema version served.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Component", "DeviceModel", "Item", "load_devices"]

_COMPONENT_CONTAINERS = {"Components", "Compositions"}


@dataclass(frozen=True)
class Component:
    element: str  # "Device", "Rotary", "Path", ...
    id: str
    name: str | None


@dataclass(frozen=True)
class Item:
    id: str
    name: str | None
    category: str  # SAMPLE, EVENT, CONDITION
    type: str
    sub_type: str | None
    representation: str | None
    device_uuid: str
    component: Component

    def element(self, version: tuple[int, int]) -> str:
        """The observation's XML element for a schema version: ``PATH_FEEDRATE`` → ``PathFeedrate``."""
        name = "".join(part.capitalize() for part in self.type.split("_"))
        if self.representation == "TIME_SERIES":
            return name + "TimeSeries"
        if self.representation in ("DATA_SET", "TABLE") and version < (2, 0):
            return name + ("DataSet" if self.representation == "DATA_SET" else "Table")
        return name

    @property
    def shdr_kind(self) -> str:
        """What ``read_shdr`` needs to know to read this item's fields."""
        if self.category == "CONDITION":
            return "CONDITION"
        if self.type in ("MESSAGE", "ALARM"):
            return self.type
        if self.representation == "TIME_SERIES":
            return "TIME_SERIES"
        return self.category


@dataclass(frozen=True)
class DeviceModel:
    uuid: str
    name: str
    id: str
    items: tuple[Item, ...]


def _local(tag: object) -> str:
    return tag.rpartition("}")[2] if isinstance(tag, str) else ""


def _strip(el: ET.Element) -> None:
    """Drop namespaces from tags and attributes, so the tree renders inside any version's namespace."""
    for node in el.iter():
        node.tag = _local(node.tag)
        node.attrib = {k: v for k, v in node.attrib.items() if not k.startswith("{")}


def load_devices(path: Path, only: tuple[str, ...] | None = None) -> tuple[tuple[DeviceModel, ...], dict[str, str]]:
    """Read ``Devices.xml``: the devices (all, or those named in ``only``) and each one's ``<Device>`` XML
    by uuid."""
    root = ET.parse(path).getroot()
    _strip(root)
    devices_el = next((c for c in root if c.tag == "Devices"), None)
    if devices_el is None:
        raise ValueError(f"{path}: no <Devices> element")
    devices: list[DeviceModel] = []
    xml: dict[str, str] = {}
    for dev in list(devices_el):
        if dev.tag not in ("Device", "Agent"):
            continue
        name = dev.get("name") or dev.get("id") or ""
        if only is not None and name not in only:
            devices_el.remove(dev)
            continue
        _add_asset_items(dev)
        devices.append(_device(dev))
        dev.tail = None
        xml[devices[-1].uuid] = ET.tostring(dev, encoding="unicode")
    if not devices:
        raise ValueError(f"{path}: no device {'named ' + ', '.join(only) if only else 'at all'}")
    ids = [i.id for d in devices for i in d.items]
    if len(ids) != len(set(ids)):
        raise ValueError(f"{path}: a data item id is used twice")
    return tuple(devices), xml


def _add_asset_items(dev: ET.Element) -> None:
    items_el = next((c for c in dev if c.tag == "DataItems"), None)
    if items_el is None:
        items_el = ET.Element("DataItems")
        dev.insert(0, items_el)
    types = {i.get("type") for i in dev.iter("DataItem")}
    dev_id = dev.get("id") or dev.get("uuid") or "device"
    for kind, suffix in (("ASSET_CHANGED", "asset_chg"), ("ASSET_REMOVED", "asset_rem")):
        if kind not in types:
            ET.SubElement(items_el, "DataItem", {"category": "EVENT", "id": f"{dev_id}_{suffix}", "type": kind,
                                                 "discrete": "true"})


def _device(dev: ET.Element) -> DeviceModel:
    name = dev.get("name") or dev.get("id") or ""
    uuid = dev.get("uuid") or name
    items: list[Item] = []
    stack = [(dev, Component(dev.tag, dev.get("id") or uuid, name))]
    while stack:
        el, comp = stack.pop()
        for child in el:
            if child.tag == "DataItems":
                items.extend(_item(i, uuid, comp) for i in child if i.tag == "DataItem")
            elif child.tag in _COMPONENT_CONTAINERS:
                stack.extend((c, Component(c.tag, c.get("id") or "", c.get("name"))) for c in child)
    return DeviceModel(uuid=uuid, name=name, id=dev.get("id") or uuid, items=tuple(items))


def _item(el: ET.Element, uuid: str, comp: Component) -> Item:
    item_id, category, kind = el.get("id"), el.get("category"), el.get("type")
    if not item_id or category not in ("SAMPLE", "EVENT", "CONDITION") or not kind:
        raise ValueError(f"a DataItem without id, category or type: {el.attrib}")
    return Item(id=item_id, name=el.get("name"), category=category, type=kind, sub_type=el.get("subType"),
                representation=el.get("representation"), device_uuid=uuid, component=comp)
