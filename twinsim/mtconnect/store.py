"""The agent's memory: a circular buffer of observations with global sequence numbers, the state each
item is in (for ``/current``, also at an earlier sequence), and the asset store.

The buffer holds the last ``size`` observations; sequence ``s`` lives in slot ``s % size``. The state
as of the observation just before the buffer's first one is kept as a checkpoint, so ``/current?at=N``
is the checkpoint plus the buffered observations up to ``N``. A condition item keeps every active
WARNING/FAULT by native code (several alarms at once); a NORMAL with a code clears that code, a NORMAL
without one clears them all.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

from twinsim.mtconnect.model import Item

__all__ = ["AssetRecord", "Buffer", "ConditionState", "Record", "State"]

ConditionState = tuple[str, str, str, str, str]  # level, native code, native severity, qualifier, message


@dataclass(frozen=True, slots=True)
class Record:
    """One observation the agent produced."""

    item: Item
    sequence: int
    timestamp_us: int  # microseconds since the epoch, UTC
    value: str | None  # None: UNAVAILABLE; a condition's level otherwise
    instance_id: int
    condition: ConditionState | None = None  # for CONDITION items
    native_code: str | None = None  # a MESSAGE's code
    asset_type: str | None = None  # ASSET_CHANGED / ASSET_REMOVED

    @property
    def item_id(self) -> str:
        return self.item.id

    @property
    def timestamp(self) -> float:
        return self.timestamp_us / 1e6


@dataclass(frozen=True, slots=True)
class AssetRecord:
    asset_id: str
    asset_type: str
    device_uuid: str
    timestamp_us: int
    xml: str  # the asset element, as the adapter sent it
    removed: bool = False


class State:
    """The latest observation of every item (every active alarm of a condition item)."""

    def __init__(self) -> None:
        self.values: dict[str, Record] = {}
        self.conditions: dict[str, dict[str, Record]] = {}  # item id -> native code -> record

    def copy(self) -> State:
        out = State()
        out.values = dict(self.values)
        out.conditions = {k: dict(v) for k, v in self.conditions.items()}
        return out

    def apply(self, rec: Record) -> None:
        if rec.condition is None:
            self.values[rec.item.id] = rec
            return
        level, code = rec.condition[0], rec.condition[1]
        active = self.conditions.setdefault(rec.item.id, {})
        if level in ("WARNING", "FAULT"):
            active.pop("", None)  # the NORMAL/UNAVAILABLE placeholder
            active[code] = rec
        elif level == "NORMAL" and code and any(active):
            if active.pop(code, None) is not None and not active:
                active[""] = rec
        else:  # NORMAL without a code, UNAVAILABLE: everything cleared
            active.clear()
            active[""] = rec

    def is_duplicate(self, rec: Record) -> bool:
        """The reference agent drops an observation that repeats the item's state (except discrete items)."""
        if rec.condition is None:
            last = self.values.get(rec.item.id)
            return last is not None and last.value == rec.value and last.native_code == rec.native_code
        active = self.conditions.get(rec.item.id, {})
        level, code = rec.condition[0], rec.condition[1]
        if level in ("WARNING", "FAULT"):
            same = active.get(code)
            return same is not None and same.condition == rec.condition
        if level == "NORMAL" and code and any(active):
            return code not in active
        only = active.get("")  # nothing active: a repeat of the level it is in
        return len(active) == 1 and only is not None and only.condition is not None and only.condition[0] == level

    def records(self) -> list[Record]:
        out = list(self.values.values())
        for active in self.conditions.values():
            out.extend(active.values())
        out.sort(key=lambda r: r.sequence)
        return out


class Buffer:
    """The last ``size`` observations, by sequence."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"the buffer size must be at least 1 (got {size})")
        self.size = size
        self._ring: list[Record | None] = [None] * size
        self.next_sequence = 1
        self.first_sequence = 1
        self.checkpoint = State()  # as of first_sequence - 1
        self.current = State()

    def append(self, rec: Record) -> None:
        if rec.sequence != self.next_sequence:
            raise ValueError(f"sequence {rec.sequence} out of order (next is {self.next_sequence})")
        slot = rec.sequence % self.size
        old = self._ring[slot]
        if old is not None:
            self.checkpoint.apply(old)
            self.first_sequence = old.sequence + 1
        self._ring[slot] = rec
        self.current.apply(rec)
        self.next_sequence += 1

    @property
    def last_sequence(self) -> int:
        return self.next_sequence - 1

    def get(self, sequence: int) -> Record:
        rec = self._ring[sequence % self.size]
        if rec is None or rec.sequence != sequence:
            raise KeyError(sequence)
        return rec

    def scan(self, start: int, stop: int) -> Iterator[Record]:
        for seq in range(max(start, self.first_sequence), min(stop, self.next_sequence)):
            yield self.get(seq)

    def state_at(self, sequence: int) -> State:
        state = self.checkpoint.copy()
        for rec in self.scan(self.first_sequence, sequence + 1):
            state.apply(rec)
        return state


class AssetStore:
    """The last ``size`` assets, by id; an update moves an asset to the newest place."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._assets: OrderedDict[str, AssetRecord] = OrderedDict()

    def put(self, asset: AssetRecord) -> None:
        self._assets.pop(asset.asset_id, None)
        self._assets[asset.asset_id] = asset
        while len(self._assets) > self.size:
            self._assets.popitem(last=False)

    def get(self, asset_id: str) -> AssetRecord | None:
        return self._assets.get(asset_id)

    def newest_first(self) -> list[AssetRecord]:
        return list(reversed(self._assets.values()))

    @property
    def count(self) -> int:
        return sum(1 for a in self._assets.values() if not a.removed)
