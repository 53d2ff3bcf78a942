"""The machine model: seeded, plausible dynamics, and each fault doing what the docs promise."""

from __future__ import annotations

import pytest

from twinsim.faults import FaultSpec, FaultSpecError, parse_fault_spec
from twinsim.machine import (
    ALARM_SPINDLE_TEMP_C,
    ALARM_VIBRATION_MM_S,
    SENTINEL_TEMP_C,
    UINT32,
    Machine,
    Reading,
)

DT = 0.1


def run(machine: Machine, seconds: float) -> list[Reading]:
    return [machine.step(DT) for _ in range(round(seconds / DT))]


def faulty(spec: str, seed: int = 1) -> Machine:
    fault = parse_fault_spec(spec)
    machine = Machine(fault.machine or 1, seed)
    machine.inject(fault)
    return machine


def test_same_seed_same_readings_and_other_seed_differs() -> None:
    a, b, c = Machine(1, seed=7), Machine(1, seed=7), Machine(1, seed=8)
    assert run(a, 30) == run(b, 30)
    assert run(Machine(1, seed=7), 30) != run(c, 30)


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_healthy_machine_stays_in_plausible_ranges(seed: int) -> None:
    readings = run(Machine(2, seed), 300)
    assert all(25.0 < r.spindle_temp_c < 65.0 for r in readings)
    assert all(0.0 <= r.vibration_rms_mm_s < 4.5 for r in readings)
    assert all(0.0 <= r.motor_current_a < 30.0 for r in readings)
    assert all(4.0 < r.pressure_bar < 7.5 for r in readings)
    assert not any(r.fault for r in readings)
    assert all(r.running and r.online for r in readings)


def test_current_follows_load() -> None:
    readings = run(Machine(1), 120)
    cutting = [r.motor_current_a for r in readings if r.load_pct >= 60]
    idle = [r.motor_current_a for r in readings if r.load_pct <= 20]
    assert cutting and idle
    assert min(cutting) > max(idle)


def test_cycle_counter_increases_by_one_per_cycle() -> None:
    machine = Machine(1)
    readings = run(machine, 120)
    counts = [r.cycle_count for r in readings]
    assert all(b - a in (0, 1) for a, b in zip(counts, counts[1:], strict=False))
    expected = 120 / machine.cycle_time_s
    assert expected - 1 <= counts[-1] <= expected + 1


def test_cycle_counter_wraps_like_a_uint32() -> None:
    machine = Machine(1, cycle_count=UINT32 - 1)
    counts = [r.cycle_count for r in run(machine, 2 * machine.cycle_time_s + 1)]
    assert UINT32 - 1 in counts
    assert counts[-1] in (0, 1)
    assert max(counts) < UINT32


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5, 6])
def test_overheat_passes_the_alarm_within_60_s(seed: int) -> None:
    machine = faulty("machine-1:overheat@10s", seed)
    before = run(machine, 10)
    assert not any(r.overtemp_alarm for r in before)
    after = run(machine, 60)
    assert after[-1].spindle_temp_c > ALARM_SPINDLE_TEMP_C
    assert after[-1].overtemp_alarm and after[-1].fault and after[-1].alarm_code == 101
    assert after[-1].coolant_flow_l_min < 5.0  # the cause: the coolant stopped


def test_overheat_with_a_duration_cools_down_again() -> None:
    machine = faulty("machine-1:overheat@0s+60s")
    hot = run(machine, 60)[-1].spindle_temp_c
    cooled = run(machine, 600)[-1]
    assert cooled.spindle_temp_c < hot - 30
    assert not cooled.overtemp_alarm


def test_drift_moves_the_pressure_reading_by_up_to_2_bar_and_alarms_nothing() -> None:
    clean, drifting = Machine(1, 3), faulty("machine-1:drift@20s", 3)
    before = [(a.pressure_bar, b.pressure_bar) for a, b in zip(run(clean, 20), run(drifting, 20), strict=True)]
    assert all(a == b for a, b in before)  # same seed, no drift yet: the same readings
    later = list(zip(run(clean, 200), run(drifting, 200), strict=True))
    offsets = [b.pressure_bar - a.pressure_bar for a, b in later]
    assert offsets[49] == pytest.approx(0.02 * 5.0, abs=1e-6)  # 5 s into the drift
    assert offsets[-1] == pytest.approx(2.0, abs=1e-6)  # capped
    assert all(a.spindle_temp_c == b.spindle_temp_c for a, b in later)  # the process itself is unchanged
    assert not any(b.fault for _, b in later)


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5, 6])
def test_bearing_wear_raises_vibration_past_the_alarm_within_120_s(seed: int) -> None:
    machine = faulty("machine-1:bearing_wear@20s", seed)
    healthy = max(r.vibration_rms_mm_s for r in run(machine, 20))
    minutes = [max(r.vibration_rms_mm_s for r in run(machine, 30)) for _ in range(4)]
    assert minutes == sorted(minutes)  # progressive
    assert minutes[-1] > ALARM_VIBRATION_MM_S > healthy
    assert machine.reading().vibration_alarm


