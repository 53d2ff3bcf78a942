"""How an OPC-UA DataValue becomes a sensor value: one decoding for the source and the probe.

What a frame carries, and what is refused (per value, with a reason; the node is
reported in the source's health and the other nodes keep flowing):

- Boolean -> bool; SByte..UInt64 (and enumerations) -> int; Float/Double -> float.
- Float/Double NaN or +-infinity -> refused ("not a finite number").
- String / LocalizedText (its text) -> str when at most 256 characters, else refused.
- DateTime -> float seconds since the epoch (converted); Guid -> its text; StatusCode -> int.
- Arrays, matrices, ByteString, XmlElement, NodeId, QualifiedName, ExtensionObjects
  (structures) and null values -> refused: a frame carries one scalar per sensor.
- A status code that is not Good -> no value; the node is reported with the status name.

Timestamp of a value (used for subscription frames): its SourceTimestamp (when
the PLC took it) when present and within 2000..2100, else its ServerTimestamp,
else none (the caller then uses the time of receipt).
"""

from __future__ import annotations

import math
import uuid
from datetime import datetime
from typing import Any

from asyncua import ua

from shared.frame import MAX_STRING_VALUE, TS_MAX, TS_MIN

__all__ = ["decode_data_value", "decode_variant", "describe_status", "pick_timestamp"]

SensorScalar = bool | int | float | str

_SEVERITY_MASK = 0xC0000000  # Good with info bits still counts as Good


def describe_status(status: ua.StatusCode | None) -> str:
    """'BadNodeIdUnknown (The node id refers to a node that does not exist in the server address space.)'."""
    if status is None or status.value == 0:
        return "Good"
    name = getattr(status, "name", None) or f"0x{status.value:08X}"
    doc = getattr(status, "doc", "") or ""
    return f"{name} ({doc.rstrip('.')})" if doc else str(name)


def decode_variant(variant: ua.Variant | None) -> tuple[SensorScalar | None, str | None]:
    """``(value, None)`` for a value a frame can carry, ``(None, reason)`` otherwise."""
    if variant is None:
        return None, "the server sent no value (null)"
    value = variant.Value
    kind = type(value)
    # the common cases first, with exact type checks: this runs for every notification
    if kind is float:
        if value - value == 0.0:  # false for NaN and +-inf
            return value, None
        return None, f"not a finite number ({value!r})"
    if kind is int or kind is bool:
        return value, None
    if variant.is_array or kind is list:
        size = len(value) if isinstance(value, list) else "?"
        return None, f"an array of {size} values; a frame carries one value per sensor"
    if kind is str:
        if len(value) <= MAX_STRING_VALUE:
            return value, None
        return None, f"text of {len(value)} characters; at most {MAX_STRING_VALUE} are carried"
    return _decode_other(variant, value)


def _decode_other(variant: ua.Variant, value: Any) -> tuple[SensorScalar | None, str | None]:
    vtype = getattr(variant.VariantType, "name", str(variant.VariantType))
    if value is None:
        return None, "the server sent no value (null)"
    if isinstance(value, bool | int):  # IntEnum members of enumerations
        return int(value), None
    if isinstance(value, float):
        return decode_variant(ua.Variant(float(value), ua.VariantType.Double))
    if isinstance(value, ua.LocalizedText):
        return decode_variant(ua.Variant(value.Text or "", ua.VariantType.String))
    if isinstance(value, datetime):
        ts = value.timestamp()
        return (ts, None) if math.isfinite(ts) else (None, "a date that cannot be converted")
    if isinstance(value, uuid.UUID):
        return str(value), None
    if isinstance(value, ua.StatusCode):
        return int(value.value), None
    if isinstance(value, bytes):
        return None, f"binary data ({vtype}, {len(value)} bytes); only numbers, booleans and short texts are carried"
    if isinstance(value, ua.ExtensionObject) or vtype == "ExtensionObject":
        return None, f"a structure ({type(value).__name__}); read its fields as separate nodes"
    return None, f"a value of type {vtype}; only numbers, booleans and short texts are carried"


def _epoch(moment: datetime | None) -> float | None:
    if moment is None:
        return None
    ts = moment.timestamp()
    return ts if TS_MIN <= ts < TS_MAX else None


def pick_timestamp(dv: ua.DataValue) -> float | None:
    """SourceTimestamp when usable, else ServerTimestamp, else None."""
    ts = _epoch(dv.SourceTimestamp)
    return ts if ts is not None else _epoch(dv.ServerTimestamp)


def decode_data_value(dv: ua.DataValue) -> tuple[SensorScalar | None, str | None, float | None]:
    """``(value, problem, timestamp)``: exactly one of value and problem is not None."""
    status = dv.StatusCode
    if status is not None and status.value & _SEVERITY_MASK:  # Uncertain or Bad
        return None, f"the server reports {describe_status(status)}", None
    value, problem = decode_variant(dv.Value)
    if problem is not None:
        return None, problem, None
    return value, None, pick_timestamp(dv)
