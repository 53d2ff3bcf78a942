"""The frame mapping without I/O: keys, values, the unavailable flag, frame times, alarms."""

from __future__ import annotations

import time

import pytest

from edge.sources.mtconnect.mapping import MAX_ACTIVE_ALARMS, Mapper, Registry, sensor_key
from edge.sources.mtconnect.protocol import Condition, DataItem, DeviceModel, Header, Observation, Probe

T = 1_800_000_000.0
HEADER = Header(instance_id=5, version="2.0", buffer_size=1024, first_sequence=1, last_sequence=9, next_sequence=10,
                asset_buffer_size=None, asset_count=None)


def item(id_: str, category: str = "SAMPLE", type_: str = "POSITION") -> DataItem:
    return DataItem(id=id_, name=None, category=category, type=type_, sub_type=None,  # type: ignore[arg-type]
                    units="MILLIMETER" if category == "SAMPLE" else None, native_units=None, device_uuid="u1",
                    device_name="lathe 3", component="Controller")


ITEMS = (item("Xpos"), item("exec", "EVENT", "EXECUTION"), item("1st", "EVENT", "PROGRAM"),
         item("sys", "CONDITION", "SYSTEM"))


def mapper() -> Mapper:
    probe = Probe(HEADER, (DeviceModel("u1", "lathe 3", ITEMS),))
    return Mapper(Registry.build(probe, {}), "src")


def obs(item_id: str, seq: int, ts: float, value: float | str | None, cond: Condition | None = None) -> Observation:
    category = "CONDITION" if cond else ("SAMPLE" if item_id == "Xpos" else "EVENT")
    return Observation(item_id, seq, ts, value, category, "Fault" if cond else "Position", "u1", cond)


def test_keys_are_item_ids_made_safe() -> None:
    assert sensor_key("Xpos") == "Xpos"
    assert sensor_key("1st") == "i_1st"
    assert sensor_key("a b#c") == "a_b_c"
    assert len(sensor_key("x" * 300)) == 119


def test_samples_are_numbers_events_text_and_unavailable_a_flag() -> None:
    m = mapper()
    out = m.map([obs("Xpos", 1, T, None), obs("exec", 2, T, "A" * 300), obs("Xpos", 3, T + 1, 12.5),
                 obs("1st", 4, T + 1, "O1234")])
    assert [f.device_id for f in out.frames] == ["lathe_3", "lathe_3"]
    assert out.frames[0].sensors == {"Xpos.quality": "unavailable", "exec": "A" * 255 + "…"}
    assert out.frames[1].sensors == {"Xpos": 12.5, "Xpos.quality": "ok", "i_1st": "O1234"}
    assert [f.metrics["mtconnect.seq"] for f in out.frames] == [2, 4]


def test_a_frame_never_repeats_a_time_nor_holds_a_key_twice() -> None:
    m = mapper()
    out = m.map([obs("Xpos", 1, T, 1.0), obs("Xpos", 2, T, 2.0), obs("exec", 3, T - 0.5, "READY")])
    assert [f.sensors for f in out.frames] == [{"Xpos": 1.0}, {"Xpos": 2.0}, {"exec": "READY"}]
    times = [f.ts for f in out.frames]
    assert times[0] == T and times == sorted(set(times))
    later = m.map([obs("Xpos", 4, T, 3.0)])  # the next batch too, and after a restart from the state
    assert later.frames[0].ts > times[-1]
    again = Mapper(m.registry, "src", m.state()).map([obs("Xpos", 5, T, 4.0)])
    assert again.frames[0].ts > later.frames[0].ts


def fault(code: str | None, level: str = "FAULT") -> Condition:
    return Condition(level, code, "1", None, f"text {code}")  # type: ignore[arg-type]


