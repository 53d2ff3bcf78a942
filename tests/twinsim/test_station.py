"""The PUR moulding station: shots on the recipe's cycle, the mould following its setpoint, its faults."""

from __future__ import annotations

import pytest

from twinsim.edgeconfig import ConfigSettings, render_edge_config
from twinsim.faults import FaultSpecError, parse_fault_spec
from twinsim.registers import STATION_HOLDING, encode_station_holding
from twinsim.station import AMBIENT_PRESSURE_BAR, COLD_SETPOINT_C, FIRST_SHOT_S, Station


def run(station: Station, seconds: float, dt: float = 0.1) -> list:
    return [station.step(dt) for _ in range(round(seconds / dt))]


def test_a_shot_starts_every_cycle_and_the_mould_opens_for_the_last_fifth() -> None:
    station = Station(1, cycle_s=20.0)
    readings = run(station, FIRST_SHOT_S + 59.0)
    counts = [r.shot_count for r in readings]
    assert counts[0] == 0 and counts[-1] == 3  # shots at 15, 35, 55 s
    starts = [i for i in range(1, len(counts)) if counts[i] != counts[i - 1]]
    assert [round((i + 1) * 0.1, 1) for i in starts] == [15.0, 35.0, 55.0]
    at = {round((i + 1) * 0.1, 1): r for i, r in enumerate(readings)}
    assert at[20.0].shot_active and not at[20.0].mould_open
    assert at[32.0].mould_open and not at[32.0].shot_active  # 17 s into a 20 s cycle


def test_the_mould_holds_its_setpoint_with_a_small_exotherm_bump() -> None:
    station = Station(1, cycle_s=300.0)
    temps = [r.mould_temp_c for r in run(station, FIRST_SHOT_S + 120.0)]
    assert all(44.0 < t < 47.5 for t in temps)
    bump = max(temps[round((FIRST_SHOT_S + 40) * 10):]) - temps[round(FIRST_SHOT_S * 10)]
    assert 0.8 < bump < 2.5  # +1.5 K at its peak (plus the approach to the setpoint, plus noise)


def test_a_failed_heater_cools_the_mould_while_the_setpoint_reads_normal() -> None:
    station = Station(1, cycle_s=60.0)
    station.inject(parse_fault_spec("station-1:cold_mould@10s", stations=1))
    last = run(station, 310.0)[-1]
    assert last.mould_setpoint_c == 45.0 and last.heater_output_pct == 0
    assert last.mould_temp_c < 37.0  # τ 300 s toward the hall's 20..24 °C


def test_a_wrong_recipe_drops_the_setpoint_and_the_mould_follows() -> None:
    station = Station(1, cycle_s=60.0)
    station.inject(parse_fault_spec("station-1:cold_mould=setpoint@0s", stations=1))
    last = run(station, 400.0)[-1]
    assert last.mould_setpoint_c == COLD_SETPOINT_C
    assert abs(last.mould_temp_c - COLD_SETPOINT_C) < 1.5


def test_a_blocked_vent_raises_the_cavity_pressure_several_times() -> None:
    def peak(faults: tuple[str, ...]) -> float:
        station = Station(1, cycle_s=120.0)
        for f in faults:
            station.inject(parse_fault_spec(f, stations=1))
        return max(r.cavity_pressure_bar for r in run(station, FIRST_SHOT_S + 90.0)) - AMBIENT_PRESSURE_BAR

    clean, blocked = peak(()), peak(("station-1:blocked_vent@0s",))
    assert 0.1 < clean < 0.3
    assert blocked > 0.8 and blocked > 4 * clean


def test_station_faults_are_checked() -> None:
    with pytest.raises(FaultSpecError, match="a moulding station takes cold_mould or blocked_vent"):
        parse_fault_spec("station-1:overheat@1s", stations=1)
    with pytest.raises(FaultSpecError, match="is a moulding station fault"):
        parse_fault_spec("machine-1:blocked_vent@1s", machines=1)
    with pytest.raises(FaultSpecError, match="there is no station-2"):
        parse_fault_spec("station-2:blocked_vent@1s", stations=1)
    with pytest.raises(FaultSpecError, match="unknown cold_mould mode 'ice'"):
        parse_fault_spec("station-1:cold_mould=ice@1s", stations=1)
    assert str(parse_fault_spec("station-1:cold_mould@1m", stations=1)) == "station-1:cold_mould=heater@60s"


def test_the_register_map_and_the_edge_config_agree() -> None:
    regs = encode_station_holding(Station(3).reading())
    assert len(regs) == max(f.address + f.count for f in STATION_HOLDING)
    assert regs[-1] == 3  # station_number
    text = render_edge_config(ConfigSettings(machines=2, stations=1, modbus_port=5020, opcua=False))
    block = text[text.index("# station-1"):]
    assert "port = 5022" in block  # after the two machines
    for field in STATION_HOLDING:
        assert f'name = "{field.name}"' in block
