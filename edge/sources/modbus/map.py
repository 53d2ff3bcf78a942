"""Modbus register maps: the declarative entry, decoding by type and byte/word order, and the block planner.

Byte and word order name where the bytes of a value sit in the registers, with
``A`` the most significant byte:

======  ===============================  ==========================================
order   32-bit value 0xAABBCCDD arrives   meaning
======  ===============================  ==========================================
ABCD    [0xAABB, 0xCCDD]                  big-endian bytes and words (Modbus default)
CDAB    [0xCCDD, 0xAABB]                  words swapped ("little-endian word order")
BADC    [0xBBAA, 0xDDCC]                  bytes swapped inside each register
DCBA    [0xDDCC, 0xBBAA]                  fully little-endian
======  ===============================  ==========================================

For 64-bit types the same rule applies to four registers (CDAB reverses all
four words). For 16-bit types only the byte swap matters (BADC and DCBA swap
the two bytes). Strings take ABCD or BADC: characters are read first byte
first, and BADC swaps the two characters of each register.

A value is ``raw * scale + offset``; integers stay integers while scale is 1
and offset is 0. For integer registers with decimal factors (scale 0.1, offset
-40.5) the result is rounded to the factors' decimal places, so a raw 229 at
scale 0.1 reads 22.9, not 22.900000000000002.
"""

from __future__ import annotations

import decimal
import math
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

from pydantic import Field, model_validator

from shared.configbase import StrictModel
from shared.frame import KEY_PATTERN, MAX_STRING_VALUE

__all__ = [
    "BIT_TABLES",
    "MAX_BITS_PER_READ",
    "MAX_REGISTERS_PER_READ",
    "Block",
    "DataType",
    "Order",
    "RegisterConfig",
    "Table",
    "Tag",
    "Value",
    "build_tag",
    "check_register_map",
    "decode_registers",
    "encode_value",
    "plan_blocks",
    "raw_decoder",
]

Table = Literal["coil", "discrete_input", "holding", "input"]
DataType = Literal[
    "bool", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64", "string"
]
Order = Literal["ABCD", "CDAB", "BADC", "DCBA"]
Value = bool | int | float | str

BIT_TABLES: frozenset[str] = frozenset({"coil", "discrete_input"})
MAX_REGISTERS_PER_READ = 125  # Modbus limit for function codes 3 and 4
MAX_BITS_PER_READ = 2000  # Modbus limit for function codes 1 and 2

_WIDTH = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2, "int64": 4, "uint64": 4, "float64": 4}
_STRUCT_CODE = {
    "int16": "h", "uint16": "H", "int32": "i", "uint32": "I",
    "int64": "q", "uint64": "Q", "float32": "f", "float64": "d",
}
_NUMERIC_LIMIT = 1e15
_INTEGER_TYPES = frozenset({"int16", "uint16", "int32", "uint32", "int64", "uint64"})
_MAX_DIGITS = 12  # a factor with more decimals than this is not a short decimal (e.g. 1/3): no rounding


class RegisterConfig(StrictModel):
    """One named value in a device's register map."""

    name: str = Field(pattern=KEY_PATTERN, description="sensor name in the frame")
    table: Table = "holding"
    address: int = Field(ge=0, le=65535, description="PDU address, 0-based (register 40001 is holding 0)")
    type: DataType | None = Field(None, description="default: bool for coils/discrete inputs, else uint16")
    order: Order = "ABCD"
    bit: int | None = Field(None, ge=0, le=15, description="for type bool in a register: bit 0 (LSB) to 15")
    length: int | None = Field(None, ge=1, le=MAX_STRING_VALUE - 6, description="characters of a string")
    scale: float = Field(1.0, ge=-_NUMERIC_LIMIT, le=_NUMERIC_LIMIT)
    offset: float = Field(0.0, ge=-_NUMERIC_LIMIT, le=_NUMERIC_LIMIT)
    deadband: float | None = Field(None, ge=0, le=_NUMERIC_LIMIT, description="report only moves beyond this")
    unit: str | None = Field(None, max_length=32, description="engineering unit, for people")

    @property
    def data_type(self) -> DataType:
        if self.type is not None:
            return self.type
        return "bool" if self.table in BIT_TABLES else "uint16"

    @property
    def width(self) -> int:
        """Registers (or bits) this value occupies."""
        dtype = self.data_type
        if dtype == "bool":
            return 1
        if dtype == "string":
            return ((self.length or 0) + 1) // 2
        return _WIDTH[dtype]

    @property
    def end(self) -> int:
        """Last address used (inclusive)."""
        return self.address + self.width - 1

    @model_validator(mode="after")
    def _consistent(self) -> RegisterConfig:
        dtype = self.data_type
        bits = self.table in BIT_TABLES
        if bits and dtype != "bool":
            raise ValueError(f"a {self.table} holds one bit: type must be 'bool' (got {dtype!r})")
        if dtype == "bool" and not bits and self.bit is None:
            raise ValueError(f"type 'bool' in {self.table} registers needs bit = 0..15 (which bit of the register)")
        if self.bit is not None and (bits or dtype != "bool"):
            raise ValueError("bit is only for type 'bool' in holding or input registers")
        if dtype == "string" and self.length is None:
            raise ValueError("type 'string' needs length = number of characters (two per register)")
        if self.length is not None and dtype != "string":
            raise ValueError(f"length is only for type 'string' (this is {dtype!r})")
        if dtype == "string" and self.order not in ("ABCD", "BADC"):
            raise ValueError(f"a string takes order 'ABCD' or 'BADC' (got {self.order!r})")
        if dtype in ("bool", "string"):
            if self.scale != 1.0 or self.offset != 0.0:
                raise ValueError(f"scale and offset apply to numbers, not to type {dtype!r}")
            if self.deadband:
                raise ValueError(f"a {dtype!r} takes deadband = 0 (report when it changes) or none")
        if self.scale == 0.0:
            raise ValueError("scale 0 would report 0 for every reading; use 1 for no scaling")
        if self.end > 65535:
            raise ValueError(
                f"{dtype} at address {self.address} needs {self.width} registers and runs past 65535"
            )
        return self