def test_alarms_past_the_cap_forget_the_oldest_and_the_state_stays_bounded() -> None:
    m = mapper()
    m.map([obs("sys", n, T + n, "FAULT", fault(str(n))) for n in range(MAX_ACTIVE_ALARMS + 5)])
    assert len(m.alarms) == MAX_ACTIVE_ALARMS
    closed = m.map([obs("sys", 9999, T + 9999, "NORMAL", fault(None, "NORMAL"))]).events
    assert len(closed) == MAX_ACTIVE_ALARMS and not m.alarms


def test_a_registry_too_large_is_refused_plainly() -> None:
    many = tuple(item(f"i{n}") for n in range(20_001))
    with pytest.raises(ValueError, match="more than 20000 data items"):
        Registry.build(Probe(HEADER, (DeviceModel("u1", "big", many),)), {})


def test_a_snapshot_after_a_gap_closes_the_alarms_that_ended_and_opens_the_new_ones_once() -> None:
    m = mapper()
    m.map([obs("sys", 1, T, "FAULT", fault("2041")), obs("sys", 2, T, "FAULT", fault("3001"))])
    snapshot = [obs("sys", 40, T + 40, "FAULT", fault("3001")), obs("sys", 41, T + 41, "WARNING",
                                                                     fault("4000", "WARNING"))]
    events = m.reconcile(snapshot)
    assert [(e.kind, e.details["native_code"], e.ts) for e in events] == [
        ("alarm_closed", "2041", T + 40), ("alarm_opened", "4000", T + 41)]
    assert m.reconcile(snapshot) == []  # nothing changed since: nothing to say
    assert m.map(snapshot).events == []  # the same observations read again open nothing twice
    ended = m.reconcile([obs("sys", 50, T + 50, "NORMAL", fault(None, "NORMAL"))])
    assert sorted(e.details["native_code"] for e in ended) == ["3001", "4000"] and not m.alarms


def test_an_unavailable_then_a_value_of_one_item_at_one_time_are_two_readings() -> None:
    out = mapper().map([obs("Xpos", 1, T, None), obs("Xpos", 2, T, 3.0)])
    assert [f.sensors for f in out.frames] == [{"Xpos.quality": "unavailable"}, {"Xpos": 3.0, "Xpos.quality": "ok"}]
    assert out.frames[0].ts < out.frames[1].ts


def test_an_alarm_with_codes_and_texts_as_long_as_an_agent_may_send_is_an_event_not_a_crash() -> None:
    long = "C" * 4000  # the protocol layer takes attributes up to 4,096 characters
    m = Mapper(Registry.build(Probe(HEADER, (DeviceModel("u1", "lathe 3", (item(long, "CONDITION", long),)),)), {}),
               "src")
    cond = Condition("FAULT", long, long, long, "M" * 5000)
    [opened] = m.map([obs(long, 1, T, "FAULT", cond)]).events
    assert opened.details["native_code"] == long[:1023] + "…" and opened.details["item"] == long[:1023] + "…"
    [closed] = m.map([obs(long, 2, T + 1, "NORMAL", Condition("NORMAL", long, None, None, None))]).events
    assert closed.kind == "alarm_closed" and closed.details["native_code"] == opened.details["native_code"]


def test_one_wild_time_ahead_does_not_date_every_later_frame_after_it() -> None:
    m = mapper()
    out = m.map([obs("Xpos", 1, T, 1.0), obs("Xpos", 2, T + 86_400.0, 2.0), obs("Xpos", 3, T + 1, 3.0),
                 obs("Xpos", 4, T + 1, 4.0)])
    assert [f.ts for f in out.frames] == [T, T + 86_400.0, T + 1, T + 1 + 1e-6]  # the clock followed again


def test_a_control_whose_clock_is_in_1970_gives_frames_at_the_edges_time_not_a_crash() -> None:
    m = mapper()
    before = time.time()
    out = m.map([obs("Xpos", 1, 10.0, 1.5), obs("Xpos", 2, 11.0, 2.5)])  # a control after its battery died
    assert [f.sensors["Xpos"] for f in out.frames] == [1.5, 2.5]
    assert before <= out.frames[0].ts < out.frames[1].ts <= time.time() + 1
