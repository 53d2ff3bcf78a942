"""MTConnect observations into frames, alarm events and documents (the frame mapping; no I/O).

- One frame per (device, timestamp) run of observations in sequence order; a frame never holds one key twice
  and never repeats a (device_id, ts) the source already used: a frame whose time is not later than the
  device's previous frame is moved 1 µs after it.
- Keys are the data item ids (``i_`` in front of an id that does not start with a letter or ``_``; other
  characters become ``_``). SAMPLE: a number (a vector stays text); EVENT: text, cut at 256 characters;
  CONDITION: its level as text (the alarms themselves are events). UNAVAILABLE: the key is absent and
  ``<key>.quality`` is ``"unavailable"``; the next real value sets ``<key>.quality`` to ``"ok"``.
- ``metrics["mtconnect.seq"]``: the highest sequence a frame covers.
- Conditions: alarms keyed by (item, native code), several active at once; WARNING/FAULT opens one, NORMAL with
  a code closes it, NORMAL without a code (or UNAVAILABLE) closes all of the item's.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from edge.sources.mtconnect.protocol import DataItem, DeviceModel, Observation, Probe
from shared.batch import Document, EdgeEvent
from shared.frame import DEVICE_ID_PATTERN, MAX_SENSORS, MAX_STRING_VALUE, TS_MAX, TS_MIN, TelemetryFrame

__all__ = ["MAX_ACTIVE_ALARMS", "MAX_ITEMS", "Mapper", "Registry", "sensor_key"]

log = logging.getLogger(__name__)

MAX_ITEMS = 20_000  # data items of one agent (the reference agent's demo has a few hundred)
MAX_DEVICES = 200
MAX_ACTIVE_ALARMS = 200  # alarms open at once across the agent; past it the oldest are forgotten (logged)
MAX_MESSAGE = 120  # an alarm's text kept in the position (which is at most 64 KiB)
MAX_DETAIL = 1024  # a text in an event's details (an agent's ids and codes may be longer)
TICK = 1e-6
CLOCK_STEP_BACK = 1.0  # s: a time this far before the device's previous frame is a clock set back, not a repeat
_BAD_KEY_CHARS = re.compile(r"[^A-Za-z0-9_.:/-]")
_BAD_ID_CHARS = re.compile(r"[^A-Za-z0-9._:-]")
_EVENT_EDGE = "edge"  # the store writer stamps the edge's id on events


def sensor_key(item_id: str) -> str:
    key = _BAD_KEY_CHARS.sub("_", item_id)
    if not (key[:1].isascii() and (key[:1].isalpha() or key[:1] == "_")):
        key = "i_" + key
    return key[:119]  # room for ".quality" within the 128 a key may have


def default_device_id(name: str) -> str:
    text = _BAD_ID_CHARS.sub("_", name)[:64]
    if not re.match(DEVICE_ID_PATTERN, text):
        text = ("d" + text)[:64]
    return text


def cut(text: str, limit: int = MAX_STRING_VALUE) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class Entry:
    item: DataItem
    key: str
    device_id: str


@dataclass
class Registry:
    """The data items of /probe, by id, with the key and device id each has in frames."""

    instance_id: int
    devices: tuple[DeviceModel, ...]
    items: dict[str, Entry]
    device_ids: dict[str, str]  # uuid -> device id

    @classmethod
    def build(cls, probe: Probe, names: dict[str, str]) -> Registry:
        if len(probe.devices) > MAX_DEVICES:
            raise ValueError(f"the agent serves {len(probe.devices)} devices; at most {MAX_DEVICES} are read")
        items: dict[str, Entry] = {}
        device_ids: dict[str, str] = {}
        for dev in probe.devices:
            device_id = names.get(dev.name) or names.get(dev.uuid) or default_device_id(dev.name)
            device_ids[dev.uuid] = device_id
            for item in dev.items:
                if len(items) >= MAX_ITEMS:
                    raise ValueError(f"the agent describes more than {MAX_ITEMS} data items")
                items[item.id] = Entry(item, sensor_key(item.id), device_id)
        return cls(probe.header.instance_id, probe.devices, items, device_ids)

    def documents(self, ts: float, source: str) -> list[Document]:
        """One ``mtconnect_device`` document per device (its items cut to fit the document size)."""
        docs = []
        for dev in self.devices:
            rows = [{"id": e.item.id, "key": e.key, "name": e.item.name, "category": e.item.category,
                     "type": e.item.type, "sub_type": e.item.sub_type, "units": e.item.units}
                    for e in (self.items[i.id] for i in dev.items)]
            budget, kept = 200 * 1024, list[dict[str, Any]]()
            for row in rows:
                budget -= sum(len(str(v)) + 12 for v in row.values())
                if budget < 0:
                    log.warning("device %s has too many data items for one document; %d of %d are listed",
                                dev.name, len(kept), len(rows))
                    break
                kept.append(row)
            docs.append(Document(ts=ts, kind="mtconnect_device", key=dev.uuid[:256], device=self.device_ids[dev.uuid],
                                 source=source, body={"uuid": dev.uuid, "name": dev.name,
                                                      "device_id": self.device_ids[dev.uuid],
                                                      "instance_id": self.instance_id, "items": kept}))
        return docs


@dataclass
class Output:
    frames: list[TelemetryFrame] = field(default_factory=list)
    events: list[EdgeEvent] = field(default_factory=list)
    assets: list[tuple[str, str, str, float]] = field(default_factory=list)  # (asset id, uuid, element, ts)
    observations: int = 0


@dataclass
class _Building:
    device_id: str
    ts: float
    sensors: dict[str, Any]
    seq: int


class Mapper:
    """Turns observations into frames and alarm events; keeps what must carry over (and goes in the position):
    each device's last frame time, the keys that are unavailable, the alarms that are open."""

    def __init__(self, registry: Registry, source: str, state: dict[str, Any] | None = None) -> None:
        self.registry = registry
        self.source = source
        self._clock_told = self._step_told = False
        state = state or {}
        self.last_ts: dict[str, float] = {k: float(v) for k, v in dict(state.get("ts", {})).items()}
        self.unavailable: set[str] = set(state.get("unavailable", []))  # "device_id/key"
        # (item id, native code) -> [level, native severity, qualifier, message, type, device id]
        self.alarms: dict[tuple[str, str], list[Any]] = {
            (a[0], a[1]): list(a[2:]) for a in state.get("alarms", [])}

    def restore(self, state: dict[str, Any]) -> None:
        """Back to a state taken before data that was then not stored (the queue refused it)."""
        self.__init__(self.registry, self.source, state)  # type: ignore[misc]

    def state(self) -> dict[str, Any]:
        """What the position keeps of this mapper (bounded: alarms are capped, messages cut)."""
        return {"ts": dict(self.last_ts), "unavailable": sorted(self.unavailable),
                "alarms": [[item, code, *rest] for (item, code), rest in self.alarms.items()]}

    def map(self, observations: Iterable[Observation]) -> Output:
        out = Output()
        building: dict[str, _Building] = {}
        for obs in observations:
            entry = self.registry.items.get(obs.item_id)
            if entry is None:
                continue  # an item the probe did not describe: nothing to key it by
            out.observations += 1
            frame = building.get(entry.device_id)
            if frame is not None and (frame.ts != obs.timestamp or entry.key in frame.sensors
                                      or entry.key + ".quality" in frame.sensors  # an UNAVAILABLE is a reading too
                                      or len(frame.sensors) >= MAX_SENSORS - 2):
                out.frames.append(self._finish(frame))
                frame = None
            if frame is None:
                frame = building[entry.device_id] = _Building(entry.device_id, obs.timestamp, {}, obs.sequence)
            frame.seq = max(frame.seq, obs.sequence)
            self._value(entry, obs, frame.sensors)
            if obs.condition is not None:
                out.events.extend(self._condition(entry, obs))
            if obs.element in ("AssetChanged", "AssetRemoved") and isinstance(obs.value, str) and obs.value:
                out.assets.append((obs.value, obs.device_uuid, obs.element, obs.timestamp))
        out.frames.extend(self._finish(f) for f in building.values())
        out.frames.sort(key=lambda f: f.metrics["mtconnect.seq"])
        return out

    def reconcile(self, snapshot: Iterable[Observation]) -> list[EdgeEvent]:
        """Alarms as a snapshot of the agent's state (``/current``) shows them, after changes the edge could not
        read (a gap): an alarm no longer active is closed, an active one the edge did not know is opened."""
        seen: dict[str, Observation] = {}  # item id -> an observation of it (the time its alarms ended)
        active: dict[tuple[str, str], Observation] = {}
        for obs in snapshot:
            cond = obs.condition
            if cond is None or obs.item_id not in self.registry.items:
                continue
            seen.setdefault(obs.item_id, obs)
            if cond.level in ("WARNING", "FAULT"):
                active[(obs.item_id, cond.native_code or "")] = obs
            else:
                seen[obs.item_id] = obs  # NORMAL or UNAVAILABLE: when the item's other alarms ended
        events = [self._event("alarm_closed", *key, self.alarms.pop(key), seen[key[0]])
                  for key in [k for k in self.alarms if k[0] in seen and k not in active]]
        for (item, _), obs in active.items():
            events.extend(self._condition(self.registry.items[item], obs))
        return events

    def _finish(self, b: _Building) -> TelemetryFrame:
        last = self.last_ts.get(b.device_id)
        if not TS_MIN <= b.ts < TS_MAX:  # a control's clock lost (1970) or wild: the edge's time is the best left
            if not self._clock_told:
                log.warning("MTConnect source %s: device %s reports times outside 2000..2100 (%r); its frames carry "
                            "the edge's time instead", self.source, b.device_id, b.ts)
                self._clock_told = True
            b.ts = time.time()
        if last is not None and b.ts < last - CLOCK_STEP_BACK:
            # The control's clock was set back (or one wild time was ahead of it): follow the clock again rather
            # than dating every later frame after the wild one.
            if not self._step_told:  # once per connection: a clock that keeps jumping must not flood the log
                log.warning("MTConnect source %s: device %s reports a time %.3f s before its previous frame; its "
                            "frames follow the device's clock from here", self.source, b.device_id, last - b.ts)
                self._step_told = True
            last = None
        ts = b.ts if last is None or b.ts > last else last + TICK
        if last is not None and ts <= last:  # the float did not move: a step it does see
            ts = last + max(TICK, abs(last) * 4e-16)
        self.last_ts[b.device_id] = ts
        return TelemetryFrame(ts=ts, device_id=b.device_id, sensors=b.sensors, metrics={"mtconnect.seq": b.seq})

    def _value(self, entry: Entry, obs: Observation, sensors: dict[str, Any]) -> None:
        flag = f"{entry.device_id}/{entry.key}"
        quality = entry.key + ".quality"
        if obs.value is None:
            sensors.pop(entry.key, None)
            sensors[quality] = "unavailable"
            self.unavailable.add(flag)
            return
        if flag in self.unavailable:
            self.unavailable.discard(flag)
            sensors[quality] = "ok"
        value = obs.value
        if isinstance(value, float) and entry.item.category == "SAMPLE":
            sensors[entry.key] = value
        else:
            sensors[entry.key] = cut(str(value))

    def _condition(self, entry: Entry, obs: Observation) -> list[EdgeEvent]:
        cond = obs.condition
        assert cond is not None
        item = obs.item_id
        if cond.level in ("WARNING", "FAULT"):
            code = cond.native_code or ""
            known = self.alarms.get((item, code))
            record = [cond.level, cond.native_severity, cond.qualifier, cut(cond.message or "", MAX_MESSAGE),
                      entry.item.type, entry.device_id]
            self.alarms[(item, code)] = record
            if known is not None:
                return []  # still active (perhaps at another level): one open, one close
            events = [self._event("alarm_opened", item, code, record, obs)]
            if len(self.alarms) > MAX_ACTIVE_ALARMS:
                oldest = next(iter(self.alarms))
                del self.alarms[oldest]
                log.warning("more than %d alarms are open on source %s; the oldest (%s %s) is no longer tracked",
                            MAX_ACTIVE_ALARMS, self.source, *oldest)
            return events
        if cond.level == "NORMAL" and cond.native_code:
            closing = [(item, cond.native_code)] if (item, cond.native_code) in self.alarms else []
        else:  # NORMAL without a code, or UNAVAILABLE: every alarm of the item ends
            closing = [k for k in self.alarms if k[0] == item]
        return [self._event("alarm_closed", k[0], k[1], self.alarms.pop(k), obs) for k in closing]

    def _event(self, kind: str, item: str, code: str, record: list[Any], obs: Observation) -> EdgeEvent:
        level, severity, qualifier, message, item_type, device_id = record
        what = f"Alarm {code}" if code else f"Alarm on {item}"
        where = f"{what} on {device_id} ({item_type}, {level})"
        if kind == "alarm_opened":
            text = f"{where}: {message}" if message else where
        else:
            text = f"{where} cleared" + (" (the item became unavailable)" if obs.value is None else "")
        return EdgeEvent(ts=obs.timestamp, level="operator", kind=kind, edge=_EVENT_EDGE, device=device_id,
                         source=self.source, message=cut(text, 500),
                         details={k: cut(v, MAX_DETAIL) if isinstance(v, str) else v for k, v in {
                             "item": item, "type": item_type, "native_code": code or None,
                             "native_severity": severity, "severity": level, "qualifier": qualifier,
                             "sequence": obs.sequence}.items()})