_Span = tuple[str, int, int, int | None, int]  # table, first, last, bit, index


def check_register_map(registers: Sequence[RegisterConfig], max_registers: int, max_bits: int) -> None:
    """Refuse maps that cannot be right: duplicate names, overlapping values, values too large to read."""
    names: dict[str, int] = {}
    for i, reg in enumerate(registers):
        if reg.name in names:
            raise ValueError(f"registers[{i}]: name {reg.name!r} is already used by registers[{names[reg.name]}]")
        names[reg.name] = i
        limit = max_bits if reg.table in BIT_TABLES else max_registers
        if reg.width > limit:
            raise ValueError(
                f"registers[{i}] {reg.name!r}: needs {reg.width} registers but one read may fetch at most "
                f"{limit} (max_registers_per_read)"
            )
    # Several bools may look at bits of one register, but two values that share registers are a typo.
    spans: list[_Span] = sorted(
        ((str(reg.table), reg.address, reg.end, reg.bit, i) for i, reg in enumerate(registers)),
        key=lambda s: (s[0], s[1], s[2]),
    )
    for (tab_a, start_a, end_a, bit_a, i), (tab_b, start_b, end_b, bit_b, j) in _neighbours(spans):
        if tab_a != tab_b or start_b > end_a:
            continue
        if bit_a is not None and bit_b is not None:
            if start_a == start_b and bit_a == bit_b:
                raise ValueError(f"registers[{j}] {registers[j].name!r} reads the same bit as registers[{i}]")
            continue
        if bit_a is not None or bit_b is not None:
            continue  # a bit view of a register that a value also reads: allowed (status words)
        raise ValueError(
            f"registers[{j}] {registers[j].name!r} ({tab_b} {start_b}..{end_b}) overlaps registers[{i}] "
            f"{registers[i].name!r} ({tab_a} {start_a}..{end_a}); check the addresses"
        )


def _neighbours(spans: Sequence[_Span]) -> Iterator[tuple[_Span, _Span]]:
    """Every pair that could overlap: each span against the following spans that start before it ends."""
    for k, first in enumerate(spans):
        for second in spans[k + 1:]:
            if second[0] != first[0] or second[1] > first[2]:
                break
            yield first, second


# --- decoding ------------------------------------------------------------------------


def _text(raw: bytes) -> str:
    return raw.split(b"\x00", 1)[0].decode("utf-8", errors="replace").rstrip()


def raw_decoder(reg: RegisterConfig) -> Callable[[Sequence[int], int], Value]:
    """A function ``(words, index) -> raw value`` for this entry's type and order (no scaling)."""
    dtype = reg.data_type
    byteswap = reg.order in ("BADC", "DCBA")
    wordswap = reg.order in ("CDAB", "DCBA")
    if dtype == "bool":
        if reg.bit is None:
            return lambda words, i: bool(words[i])
        mask = 1 << reg.bit
        return lambda words, i: bool(words[i] & mask)
    width = reg.width
    pack = struct.Struct(("<" if byteswap else ">") + f"{width}H").pack
    if dtype == "string":
        return lambda words, i: _text(pack(*words[i:i + width]))
    if dtype == "uint16" and not byteswap:
        return lambda words, i: words[i]
    unpack = struct.Struct(">" + _STRUCT_CODE[dtype]).unpack
    if wordswap and width > 1:
        return lambda words, i: unpack(pack(*reversed(words[i:i + width])))[0]
    return lambda words, i: unpack(pack(*words[i:i + width]))[0]


