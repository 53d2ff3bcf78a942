"""Register map: decoding of every type × order against hand-computed words, planning, config errors."""

from __future__ import annotations

import math
import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.config import ConfigFileError, load_gateway_config
from edge.sources.modbus.map import (
    RegisterConfig,
    build_tag,
    decode_registers,
    encode_value,
    plan_blocks,
)

ORDERS = ("ABCD", "CDAB", "BADC", "DCBA")

# value, then the words a device holds for it in ABCD, CDAB, BADC, DCBA (worked out by hand from the bytes).
GOLDEN: dict[str, list[tuple[Any, tuple[list[int], list[int], list[int], list[int]]]]] = {
    "int16": [
        (-2, ([0xFFFE], [0xFFFE], [0xFEFF], [0xFEFF])),
        (0x1234, ([0x1234], [0x1234], [0x3412], [0x3412])),
    ],
    "uint16": [
        (0xFF01, ([0xFF01], [0xFF01], [0x01FF], [0x01FF])),
    ],
    "int32": [
        (0x12345678, ([0x1234, 0x5678], [0x5678, 0x1234], [0x3412, 0x7856], [0x7856, 0x3412])),
        (-2, ([0xFFFF, 0xFFFE], [0xFFFE, 0xFFFF], [0xFFFF, 0xFEFF], [0xFEFF, 0xFFFF])),
    ],
    "uint32": [
        (0xDEADBEEF, ([0xDEAD, 0xBEEF], [0xBEEF, 0xDEAD], [0xADDE, 0xEFBE], [0xEFBE, 0xADDE])),
    ],
    "float32": [
        (3.25, ([0x4050, 0x0000], [0x0000, 0x4050], [0x5040, 0x0000], [0x0000, 0x5040])),
        (-1500.0, ([0xC4BB, 0x8000], [0x8000, 0xC4BB], [0xBBC4, 0x0080], [0x0080, 0xBBC4])),
    ],
    "int64": [
        (
            0x0102030405060708,
            (
                [0x0102, 0x0304, 0x0506, 0x0708],
                [0x0708, 0x0506, 0x0304, 0x0102],
                [0x0201, 0x0403, 0x0605, 0x0807],
                [0x0807, 0x0605, 0x0403, 0x0201],
            ),
        ),
        (-1, ([0xFFFF] * 4, [0xFFFF] * 4, [0xFFFF] * 4, [0xFFFF] * 4)),
    ],
    "uint64": [
        (
            0xFEDCBA9876543210,
            (
                [0xFEDC, 0xBA98, 0x7654, 0x3210],
                [0x3210, 0x7654, 0xBA98, 0xFEDC],
                [0xDCFE, 0x98BA, 0x5476, 0x1032],
                [0x1032, 0x5476, 0x98BA, 0xDCFE],
            ),
        ),
    ],
    "float64": [
        (1.5, ([0x3FF8, 0, 0, 0], [0, 0, 0, 0x3FF8], [0xF83F, 0, 0, 0], [0, 0, 0, 0xF83F])),
        (-2.75, ([0xC006, 0, 0, 0], [0, 0, 0, 0xC006], [0x06C0, 0, 0, 0], [0, 0, 0, 0x06C0])),
    ],
}
CASES = [
    (dtype, value, order, words[i])
    for dtype, rows in GOLDEN.items()
    for value, words in rows
    for i, order in enumerate(ORDERS)
]


def reg(**kw: Any) -> RegisterConfig:
    return RegisterConfig.model_validate({"name": "v", "address": 0, **kw})


@pytest.mark.parametrize(("dtype", "value", "order", "words"), CASES)
def test_every_type_and_order_decodes_the_hand_computed_words(dtype: str, value: Any, order: str, words: list[int]):
    entry = reg(type=dtype, order=order)
    assert entry.width == len(words)
    decoded = decode_registers(entry, words)
    assert decoded == value and type(decoded) is type(value)


@pytest.mark.parametrize(("dtype", "value", "order", "words"), CASES)
def test_encoding_is_the_inverse_of_decoding(dtype: str, value: Any, order: str, words: list[int]):
    assert encode_value(reg(type=dtype, order=order), value) == words


def test_strings_read_first_byte_first_and_stop_at_nul():
    assert decode_registers(reg(type="string", length=4), [0x4142, 0x3132]) == "AB12"
    assert decode_registers(reg(type="string", length=4, order="BADC"), [0x4241, 0x3231]) == "AB12"
    assert decode_registers(reg(type="string", length=6), [0x4142, 0x4300, 0x5858]) == "ABC"
    assert decode_registers(reg(type="string", length=3), [0x4F4B, 0x2000]) == "OK"  # trailing pad removed
    assert reg(type="string", length=5).width == 3


