"""SHDR, the pipe-delimited text an MTConnect adapter sends its agent, read into updates.

    2022-08-08T13:51:34.7167146Z|avail|AVAILABLE|S1speed|1200|p1LPathPos|1039.897 0 269.0133
    2022-08-08T13:51:34.7167146Z|system|FAULT|2041|3|HIGH|SPINDLE OVERLOAD        (CONDITION)
    2022-08-08T13:51:34.7167146Z|msg|1021|Check the coolant level                   (MESSAGE: nativeCode|text)
    2022-08-08T13:51:34.7167146Z|@ASSET@|123456.2201|CuttingTool|--multiline--ABCD  (then XML lines, then the marker)
    2022-08-08T13:51:34.7167146Z|@REMOVE_ASSET@|123456.2201
    2022-08-08T13:51:34.7167146Z|@REMOVE_ALL_ASSETS@|CuttingTool

How many fields a key takes depends on its data item (a condition takes five, a message two, an ALARM
five, a TIME_SERIES three), so the reader asks ``kind_of(key)``. Unknown keys take one value and are
reported, as the reference agent does. Lines starting with ``*`` (adapter commands) are skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

__all__ = ["AssetRemove", "AssetRemoveAll", "AssetUpdate", "ConditionUpdate", "Line", "ValueUpdate", "read_shdr"]

UNAVAILABLE = "UNAVAILABLE"
_FIELDS = {"CONDITION": 5, "MESSAGE": 2, "ALARM": 5, "TIME_SERIES": 3}  # fields after the key


@dataclass(frozen=True)
class ValueUpdate:
    key: str
    value: str | None  # None: UNAVAILABLE
    native_code: str | None = None  # a MESSAGE's code


@dataclass(frozen=True)
class ConditionUpdate:
    key: str
    level: str  # NORMAL, WARNING, FAULT, UNAVAILABLE
    native_code: str
    native_severity: str
    qualifier: str
    message: str


@dataclass(frozen=True)
class AssetUpdate:
    asset_id: str
    asset_type: str
    xml: str


@dataclass(frozen=True)
class AssetRemove:
    asset_id: str


@dataclass(frozen=True)
class AssetRemoveAll:
    asset_type: str


Update = ValueUpdate | ConditionUpdate | AssetUpdate | AssetRemove | AssetRemoveAll


@dataclass(frozen=True)
class Line:
    """One SHDR line: its time as written (epoch seconds) and what it changes."""

    number: int  # 1-based line number in the file, for messages
    timestamp: float
    updates: tuple[Update, ...]
    unknown_keys: tuple[str, ...] = ()

    @property
    def is_asset(self) -> bool:
        return bool(self.updates) and not isinstance(self.updates[0], ValueUpdate | ConditionUpdate)


def parse_time(text: str) -> float:
    """An SHDR timestamp (UTC, up to 7 fractional digits) as epoch seconds."""
    text = text.strip()
    if text.endswith("Z") and len(text) > 27:
        text = text[:26] + "Z"  # fromisoformat reads at most microseconds
    when = datetime.fromisoformat(text)
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def read_shdr(lines: Iterable[str], kind_of: Callable[[str], str | None]) -> Iterator[Line]:
    """Yield the lines of an SHDR recording. ``kind_of(key)`` gives the data item's category, or its type
    for MESSAGE and ALARM, or ``"TIME_SERIES"``; None for an unknown key. Malformed lines raise ValueError
    with the line number."""
    it = iter(enumerate(lines, 1))
    for number, raw in it:
        line = raw.rstrip("\r\n")
        if not line or line.startswith("*"):
            continue
        fields = line.split("|")
        try:
            timestamp = parse_time(fields[0])
        except ValueError:
            raise ValueError(f"SHDR line {number}: {fields[0][:40]!r} is not a timestamp") from None
        if len(fields) < 2:
            raise ValueError(f"SHDR line {number}: a timestamp and nothing else")
        command = fields[1]
        if command == "@ASSET@":
            yield Line(number, timestamp, (_asset(fields, it, number),))
        elif command == "@REMOVE_ASSET@":
            yield Line(number, timestamp, (AssetRemove(_field(fields, 2, number)),))
        elif command == "@REMOVE_ALL_ASSETS@":
            yield Line(number, timestamp, (AssetRemoveAll(_field(fields, 2, number)),))
        else:
            yield _data(number, timestamp, fields[1:], kind_of)


def _field(fields: list[str], index: int, number: int) -> str:
    if len(fields) <= index or not fields[index]:
        raise ValueError(f"SHDR line {number}: field {index + 1} is missing")
    return fields[index]


def _asset(fields: list[str], it: Iterator[tuple[int, str]], number: int) -> AssetUpdate:
    asset_id, asset_type = _field(fields, 2, number), _field(fields, 3, number)
    body = "|".join(fields[4:])
    if body.startswith("--multiline--"):
        marker, parts = body, []
        for _, raw in it:
            text = raw.rstrip("\r\n")
            if text == marker:
                break
            parts.append(text)
        else:
            raise ValueError(f"SHDR line {number}: the multiline asset {asset_id!r} never ends ({marker})")
        body = "\n".join(parts)
    return AssetUpdate(asset_id=asset_id, asset_type=asset_type, xml=body.strip())


def _data(number: int, timestamp: float, fields: list[str], kind_of: Callable[[str], str | None]) -> Line:
    updates: list[Update] = []
    unknown: list[str] = []
    i = 0
    while i < len(fields):
        key = fields[i]
        kind = kind_of(key)
        take = _FIELDS.get(kind or "", 1)
        values = fields[i + 1 : i + 1 + take]
        values += [""] * (take - len(values))
        i += 1 + take
        if kind is None:
            unknown.append(key)
        elif kind == "CONDITION":
            level = values[0].upper() or UNAVAILABLE
            updates.append(ConditionUpdate(key, level, *values[1:5]))
        elif kind == "MESSAGE":
            updates.append(ValueUpdate(key, None if values[1] == UNAVAILABLE else values[1], values[0] or None))
        elif kind == "ALARM":  # code|nativeCode|severity|state|text: the text is the value
            updates.append(ValueUpdate(key, None if values[0] == UNAVAILABLE else values[4], values[1] or None))
        elif kind == "TIME_SERIES":  # count|rate|values
            updates.append(ValueUpdate(key, None if values[2] == UNAVAILABLE else values[2]))
        else:
            updates.append(ValueUpdate(key, None if values[0] == UNAVAILABLE else values[0]))
    return Line(number, timestamp, tuple(updates), tuple(unknown))
