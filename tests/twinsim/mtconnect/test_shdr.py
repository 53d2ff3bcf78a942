"""SHDR: the Okuma recording reads completely, every line form is understood, and the re-timing of the
spliced recording keeps the program runs' durations."""

from __future__ import annotations

import pytest

from twinsim.mtconnect.agent import DATA_DIR, _retime
from twinsim.mtconnect.shdr import (
    AssetRemove,
    AssetRemoveAll,
    AssetUpdate,
    ConditionUpdate,
    Line,
    ValueUpdate,
    read_shdr,
)

KINDS = {"system": "CONDITION", "msg": "MESSAGE", "alarm": "ALARM", "ts": "TIME_SERIES", "S1speed": "SAMPLE",
         "execution": "EVENT", "block": "EVENT"}


def _read(text: str) -> list[Line]:
    return list(read_shdr(text.splitlines(), KINDS.get))


def _okuma_kind(key: str) -> str | None:
    if key == "ApplicationInstallDate":
        return None
    return "CONDITION" if key == "system" or key.endswith("_cond") else "EVENT"


def test_the_okuma_recording_reads_every_line() -> None:
    with (DATA_DIR / "okuma.txt").open(encoding="utf-8") as f:
        lines = list(read_shdr(f, _okuma_kind))
    updates = [u for line in lines for u in line.updates]
    assert sum(isinstance(u, AssetUpdate) for u in updates) == 118
    assert sum(isinstance(u, AssetRemove) for u in updates) == 30
    assert sum(isinstance(u, AssetRemoveAll) for u in updates) == 4
    assert sum(isinstance(u, ConditionUpdate) for u in updates) == 40
    assert all(u.level == "NORMAL" for u in updates if isinstance(u, ConditionUpdate))
    first = next(u for u in updates if isinstance(u, AssetUpdate))
    assert first.asset_id == "123456.2201" and first.xml.startswith("<CuttingTool toolId=\"123456\"")
    assert first.xml.endswith("</CuttingTool>")
    assert {k for line in lines for k in line.unknown_keys} == {"ApplicationInstallDate"}


def test_data_conditions_messages_alarms_and_time_series() -> None:
    (line,) = _read("2022-08-08T13:51:34.7167146Z|S1speed|1200.5|execution|ACTIVE|system|FAULT|2041|3|HIGH|"
                    "SPINDLE OVERLOAD|block||msg|1021|Check coolant|alarm|OTHER|77|CRITICAL|ACTIVE|Door open|"
                    "ts|3|100|1 2 3|nope|1|execution|UNAVAILABLE")
    assert line.timestamp == pytest.approx(1659966694.716714, abs=1e-6)
    assert line.updates == (
        ValueUpdate("S1speed", "1200.5"), ValueUpdate("execution", "ACTIVE"),
        ConditionUpdate("system", "FAULT", "2041", "3", "HIGH", "SPINDLE OVERLOAD"),
        ValueUpdate("block", ""), ValueUpdate("msg", "Check coolant", "1021"),
        ValueUpdate("alarm", "Door open", "77"), ValueUpdate("ts", "1 2 3"), ValueUpdate("execution", None),
    )
    assert line.unknown_keys == ("nope",)


def test_a_condition_line_cut_short_is_completed_with_empty_fields() -> None:
    (line,) = _read("2022-08-08T13:51:34Z|system|normal")
    assert line.updates == (ConditionUpdate("system", "NORMAL", "", "", "", ""),)


def test_asset_commands() -> None:
    lines = _read("2022-08-08T13:51:34Z|@ASSET@|T1|CuttingTool|<CuttingTool assetId=\"T1\"/>\n"
                  "2022-08-08T13:51:35Z|@REMOVE_ASSET@|T1\n* shdrVersion: 2\n"
                  "2022-08-08T13:51:36Z|@REMOVE_ALL_ASSETS@|CuttingTool")
    assert [line.updates for line in lines] == [
        (AssetUpdate("T1", "CuttingTool", '<CuttingTool assetId="T1"/>'),), (AssetRemove("T1"),),
        (AssetRemoveAll("CuttingTool"),)]
    assert all(line.is_asset for line in lines)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("yesterday|S1speed|1", "SHDR line 1: 'yesterday' is not a timestamp"),
        ("2022-08-08T13:51:34Z", "a timestamp and nothing else"),
        ("2022-08-08T13:51:34Z|S1speed|1\n2022-08-08T13:51:34Z|@ASSET@|T1|CuttingTool|--multiline--X\n<a/>",
         "SHDR line 2: the multiline asset 'T1' never ends"),
        ("2022-08-08T13:51:34Z|@REMOVE_ASSET@|", "SHDR line 1: field 3 is missing"),
    ],
)
def test_a_malformed_recording_names_the_line(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _read(text)


def test_retiming_skips_out_of_order_lines_and_splices_caps_pauses_and_keeps_the_program_runs() -> None:
    with (DATA_DIR / "okuma.txt").open(encoding="utf-8") as f:
        lines = list(read_shdr(f, _okuma_kind))
    steps = _retime(lines, max_gap=10.0)
    delays = [d for d, _ in steps]
    assert min(delays) == 0 and max(delays) == 10_000_000
    assert all(d == 0 for d, line in steps if line.is_asset)
    assert sum(delays) / 1e6 == pytest.approx(1387.1, abs=0.1)
    # EXECUTION ACTIVE -> PROGRAM_COMPLETED lasts as long as in the recording
    offset, started, runs = 0, None, []
    for delay, line in steps:
        offset += delay
        for u in line.updates:
            if isinstance(u, ValueUpdate) and u.key == "pexecution":
                if u.value == "ACTIVE" and started is None:
                    started = offset
                elif u.value == "PROGRAM_COMPLETED" and started is not None:
                    runs.append(round((offset - started) / 1e6, 1))
                    started = None
    assert runs == [186.7, 605.0, 548.9, 16.8]