def test_bits_of_a_register_and_coils_decode_as_booleans():
    assert decode_registers(reg(type="bool", bit=3), [0x0008]) is True
    assert decode_registers(reg(type="bool", bit=3), [0xFFF7]) is False
    assert decode_registers(reg(type="bool", bit=15), [0x8000]) is True
    assert decode_registers(reg(table="coil"), [True]) is True


def test_scale_and_offset_turn_raw_counts_into_engineering_units():
    assert decode_registers(reg(type="int16", scale=0.1, offset=-40), [0xFFFE]) == pytest.approx(-40.2)
    assert decode_registers(reg(type="uint16", scale=1.0), [7]) == 7  # still an integer


@pytest.mark.parametrize(("raw", "scale", "offset", "shown"), [
    (229, 0.1, 0.0, "22.9"),  # 229 * 0.1 is 22.900000000000002 in binary floating point
    (6543, 0.01, -40.0, "25.43"),
    (3, 0.1, 0.0, "0.3"),
    (1001, 0.001, 0.5, "1.501"),
    (7, 0.25, 0.0, "1.75"),
])
def test_scaled_integer_registers_read_as_the_decimal_the_factors_give(raw: int, scale: float, offset: float,
                                                                         shown: str) -> None:
    assert repr(decode_registers(reg(type="uint16", scale=scale, offset=offset), [raw])) == shown


def test_float_registers_and_long_factors_are_not_rounded() -> None:
    [word_hi, word_lo] = encode_value(reg(type="float32"), 1.2345678)
    assert decode_registers(reg(type="float32", scale=0.1), [word_hi, word_lo]) == pytest.approx(0.12345678, 1e-7)
    third = decode_registers(reg(type="uint16", scale=1 / 3), [1])
    assert third == 1 / 3


@given(st.sampled_from(ORDERS), st.sampled_from(["int16", "uint16", "int32", "uint32", "int64", "uint64"]), st.data())
def test_integers_round_trip_in_every_order(order: str, dtype: str, data: st.DataObject):
    bits = int(dtype.lstrip("uint")) if dtype.startswith("u") else int(dtype[3:])
    lo, hi = (0, 2**bits - 1) if dtype.startswith("u") else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    value = data.draw(st.integers(lo, hi))
    entry = reg(type=dtype, order=order)
    assert decode_registers(entry, encode_value(entry, value)) == value


@given(st.sampled_from(ORDERS), st.floats(width=32, allow_nan=False))
def test_float32_round_trips_in_every_order(order: str, value: float):
    entry = reg(type="float32", order=order)
    assert decode_registers(entry, encode_value(entry, value)) == struct.unpack(">f", struct.pack(">f", value))[0]


def test_nan_decodes_to_nan_so_the_source_can_leave_it_out():
    assert math.isnan(decode_registers(reg(type="float32"), [0x7FC0, 0x0000]))  # type: ignore[arg-type]


# --- planning --------------------------------------------------------------------------


def tags(*entries: dict[str, Any]):  # type: ignore[no-untyped-def]
    return [build_tag(RegisterConfig.model_validate({"name": f"t{i}", **e})) for i, e in enumerate(entries)]


def spans(blocks) -> list[tuple[str, int, int]]:  # type: ignore[no-untyped-def]
    return [(b.table, b.address, b.count) for b in blocks]


def test_adjacent_registers_become_one_read():
    many = tags(*({"address": a} for a in range(100)))
    assert spans(plan_blocks(many, 125, 2000, 0)) == [("holding", 0, 100)]


def test_reads_are_split_at_the_device_limit_without_cutting_a_value():
    entries = [{"address": a} for a in range(124)] + [{"address": 124, "type": "float32"}]
    assert spans(plan_blocks(tags(*entries), 125, 2000, 0)) == [("holding", 0, 124), ("holding", 124, 2)]
    assert spans(plan_blocks(tags(*({"address": a} for a in range(30))), 10, 2000, 0)) == [
        ("holding", 0, 10), ("holding", 10, 10), ("holding", 20, 10)
    ]


def test_gaps_are_bridged_up_to_max_gap():
    pair = tags({"address": 0}, {"address": 15, "type": "int32"})
    assert spans(plan_blocks(pair, 125, 2000, 10)) == [("holding", 0, 1), ("holding", 15, 2)]
    assert spans(plan_blocks(pair, 125, 2000, 14)) == [("holding", 0, 17)]


def test_tables_are_read_separately_and_bits_bridge_wider_gaps():
    mixed = tags(
        {"address": 5, "table": "input"}, {"address": 5}, {"table": "coil", "address": 0},
        {"table": "coil", "address": 100}, {"table": "discrete_input", "address": 3},
    )
    assert spans(plan_blocks(mixed, 125, 2000, 10)) == [
        ("coil", 0, 101), ("discrete_input", 3, 1), ("holding", 5, 1), ("input", 5, 1)
    ]


