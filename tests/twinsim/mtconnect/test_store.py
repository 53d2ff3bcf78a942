"""The agent's buffer: a ring by sequence with a checkpoint, so /current at an earlier sequence is exact;
condition state with several active alarms; duplicates as the reference agent drops them."""

from __future__ import annotations

import pytest

from twinsim.mtconnect.model import Component, Item
from twinsim.mtconnect.store import Buffer, Record, State

DEVICE = Component("Device", "d1", "dev")
SPEED = Item("speed", None, "SAMPLE", "SPINDLE_SPEED", None, None, "u", DEVICE)
SYSTEM = Item("system", None, "CONDITION", "SYSTEM", None, None, "u", DEVICE)


def _value(seq: int, value: str | None, item: Item = SPEED) -> Record:
    return Record(item, seq, seq * 1000, value, 1)


def _cond(seq: int, level: str, code: str = "", message: str = "") -> Record:
    return Record(SYSTEM, seq, seq * 1000, None if level == "UNAVAILABLE" else level, 1,
                  condition=(level, code, "", "", message))


def test_the_ring_keeps_the_last_size_observations_and_a_checkpoint() -> None:
    buffer = Buffer(4)
    for seq in range(1, 11):
        buffer.append(_value(seq, str(seq)))
    assert (buffer.first_sequence, buffer.last_sequence, buffer.next_sequence) == (7, 10, 11)
    assert [r.sequence for r in buffer.scan(1, 100)] == [7, 8, 9, 10]
    assert buffer.state_at(6).values["speed"].value == "6"  # the checkpoint: evicted, still known
    assert buffer.state_at(8).values["speed"].value == "8"
    with pytest.raises(KeyError):
        buffer.get(6)
    with pytest.raises(ValueError, match="out of order"):
        buffer.append(_value(12, "x"))


def test_several_alarms_are_active_at_once_and_clear_by_code() -> None:
    state = State()
    for rec in (_cond(1, "UNAVAILABLE"), _cond(2, "FAULT", "2041"), _cond(3, "WARNING", "1107")):
        state.apply(rec)
    assert sorted(state.conditions["system"]) == ["1107", "2041"]
    state.apply(_cond(4, "NORMAL", "2041"))
    assert list(state.conditions["system"]) == ["1107"]
    state.apply(_cond(5, "NORMAL", "1107"))
    assert [r.sequence for r in state.conditions["system"].values()] == [5]  # all clear: NORMAL
    state.apply(_cond(6, "FAULT", "9"))
    state.apply(_cond(7, "NORMAL"))
    assert [r.sequence for r in state.records()] == [7]


@pytest.mark.parametrize(
    ("history", "new", "duplicate"),
    [
        ([_value(1, "5")], _value(2, "5"), True),
        ([_value(1, "5")], _value(2, "6"), False),
        ([_value(1, None)], _value(2, None), True),
        ([], _value(1, None), False),
        ([_cond(1, "UNAVAILABLE")], _cond(2, "NORMAL", "77"), False),  # first news of the condition
        ([_cond(1, "NORMAL")], _cond(2, "NORMAL"), True),
        ([_cond(1, "NORMAL")], _cond(2, "NORMAL", "77"), True),  # nothing active to clear
        ([_cond(1, "FAULT", "1", "A")], _cond(2, "FAULT", "1", "A"), True),
        ([_cond(1, "FAULT", "1", "A")], _cond(2, "FAULT", "1", "B"), False),  # a new message
        ([_cond(1, "FAULT", "1")], _cond(2, "NORMAL", "2"), True),  # clears a code that is not active
        ([_cond(1, "FAULT", "1")], _cond(2, "NORMAL", "1"), False),
    ],
)
def test_duplicates(history: list[Record], new: Record, duplicate: bool) -> None:
    state = State()
    for rec in history:
        state.apply(rec)
    assert state.is_duplicate(new) is duplicate