def test_sentinel_dropout_reads_the_sentinel_and_flags_a_sensor_fault() -> None:
    machine = faulty("machine-1:dropout@5s+5s")
    run(machine, 6)
    r = machine.reading()
    assert r.spindle_temp_c == SENTINEL_TEMP_C
    assert r.sensor_fault and r.spindle_temp_status == "sentinel" and r.alarm_code == 103
    run(machine, 5)
    assert machine.reading().spindle_temp_c > 0 and not machine.reading().sensor_fault


def test_frozen_sensor_repeats_one_value_while_others_move() -> None:
    machine = faulty("machine-1:dropout=freeze@5s")
    run(machine, 5.05)
    frozen = run(machine, 10)
    assert len({r.spindle_temp_c for r in frozen}) == 1
    assert len({r.motor_temp_c for r in frozen}) > 1
    assert not frozen[-1].sensor_fault  # a frozen sensor is not detected by the PLC


def test_failed_sensor_is_marked_for_the_servers() -> None:
    machine = faulty("machine-1:dropout=exception@1s")
    run(machine, 2)
    assert machine.reading().spindle_temp_status == "failed"
    assert machine.reading().sensor_fault


def test_plc_restart_goes_offline_then_boots_with_counters_at_zero() -> None:
    machine = faulty("machine-1:plc_restart@60s+5s")
    before = run(machine, 59.9)[-1]
    assert before.online and before.cycle_count > 2 and before.uptime_s >= 59
    down = run(machine, 5)
    assert all(not r.online and not r.running for r in down)
    assert all(r.cycle_count == 0 and r.uptime_s == 0 for r in down)
    back = run(machine, 3)[-1]
    assert back.online and back.running
    assert back.cycle_count <= 1 and back.uptime_s <= 3


def test_status_word_matches_the_flags() -> None:
    machine = faulty("machine-1:overheat@0s")
    r = run(machine, 60)[-1]
    assert r.status_word & 0b111 == 0b111  # running, fault, overtemp
    assert bool(r.status_word & 1 << 5) == r.cutting


def test_a_fault_for_another_machine_is_refused() -> None:
    with pytest.raises(ValueError, match="machine-1"):
        Machine(1).inject(parse_fault_spec("machine-2:overheat@1s"))


# --- fault spec parsing ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("machine-2:overheat@30s", FaultSpec(2, "overheat", 30.0)),
        ("machine-1:overheating@1m+20s", FaultSpec(1, "overheat", 60.0, 20.0)),
        ("machine-3:bearing_wear@0s", FaultSpec(3, "bearing_wear", 0.0)),
        ("machine-1:dropout@500ms", FaultSpec(1, "dropout", 0.5, None, "sentinel")),
        ("machine-1:sensor_dropout=exception@1m+20s", FaultSpec(1, "dropout", 60.0, 20.0, "exception")),
        ("machine-1:dropout=freeze@2s", FaultSpec(1, "dropout", 2.0, None, "freeze")),
        ("machine-1:plc_restart@45s", FaultSpec(1, "plc_restart", 45.0, 5.0)),
        ("machine-1:restart@45s+2s", FaultSpec(1, "plc_restart", 45.0, 2.0)),
        ("opcua:plc_restart@2m+5s", FaultSpec(None, "plc_restart", 120.0, 5.0)),
    ],
)
def test_fault_specs_parse(spec: str, expected: FaultSpec) -> None:
    assert parse_fault_spec(spec, machines=3) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "is not <machine>:<fault>@<start>"),
        ("machine-2:overheat", "is not <machine>:<fault>@<start>"),
        ("machine-2 overheat@30s", "is not <machine>:<fault>@<start>"),
        ("machine-2:melt@30s", "unknown fault 'melt'"),
        ("press-2:overheat@30s", "unknown target 'press-2'"),
        ("machine-0:overheat@30s", "there is no machine-0"),
        ("machine-4:overheat@30s", "machines are numbered 1..3"),
        ("machine-2:overheat@30", "not a duration"),
        ("machine-2:overheat@-5s", "not a duration"),
        ("machine-2:overheat@30s+soon", "the duration 'soon' is not a duration"),
        ("machine-2:overheat@999999h", "longer than 30 days"),
        ("machine-2:overheat=hot@30s", "only dropout and cold_mould take a mode"),
        ("machine-2:dropout=flaky@30s", "unknown dropout mode 'flaky'"),
        ("machine-2:plc_restart@30s+0s", "downtime above 0 s"),
        ("opcua:overheat@30s", "only supports plc_restart"),
    ],
)
def test_malformed_fault_specs_are_refused_with_a_clear_message(spec: str, message: str) -> None:
    with pytest.raises(FaultSpecError, match=message.replace("(", r"\(").replace(".", r"\.")) as info:
        parse_fault_spec(spec, machines=3)
    assert repr(spec) in str(info.value) or spec == ""