def test_bits_of_one_status_word_share_its_read():
    status = tags({"address": 7, "type": "bool", "bit": 0}, {"address": 7, "type": "bool", "bit": 9},
                  {"address": 7, "type": "uint16"})
    assert spans(plan_blocks(status, 125, 2000, 0)) == [("holding", 7, 1)]


# --- config errors -----------------------------------------------------------------------


def load_with(tmp_path: Path, register_toml: str, source_extra: str = "") -> list[str]:
    path = tmp_path / "edge.toml"
    path.write_text(
        '[edge]\nid = "edge-1"\n\n[[sources]]\nkind = "modbus"\nname = "press-3"\n'
        f'{source_extra}\n[sources.tcp]\nhost = "10.0.0.7"\n\n{register_toml}\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigFileError) as info:
        load_gateway_config(path)
    return info.value.lines


def one(name: str = "a", **kw: Any) -> str:
    body = "".join(f"{k} = {v!r}\n".replace("'", '"') for k, v in {"name": name, **kw}.items())
    return "[[sources.registers]]\n" + body


@pytest.mark.parametrize(
    ("registers", "expected"),
    [
        (one(address=70000), "sources[0].registers[0].address: Input should be less than or equal to 65535"),
        (one(address=-1), "sources[0].registers[0].address: Input should be greater than or equal to 0"),
        (one(address=1, type="int17"), "sources[0].registers[0].type: Input should be 'bool'"),
        (one(address=1, type="string"), "sources[0].registers[0]: type 'string' needs length"),
        (one(address=1, type="string", length=300), "sources[0].registers[0].length: Input should be less than"),
        (one(address=65534, type="float64"), "float64 at address 65534 needs 4 registers and runs past 65535"),
        (one(address=1, table="coil", type="float32"), "a coil holds one bit: type must be 'bool'"),
        (one(address=1, type="bool"), "type 'bool' in holding registers needs bit = 0..15"),
        (one(address=1, type="float32", order="ABDC"), "sources[0].registers[0].order: Input should be 'ABCD'"),
        (one(address=1, table="holdings"), "sources[0].registers[0].table: Input should be 'coil'"),
        (one(adress=1), "sources[0].registers[0].adress: unknown key; did you mean 'address'?"),
        (one("a", address=0, type="float32") + one("b", address=1, type="int32"),
         "sources[0].registers: registers[1] 'b' (holding 1..2) overlaps registers[0] 'a' (holding 0..1)"),
        (one("a", address=0) + one("a", address=5), "registers[1]: name 'a' is already used by registers[0]"),
        (one("a", address=0, type="bool", bit=2) + one("b", address=0, type="bool", bit=2),
         "registers[1] 'b' reads the same bit as registers[0]"),
        (one("bad name!", address=0), "sources[0].registers[0].name: String should match pattern"),
        (one(address=1, type="bool", bit=1, deadband=0.5), "a 'bool' takes deadband = 0"),
    ],
)
def test_malformed_register_maps_name_the_key_path(tmp_path: Path, registers: str, expected: str):
    lines = load_with(tmp_path, registers)
    assert any(expected in line for line in lines), lines


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("max_registers_per_read = 200", "sources[0].max_registers_per_read: Input should be less than or equal"),
        ("max_registers_per_read = 8", "needs 10 registers but one read may fetch at most 8"),
        ('poll_interval = 5', "sources[0].poll_interval: give the unit, e.g. '5s'"),
        ("unit_id = 300", "sources[0].unit_id: Input should be less than or equal to 255"),
    ],
)
def test_malformed_source_settings_name_the_key_path(tmp_path: Path, extra: str, expected: str):
    lines = load_with(tmp_path, one(address=1, type="string", length=20), extra)
    assert any(expected in line for line in lines), lines


def test_a_source_needs_exactly_one_transport(tmp_path: Path):
    path = tmp_path / "edge.toml"
    path.write_text(
        '[edge]\nid = "e"\n[[sources]]\nkind = "modbus"\nname = "p"\n' + one(address=1), encoding="utf-8"
    )
    with pytest.raises(ConfigFileError) as info:
        load_gateway_config(path)
    assert any("sources[0]: give exactly one of [tcp]" in line for line in info.value.lines), info.value.lines


def test_the_sample_config_loads_and_plans_few_reads():
    from edge.sources.modbus import ModbusSourceConfig, check_serial_ports
    from edge.sources.modbus.source import make_link, make_poller

    config = load_gateway_config(Path(__file__).parents[3] / "docs" / "examples" / "modbus.toml")
    sources = [s for s in config.sources if isinstance(s, ModbusSourceConfig)]
    assert [s.name for s in sources] == ["press-3", "meter-1", "meter-2"]
    check_serial_ports(sources)
    press = sources[0]
    poller = make_poller(press, make_link(press))
    assert [b.describe().split(" (")[0] for b in poller.blocks] == [
        "coil 0", "discrete input 4", "holding 100..120", "input 0..1"
    ]