def decode_registers(reg: RegisterConfig, words: Sequence[int]) -> Value:
    """Decode one value from its own words (or bits), scaled, as the poll loop does. For tests and the probe."""
    return build_tag(reg).value(words, 0)


def encode_value(reg: RegisterConfig, value: Value) -> list[int]:
    """The register words a device would hold for ``value`` (unscaled raw value). The inverse of decoding."""
    dtype = reg.data_type
    if dtype == "bool":
        return [(1 << reg.bit) if value else 0] if reg.bit is not None else [int(bool(value))]
    width = reg.width
    if dtype == "string":
        raw = str(value).encode("utf-8")[: width * 2].ljust(width * 2, b"\x00")
    else:
        raw = struct.pack(">" + _STRUCT_CODE[dtype], value)
    words = list(struct.unpack(("<" if reg.order in ("BADC", "DCBA") else ">") + f"{width}H", raw))
    if reg.order in ("CDAB", "DCBA") and dtype != "string":
        words.reverse()
    return words


# --- planning ------------------------------------------------------------------------


@dataclass(slots=True)
class Tag:
    """A register map entry ready for the poll loop."""

    name: str
    table: str
    address: int
    width: int
    decode: Callable[[Sequence[int], int], Value]
    scale: float
    offset: float
    deadband: float | None
    is_float: bool
    digits: int | None = None  # round scaled integers to this many decimals (None: leave as computed)

    def value(self, words: Sequence[int], index: int) -> Value:
        raw = self.decode(words, index)
        if self.scale != 1.0 or self.offset != 0.0:
            scaled = raw * self.scale + self.offset  # type: ignore[operator]
            return scaled if self.digits is None else round(scaled, self.digits)
        return raw

    @staticmethod
    def finite(value: Value) -> bool:
        return not isinstance(value, float) or math.isfinite(value)


def _decimals(factor: float) -> int:
    """Decimal places of a factor as written (0.1 -> 1, 0.25 -> 2, 10 -> 0)."""
    exponent = decimal.Decimal(repr(factor)).as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else _MAX_DIGITS + 1


def _exact_digits(reg: RegisterConfig) -> int | None:
    """Decimals that an integer register's scaled value has exactly, when the factors are short decimals."""
    if reg.data_type not in _INTEGER_TYPES:
        return None  # a float register's value is as precise as the device made it
    digits = max(_decimals(reg.scale), _decimals(reg.offset))
    return digits if digits <= _MAX_DIGITS else None


def build_tag(reg: RegisterConfig) -> Tag:
    return Tag(
        name=reg.name, table=reg.table, address=reg.address, width=reg.width, decode=raw_decoder(reg),
        scale=reg.scale, offset=reg.offset, deadband=reg.deadband,
        is_float=reg.data_type in ("float32", "float64") or reg.scale != 1.0 or reg.offset != 0.0,
        digits=_exact_digits(reg),
    )


@dataclass(slots=True)
class Block:
    """One read request: a contiguous range of one table and the tags decoded from it."""

    table: str
    address: int
    count: int
    tags: list[Tag] = field(default_factory=list)

    @property
    def end(self) -> int:
        return self.address + self.count - 1

    def describe(self) -> str:
        table = self.table.replace("_", " ")
        where = f"{table} {self.address}" if self.count == 1 else f"{table} {self.address}..{self.end}"
        names = ", ".join(t.name for t in self.tags[:4]) + (", ..." if len(self.tags) > 4 else "")
        return f"{where} ({names})"


def plan_blocks(tags: Sequence[Tag], max_registers: int, max_bits: int, max_gap: int) -> list[Block]:
    """Merge tags into as few reads as the limits allow.

    Tags of one table are taken in address order; a tag joins the current block
    when the unread gap before it is at most ``max_gap`` registers (16 × max_gap
    bits for coils and discrete inputs) and the block stays within the per-read
    limit. Greedy left-to-right merging gives the fewest blocks for these rules.
    """
    blocks: list[Block] = []
    current: Block | None = None
    for tag in sorted(tags, key=lambda t: (t.table, t.address, -t.width)):
        bits = tag.table in BIT_TABLES
        limit = max_bits if bits else max_registers
        gap_limit = max_gap * 16 if bits else max_gap
        tag_end = tag.address + tag.width
        if current is not None and current.table == tag.table:
            block_end = current.address + current.count
            new_count = max(block_end, tag_end) - current.address
            if tag.address - block_end <= gap_limit and new_count <= limit:
                current.count = new_count
                current.tags.append(tag)
                continue
        current = Block(tag.table, tag.address, tag.width, [tag])
        blocks.append(current)
    return blocks
