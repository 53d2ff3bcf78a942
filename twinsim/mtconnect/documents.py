"""The XML the test agent answers with: MTConnectDevices, MTConnectStreams, MTConnectAssets and
MTConnectError documents in the namespace of the schema version served (1.3 ... 2.x).

Rendered as text (no tree): a ``/sample`` of a thousand observations is the hot path of the replay
benchmark. Error documents take the 2.6 form (``<OutOfRange><ErrorCode>...``) from version 2.6 on, the
``<Error errorCode="...">`` form before.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape

from twinsim.mtconnect.model import DeviceModel
from twinsim.mtconnect.store import AssetRecord, Record

__all__ = ["Header", "assets_doc", "error_doc", "format_time", "probe_doc", "streams_doc"]

_CATEGORY_GROUP = {"SAMPLE": "Samples", "EVENT": "Events", "CONDITION": "Condition"}
_LEVEL_ELEMENT = {"NORMAL": "Normal", "WARNING": "Warning", "FAULT": "Fault", "UNAVAILABLE": "Unavailable"}


@dataclass(frozen=True)
class Header:
    version: tuple[int, int]
    instance_id: int
    buffer_size: int
    first_sequence: int
    last_sequence: int
    next_sequence: int
    asset_buffer_size: int
    asset_count: int
    sender: str = "twinsim"


def format_time(us: int) -> str:
    """Microseconds since the epoch as MTConnect writes time: ``2022-08-08T13:51:34.716714Z``."""
    seconds, micro = divmod(us, 1_000_000)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{micro:06d}Z"


def _a(value: object) -> str:
    return escape(str(value), quote=True)


def _open(kind: str, h: Header) -> str:
    major, minor = h.version
    ns = f"urn:mtconnect.org:MTConnect{kind}:{major}.{minor}"
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<MTConnect{kind} xmlns:m="{ns}" '
            f'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns="{ns}" xsi:schemaLocation="{ns} '
            f'http://schemas.mtconnect.org/schemas/MTConnect{kind}_{major}.{minor}.xsd">')


def _header(h: Header, *, sequences: bool, assets: bool, now_us: int, buffer: bool = True) -> str:
    major, minor = h.version
    out = (f'<Header creationTime="{format_time(now_us)[:19]}Z" sender="{_a(h.sender)}" '
           f'instanceId="{h.instance_id}" version="{major}.{minor}.0.0"')
    if h.version >= (2, 0):
        out += f' schemaVersion="{major}.{minor}" testIndicator="false"'
    if buffer:
        out += f' bufferSize="{h.buffer_size}"'
    if sequences:
        out += (f' nextSequence="{h.next_sequence}" firstSequence="{h.first_sequence}"'
                f' lastSequence="{h.last_sequence}"')
    if assets:
        out += f' assetBufferSize="{h.asset_buffer_size}" assetCount="{h.asset_count}"'
    return out + "/>"


def probe_doc(h: Header, devices_xml: str, now_us: int) -> str:
    return (_open("Devices", h) + _header(h, sequences=False, assets=True, now_us=now_us) + devices_xml
            + "</MTConnectDevices>\n")


def streams_doc(h: Header, records: Iterable[Record], devices: Sequence[DeviceModel], now_us: int) -> str:
    """A Streams document; no records is a heartbeat. Observations are grouped by device and component,
    in sequence order within a group."""
    groups: dict[str, dict[str, dict[str, list[Record]]]] = {}
    for rec in records:
        comp = groups.setdefault(rec.item.device_uuid, {}).setdefault(rec.item.component.id, {})
        comp.setdefault(rec.item.category, []).append(rec)
    parts = [_open("Streams", h), _header(h, sequences=True, assets=False, now_us=now_us), "<Streams>"]
    for device in devices:
        comps = groups.get(device.uuid)
        if not comps:
            continue
        parts.append(f'<DeviceStream name="{_a(device.name)}" uuid="{_a(device.uuid)}">')
        for by_category in comps.values():
            first = next(iter(by_category.values()))[0].item.component
            name = f' name="{_a(first.name)}"' if first.name else ""
            parts.append(f'<ComponentStream component="{first.element}"{name} componentId="{_a(first.id)}">')
            for category in ("SAMPLE", "EVENT", "CONDITION"):
                recs = by_category.get(category)
                if recs:
                    group = _CATEGORY_GROUP[category]
                    parts.append(f"<{group}>")
                    parts.extend(_observation(r, h.version) for r in recs)
                    parts.append(f"</{group}>")
            parts.append("</ComponentStream>")
        parts.append("</DeviceStream>")
    parts.append("</Streams></MTConnectStreams>\n")
    return "".join(parts)


def _observation(r: Record, version: tuple[int, int]) -> str:
    item = r.item
    attrs = f'dataItemId="{_a(item.id)}" timestamp="{format_time(r.timestamp_us)}"'
    if item.name:
        attrs += f' name="{_a(item.name)}"'
    attrs += f' sequence="{r.sequence}"'
    if item.sub_type:
        attrs += f' subType="{_a(item.sub_type)}"'
    if r.condition is not None:
        level, code, severity, qualifier, message = r.condition
        attrs += f' type="{_a(item.type)}"'
        for key, value in (("nativeCode", code), ("nativeSeverity", severity), ("qualifier", qualifier)):
            if value:
                attrs += f' {key}="{_a(value)}"'
        element = _LEVEL_ELEMENT.get(level, "Unavailable")
        return f"<{element} {attrs}>{escape(message, quote=False)}</{element}>" if message else f"<{element} {attrs}/>"
    element = item.element(version)
    if r.asset_type:
        attrs += f' assetType="{_a(r.asset_type)}"'
    if r.native_code:
        attrs += f' nativeCode="{_a(r.native_code)}"'
    if r.value is None:
        return f"<{element} {attrs}>UNAVAILABLE</{element}>"
    if item.representation == "DATA_SET":
        entries = [e.partition("=") for e in r.value.split()]
        attrs += f' count="{len(entries)}"'
        body = "".join(f'<Entry key="{_a(k)}">{escape(v, quote=False)}</Entry>' if sep
                       else f'<Entry key="{_a(k)}" removed="true"/>' for k, sep, v in entries)
        return f"<{element} {attrs}>{body}</{element}>"
    if item.representation == "TIME_SERIES":
        attrs += f' sampleCount="{len(r.value.split())}"'
    return f"<{element} {attrs}>{escape(r.value, quote=False)}</{element}>"


def assets_doc(h: Header, assets: Iterable[AssetRecord], now_us: int) -> str:
    parts = [_open("Assets", h), _header(h, sequences=False, assets=True, now_us=now_us, buffer=False), "<Assets>"]
    parts.extend(_asset(a) for a in assets)
    parts.append("</Assets></MTConnectAssets>\n")
    return "".join(parts)


def _asset(a: AssetRecord) -> str:
    """The adapter's XML with the agent's attributes (deviceUuid, timestamp, removed) on the root element."""
    xml = a.xml.strip()
    head_end = xml.find(">")
    if not xml.startswith("<") or head_end < 0:
        return ""
    closed = xml[head_end - 1] == "/"
    head = xml[: head_end - 1 if closed else head_end]
    for attr in ("deviceUuid", "timestamp", "removed"):  # the agent's say, not the adapter's
        head = _drop_attr(head, attr)
    extra = f' deviceUuid="{_a(a.device_uuid)}" timestamp="{format_time(a.timestamp_us)}"'
    if a.removed:
        extra += ' removed="true"'
    return head + extra + ("/>" if closed else ">") + xml[head_end + 1 :]


def _drop_attr(head: str, name: str) -> str:
    key = f" {name}="
    at = head.find(key)
    if at < 0:
        return head
    quote = head[at + len(key)]
    end = head.find(quote, at + len(key) + 1)
    return head[:at] + head[end + 1 :] if end > 0 else head


def error_doc(h: Header, errors: Sequence[tuple[str, str]], now_us: int) -> str:
    parts = [_open("Error", h), _header(h, sequences=False, assets=False, now_us=now_us), "<Errors>"]
    for code, text in errors:
        if h.version >= (2, 6):
            element = "".join(p.capitalize() for p in code.split("_"))
            parts.append(f"<{element}><ErrorCode>{code}</ErrorCode><ErrorMessage>{escape(text, quote=False)}"
                         f"</ErrorMessage></{element}>")
        else:
            parts.append(f'<Error errorCode="{code}">{escape(text, quote=False)}</Error>')
    parts.append("</Errors></MTConnectError>\n")
    return "".join(parts)
