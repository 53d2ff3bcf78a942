"""MTConnect documents (probe, current/sample, assets, errors) read into plain data, without I/O.

Namespaces of MTConnect 1.x and 2.x are accepted (``urn:mtconnect.org:MTConnectStreams:1.3`` ...
``:2.5``): elements are matched on their local names and the root's namespace family is checked. A
document is parsed with defusedxml (no DTD, no entities, no external references) after a size check,
so a hostile agent or a man in the middle gets a ``ProtocolError``, never a blown-up process.

Values: ``UNAVAILABLE`` is ``None``; a SAMPLE that reads as a finite number is a float; everything else
(vectors like ``"1.0 0 2.5"``, time series, EVENTs, data sets rendered ``"k=v k2=v2"``) is text. A
CONDITION observation's value is its level (``"FAULT"``), ``None`` when UNAVAILABLE, and its details are
in ``Observation.condition``.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, cast

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import DefusedXMLParser

from shared.errors import TwinedgeError

__all__ = [
    "MAX_DOCUMENT_BYTES",
    "MAX_PROBE_BYTES",
    "AgentErrors",
    "Asset",
    "Condition",
    "DataItem",
    "DeviceModel",
    "Header",
    "Observation",
    "Probe",
    "ProtocolError",
    "Streams",
    "parse_assets",
    "parse_probe",
    "parse_streams",
]

MAX_DOCUMENT_BYTES = 32 * 1024 * 1024  # a /sample of thousands of observations is a few MB
# A device model of 20,000 data items (the most the edge reads) is a few MB; parsed as a tree, a document takes
# ten to fifteen times its size in memory, so a hostile /probe is refused before that.
MAX_PROBE_BYTES = 8 * 1024 * 1024
MAX_ATTRIBUTE = 4096  # ids, names, codes: longer is not an agent talking
MAX_DEPTH = 64  # nesting of an asset (serialized recursively) or a device's components
# A parsed element costs about 100 bytes of memory for 4 bytes of '<a/>': the byte limit alone would let a
# hostile document take gigabytes (at this bound: about 200 MB). A /sample of the source's largest count (100,000
# observations) has a few hundred thousand elements, data sets included.
MAX_ELEMENTS = 2_000_000
MAX_NESTING = 10_000
_MAX_INT = 2**64

Category = Literal["SAMPLE", "EVENT", "CONDITION"]
Level = Literal["NORMAL", "WARNING", "FAULT", "UNAVAILABLE"]
_CATEGORIES = ("SAMPLE", "EVENT", "CONDITION")
_LEVELS = {"Normal": "NORMAL", "Warning": "WARNING", "Fault": "FAULT", "Unavailable": "UNAVAILABLE"}
_NS = re.compile(r"urn:mtconnect\.org:MTConnect(Devices|Streams|Assets|Error):([12])\.(\d{1,2})")
_COMPONENT_CONTAINERS = {"Components", "Compositions"}


class ProtocolError(TwinedgeError):
    """A document that is not MTConnect, malformed, hostile or too large; the message says which."""


@dataclass(frozen=True)
class DataItem:
    id: str
    name: str | None
    category: Category
    type: str
    sub_type: str | None
    units: str | None
    native_units: str | None
    device_uuid: str
    device_name: str
    component: str  # the component path for readers, e.g. "Controller/Path"; "Device" for the device's own


@dataclass(frozen=True)
class DeviceModel:
    uuid: str
    name: str
    items: tuple[DataItem, ...]


@dataclass(frozen=True)
class Header:
    instance_id: int
    version: str | None
    buffer_size: int | None
    first_sequence: int | None
    last_sequence: int | None
    next_sequence: int | None
    asset_buffer_size: int | None
    asset_count: int | None


@dataclass(frozen=True)
class Probe:
    header: Header
    devices: tuple[DeviceModel, ...]


@dataclass(frozen=True)
class Condition:
    level: Level
    native_code: str | None
    native_severity: str | None
    qualifier: str | None
    message: str | None


@dataclass(frozen=True)
class Observation:
    item_id: str
    sequence: int
    timestamp: float  # epoch seconds
    value: float | str | None  # None = UNAVAILABLE
    category: str
    element: str  # the XML element name: "Execution", "AssetChanged", "Fault", ...
    device_uuid: str
    condition: Condition | None  # set for CONDITION observations


@dataclass(frozen=True)
class Streams:
    header: Header
    observations: tuple[Observation, ...]  # by sequence


@dataclass(frozen=True)
class AgentErrors:
    header: Header | None
    errors: tuple[tuple[str, str], ...]  # (errorCode, text), e.g. ("OUT_OF_RANGE", "'from' must be ...")


@dataclass(frozen=True)
class Asset:
    asset_type: str
    asset_id: str
    device_uuid: str | None
    timestamp: str
    removed: bool
    xml: str  # the asset element, namespaces removed


# --- document level ---------------------------------------------------------------------------------------


def _local(tag: object) -> str:
    if not isinstance(tag, str):  # comments and processing instructions
        return ""
    return tag.rpartition("}")[2]


def _root(doc: bytes, expected: str) -> tuple[ET.Element, str]:
    """Parse ``doc`` safely; return the root and its kind (``expected`` or ``Error``)."""
    if not isinstance(doc, bytes | bytearray | memoryview):
        raise ProtocolError(f"an MTConnect document must be bytes (got {type(doc).__name__})")
    if len(doc) > MAX_DOCUMENT_BYTES:
        raise ProtocolError(f"the MTConnect document is {len(doc):,} bytes; at most {MAX_DOCUMENT_BYTES:,} are read")
    try:
        parser = DefusedXMLParser(target=_BoundedBuilder(), forbid_dtd=True)
        parser.feed(bytes(doc))
        root = parser.close()
    except DefusedXmlException as exc:
        raise ProtocolError(f"the MTConnect document was refused: it declares a DTD or entities ({exc})") from None
    except ET.ParseError as exc:
        raise ProtocolError(f"the MTConnect document is not well-formed XML: {exc}") from None
    except (ValueError, RecursionError, MemoryError) as exc:  # expat on pathological input
        raise ProtocolError(f"the MTConnect document could not be read: {type(exc).__name__}") from None
    tag = root.tag if isinstance(root.tag, str) else ""
    ns, _, name = tag[1:].partition("}") if tag.startswith("{") else ("", "", tag)
    match = _NS.fullmatch(ns)
    kind = name.removeprefix("MTConnect")
    if match is None:
        got = f"namespace {ns!r}" if ns else "no namespace"
        raise ProtocolError(f"not an MTConnect document: root <{_clip(name)}> has {_clip(got)} "
                            "(expected urn:mtconnect.org:MTConnect...:1.x or 2.x)")
    if not name.startswith("MTConnect") or kind not in (expected, "Error") or match.group(1) != kind:
        raise ProtocolError(f"expected an MTConnect{expected} document, got <{_clip(name)}> ({_clip(ns)})")
    return root, kind


class _BoundedBuilder(ET.TreeBuilder):
    """Builds the tree and refuses more than MAX_ELEMENTS elements or a nesting deeper than MAX_NESTING."""

    def __init__(self) -> None:
        super().__init__()
        self._depth = 0
        self._count = 0

    def start(self, tag: str, attrs: dict[str, str]) -> ET.Element:
        self._depth += 1
        self._count += 1
        if self._count > MAX_ELEMENTS:
            raise ProtocolError(f"the MTConnect document has more than {MAX_ELEMENTS:,} elements")
        if self._depth > MAX_NESTING:
            raise ProtocolError(f"the MTConnect document nests elements more than {MAX_NESTING:,} deep")
        return super().start(tag, attrs)

    def end(self, tag: str) -> ET.Element:
        self._depth -= 1
        return super().end(tag)


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def _attr(el: ET.Element, name: str) -> str | None:
    value = el.get(name)
    if value is not None and len(value) > MAX_ATTRIBUTE:
        raise ProtocolError(f"<{_local(el.tag)}> attribute {name} is {len(value):,} characters long "
                            f"(at most {MAX_ATTRIBUTE:,})")
    return value


def _required(el: ET.Element, name: str) -> str:
    value = _attr(el, name)
    if not value:
        raise ProtocolError(f"<{_local(el.tag)}> has no {name} attribute")
    return value


def _int(el: ET.Element, name: str, *, required: bool = False) -> int | None:
    text = _attr(el, name)
    if text is None or (text == "" and not required):
        if required:
            raise ProtocolError(f"<{_local(el.tag)}> has no {name} attribute")
        return None
    try:
        value = int(text)
    except ValueError:
        raise ProtocolError(f"<{_local(el.tag)}> {name} must be a whole number (got {_clip(text)!r})") from None
    if not 0 <= value < _MAX_INT:
        raise ProtocolError(f"<{_local(el.tag)}> {name} is out of range (got {_clip(text)})")
    return value


def _child(el: ET.Element, name: str) -> ET.Element | None:
    for child in el:
        if _local(child.tag) == name:
            return child
    return None


def _header(root: ET.Element) -> Header:
    el = _child(root, "Header")
    if el is None:
        raise ProtocolError(f"<{_local(root.tag)}> has no Header")
    instance = _int(el, "instanceId", required=True)
    assert instance is not None
    return Header(
        instance_id=instance, version=_attr(el, "version"), buffer_size=_int(el, "bufferSize"),
        first_sequence=_int(el, "firstSequence"), last_sequence=_int(el, "lastSequence"),
        next_sequence=_int(el, "nextSequence"), asset_buffer_size=_int(el, "assetBufferSize"),
        asset_count=_int(el, "assetCount"),
    )


def _errors(root: ET.Element) -> AgentErrors:
    """Both forms: ``<Errors><Error errorCode="X">text</Error>`` (1.x to 2.5, also without ``<Errors>``
    in 1.1) and ``<Errors><OutOfRange><ErrorCode>OUT_OF_RANGE</ErrorCode><ErrorMessage>`` (2.6+)."""
    try:  # the errors matter more than a header an agent filled badly
        header: Header | None = _header(root)
    except ProtocolError:
        header = None
    found: list[tuple[str, str]] = []
    containers = [c for c in root if _local(c.tag) == "Errors"] or [root]
    for container in containers:
        for el in container:
            name = _local(el.tag)
            if name in ("", "Header"):
                continue
            if name == "Error":
                code = _attr(el, "errorCode") or "UNKNOWN"
                text = (el.text or "").strip()
            else:
                code_el, msg_el = _child(el, "ErrorCode"), _child(el, "ErrorMessage")
                code = (code_el.text or "").strip() if code_el is not None else ""
                code = code or _attr(el, "errorCode") or re.sub(r"(?<!^)(?=[A-Z])", "_", name).upper()
                text = (msg_el.text or "").strip() if msg_el is not None else (el.text or "").strip()
            found.append((_clip(code, MAX_ATTRIBUTE), text))
    if not found:
        raise ProtocolError("the agent answered with an MTConnectError document that lists no error")
    return AgentErrors(header=header, errors=tuple(found))


# --- probe ------------------------------------------------------------------------------------------------


def parse_probe(doc: bytes) -> Probe | AgentErrors:
    """Read a ``/probe`` answer: the devices and their data items (the registry)."""
    if len(doc) > MAX_PROBE_BYTES:
        raise ProtocolError(f"the device model (/probe) is {len(doc):,} bytes; at most {MAX_PROBE_BYTES:,} are read")
    root, kind = _root(doc, "Devices")
    if kind == "Error":
        return _errors(root)
    header = _header(root)
    devices_el = _child(root, "Devices")
    if devices_el is None:
        raise ProtocolError("the MTConnectDevices document has no <Devices>")
    devices: list[DeviceModel] = []
    seen: set[str] = set()
    for dev in devices_el:
        if _local(dev.tag) not in ("Device", "Agent"):
            continue
        model = _device(dev)
        for item in model.items:
            if item.id in seen:
                raise ProtocolError(f"data item id {item.id!r} appears twice in the device model")
            seen.add(item.id)
        devices.append(model)
    return Probe(header=header, devices=tuple(devices))


def _device(dev: ET.Element) -> DeviceModel:
    name = _attr(dev, "name") or _attr(dev, "id") or ""
    uuid = _attr(dev, "uuid") or name
    if not uuid:
        raise ProtocolError("a <Device> has neither uuid nor name")
    items: list[DataItem] = []
    # Iterative walk: components nest arbitrarily deep in a hostile document.
    stack: list[tuple[ET.Element, str, int]] = [(dev, "", 0)]
    while stack:
        el, path, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ProtocolError(f"device {name!r} nests components more than {MAX_DEPTH} deep")
        for child in el:
            local = _local(child.tag)
            if local == "DataItems":
                items.extend(_item(i, uuid, name, path or "Device") for i in child if _local(i.tag) == "DataItem")
            elif local in _COMPONENT_CONTAINERS:
                for comp in reversed(child):
                    sub = _local(comp.tag)
                    if sub:
                        stack.append((comp, f"{path}/{sub}" if path else sub, depth + 1))
    return DeviceModel(uuid=uuid, name=name or uuid, items=tuple(items))


def _item(el: ET.Element, uuid: str, device_name: str, component: str) -> DataItem:
    category = _required(el, "category")
    if category not in _CATEGORIES:
        raise ProtocolError(f"data item {_attr(el, 'id')!r} has category {_clip(category)!r} "
                            "(expected SAMPLE, EVENT or CONDITION)")
    return DataItem(
        id=_required(el, "id"), name=_attr(el, "name"), category=cast(Category, category),
        type=_required(el, "type"), sub_type=_attr(el, "subType"), units=_attr(el, "units"),
        native_units=_attr(el, "nativeUnits"), device_uuid=uuid, device_name=device_name or uuid,
        component=component,
    )


# --- streams ----------------------------------------------------------------------------------------------


def parse_streams(doc: bytes) -> Streams | AgentErrors:
    """Read a ``/current`` or ``/sample`` answer (or one part of a multipart stream)."""
    root, kind = _root(doc, "Streams")
    if kind == "Error":
        return _errors(root)
    header = _header(root)
    observations: list[Observation] = []
    streams = _child(root, "Streams")
    for dev in streams if streams is not None else ():
        if _local(dev.tag) != "DeviceStream":
            continue
        uuid = _attr(dev, "uuid") or _attr(dev, "name") or ""
        for comp in dev:
            if _local(comp.tag) != "ComponentStream":
                continue
            for group in comp:
                category = {"Samples": "SAMPLE", "Events": "EVENT", "Condition": "CONDITION"}.get(_local(group.tag))
                if category is None:
                    continue
                observations.extend(_observation(o, category, uuid) for o in group if _local(o.tag))
    observations.sort(key=lambda o: o.sequence)
    return Streams(header=header, observations=tuple(observations))


def _timestamp(el: ET.Element) -> float:
    text = _required(el, "timestamp")
    try:
        when = datetime.fromisoformat(text[:26] + "Z" if len(text) > 27 and text.endswith("Z") else text)
    except ValueError:
        raise ProtocolError(f"<{_local(el.tag)}> timestamp is not a date and time (got {_clip(text)!r})") from None
    return (when if when.tzinfo is not None else when.replace(tzinfo=UTC)).timestamp()  # MTConnect times are UTC


def _observation(el: ET.Element, category: str, uuid: str) -> Observation:
    element = _local(el.tag)
    item_id = _required(el, "dataItemId")
    sequence = _int(el, "sequence", required=True)
    assert sequence is not None
    condition: Condition | None = None
    value: float | str | None
    if category == "CONDITION":
        level = _LEVELS.get(element)
        if level is None:
            raise ProtocolError(f"condition {item_id!r} has an unknown level <{_clip(element)}>")
        text = (el.text or "").strip()
        condition = Condition(
            level=cast(Level, level), native_code=_attr(el, "nativeCode"),
            native_severity=_attr(el, "nativeSeverity"), qualifier=_attr(el, "qualifier"), message=text or None,
        )
        value = None if level == "UNAVAILABLE" else level
    else:
        value = _value(el, category)
    return Observation(item_id=item_id, sequence=sequence, timestamp=_timestamp(el), value=value,
                       category=category, element=element, device_uuid=uuid, condition=condition)


def _value(el: ET.Element, category: str) -> float | str | None:
    entries = [e for e in el if _local(e.tag) == "Entry"]
    if entries:  # DATA_SET / TABLE representation
        return " ".join(_entry(e) for e in entries)
    text = (el.text or "").strip()
    if text == "UNAVAILABLE":
        return None
    if category == "SAMPLE":
        try:
            number = float(text)
        except ValueError:
            return text  # a vector, a time series
        return number if math.isfinite(number) else text
    return text


def _entry(el: ET.Element) -> str:
    key = _attr(el, "key") or ""
    cells = [c for c in el if _local(c.tag) == "Cell"]
    if cells:
        return f"{key}={{" + " ".join(f"{_attr(c, 'key') or ''}={(c.text or '').strip()}" for c in cells) + "}"
    if _attr(el, "removed") == "true":
        return key
    return f"{key}={(el.text or '').strip()}"


# --- assets -----------------------------------------------------------------------------------------------


def parse_assets(doc: bytes) -> tuple[Asset, ...] | AgentErrors:
    """Read an ``/assets`` or ``/asset/<id>`` answer."""
    root, kind = _root(doc, "Assets")
    if kind == "Error":
        return _errors(root)
    _header(root)
    container = _child(root, "Assets")
    out: list[Asset] = []
    for el in container if container is not None else ():
        asset_type = _local(el.tag)
        if not asset_type:
            continue
        out.append(Asset(
            asset_type=asset_type, asset_id=_required(el, "assetId"), device_uuid=_attr(el, "deviceUuid"),
            timestamp=_attr(el, "timestamp") or "", removed=_attr(el, "removed") == "true", xml=_asset_xml(el),
        ))
    return tuple(out)


def _asset_xml(el: ET.Element) -> str:
    """The asset element as text with plain (local) names; refused when nested deeper than MAX_DEPTH
    (serialization recurses)."""
    copy = ET.Element(_local(el.tag), dict(el.attrib))
    stack: list[tuple[ET.Element, ET.Element, int]] = [(el, copy, 0)]
    while stack:
        src, dst, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ProtocolError(f"asset {el.get('assetId')!r} nests elements more than {MAX_DEPTH} deep")
        dst.text, dst.tail = src.text, src.tail
        for child in src:
            name = _local(child.tag)
            if not name:
                continue
            sub = ET.SubElement(dst, name, {_local(k): v for k, v in child.attrib.items()})
            stack.append((child, sub, depth + 1))
    copy.attrib = {_local(k): v for k, v in copy.attrib.items() if not k.startswith("{")}
    copy.tail = None
    return ET.tostring(copy, encoding="unicode")
