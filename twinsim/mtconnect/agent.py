"""A test MTConnect agent: replays an SHDR recording (the Okuma lathe by default) into a circular
buffer and serves it over HTTP (``twinsim.mtconnect.server``), with the faults tests need.

    async with MTConnectAgent(AgentSettings(buffer_size=1024, speed=math.inf)) as agent:
        ... agent.url, agent.pause(), agent.restart(), agent.stall(5), agent.disconnect_clients()
        ... agent.produced  (every observation: item, sequence, timestamp, value, instance)

Re-timing: the recording was spliced, so its timestamps go backwards in places (1,108 small steps of
up to 0.25 s where lines were written out of order, and two splices back by 17 and 33 minutes) and jump
forward once by 34 minutes. The replay keeps the latest time seen; a line later than it waits the
difference (capped at ``max_gap``, 10 s), a line slightly earlier (out of order) waits nothing and
leaves the mark, a line more than ``max_gap`` (at least 1 s) earlier starts a new segment (a splice). The four program
runs keep their recorded durations; the whole file takes about 1,387 s at ``speed=1``. Asset lines
carry the asset's own (old) time and take no time. Every line gets one timestamp, strictly later than
the previous line's (by at least 1 µs): with ``timestamps="replay"`` (default) the agent's start plus
the re-timed offset in the recording, so durations are the recording's at any speed; with ``"wall"``
the time of emission.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from twinsim.mtconnect.model import Item, load_devices
from twinsim.mtconnect.server import AgentServer
from twinsim.mtconnect.shdr import (
    AssetRemove,
    AssetRemoveAll,
    AssetUpdate,
    ConditionUpdate,
    Line,
    ValueUpdate,
    read_shdr,
)
from twinsim.mtconnect.store import AssetRecord, AssetStore, Buffer, ConditionState, Record

__all__ = ["DATA_DIR", "VERSIONS", "AgentSettings", "MTConnectAgent"]

log = logging.getLogger(__name__)

DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "mtconnect"
VERSIONS = {v: (int(v[0]), int(v[2:])) for v in ("1.3", "1.4", "1.5", "1.6", "1.7", "1.8", "2.0", "2.1", "2.2",
                                                  "2.3", "2.4", "2.5", "2.6")}
LOOP_GAP_US = 1_000_000  # between the end of the recording and its start again
_UNAVAILABLE_CONDITION: ConditionState = ("UNAVAILABLE", "", "", "", "")


@dataclass(frozen=True)
class AgentSettings:
    host: str = "127.0.0.1"
    port: int = 0  # 0: any free port (see MTConnectAgent.port)
    shdr: Path = DATA_DIR / "okuma.txt"
    devices_xml: Path = DATA_DIR / "Devices.xml"
    devices: tuple[str, ...] | None = None  # device names to serve; None: every device in devices_xml
    buffer_size: int = 131072  # observations kept (the reference agent's default)
    asset_buffer_size: int = 1024
    instance_id: int | None = None  # None: the start time in seconds, like the reference agent
    speed: float = 1.0  # 1: the recording's rate; 10: ten times faster; math.inf: as fast as possible
    max_gap: float = 10.0  # longest pause between two lines, in recording seconds
    loop: bool = False  # start the recording again at its end
    version: str = "2.0"  # schema version served: namespaces, header, error form
    timestamps: Literal["replay", "wall"] = "replay"
    filter_duplicates: bool = True  # drop an observation that repeats its item's state, like the reference agent
    paused: bool = False  # start with the replay paused (resume() starts it)
    record: bool = True  # keep every observation produced in ``produced`` (turn off for long runs)

    def __post_init__(self) -> None:
        if self.version not in VERSIONS:
            raise ValueError(f"schema version must be one of {', '.join(VERSIONS)} (got {self.version!r})")
        if not 1 <= self.buffer_size <= 2**24:
            raise ValueError(f"the buffer size must be 1..{2**24} (got {self.buffer_size})")
        if not 1 <= self.asset_buffer_size <= 2**20:
            raise ValueError(f"the asset buffer size must be 1..{2**20} (got {self.asset_buffer_size})")
        if not (self.speed > 0):
            raise ValueError(f"the replay speed must be above 0 (got {self.speed})")
        if not 0 <= self.max_gap <= 3600:
            raise ValueError(f"max_gap must be 0..3600 s (got {self.max_gap})")


class MTConnectAgent:
    """The replay, the buffer and the controls; ``start()``/``stop()`` or ``async with``."""

    def __init__(self, settings: AgentSettings | None = None, *, clock: Callable[[], float] = time.time) -> None:
        self.settings = s = settings or AgentSettings()
        self.version = VERSIONS[s.version]
        self._clock = clock
        self.devices, self.device_xml = load_devices(s.devices_xml, s.devices)
        self._keys: dict[str, Item] = {}
        for device in reversed(self.devices):  # the first device wins a name used twice
            for item in device.items:
                for key in filter(None, (item.id, item.name)):
                    self._keys[key] = item
                    self._keys[f"{device.name}:{key}"] = item
        self._asset_items = {d.uuid: {i.type: i for i in d.items if i.type in ("ASSET_CHANGED", "ASSET_REMOVED")}
                             for d in self.devices}
        self._unknown: set[str] = set()
        with s.shdr.open(encoding="utf-8") as f:
            self._steps = _retime(list(read_shdr(f, self._kind_of)), s.max_gap)
        self.instance_id = s.instance_id if s.instance_id is not None else int(clock())
        self.buffer = Buffer(s.buffer_size)
        self.assets = AssetStore(s.asset_buffer_size)
        self.produced: list[Record] = []
        self.lines_replayed = 0
        self.loops = 0
        self.restarts = 0
        self._origin_us = 0
        self._offset_us = 0
        self._last_us = 0
        self._line_ts = 0
        self._line_items: set[str] = set()
        self._changed = asyncio.Event()
        self._running = asyncio.Event()
        self.open = asyncio.Event()  # cleared while stalled: the server writes nothing
        self.streams_survive_restart = False  # set by restart(keep_clients=True)
        self.open.set()
        self.replay_done = asyncio.Event()
        self._stall_handle: asyncio.TimerHandle | None = None
        self._replay_task: asyncio.Task[None] | None = None
        self.server = AgentServer(self)

    # --- lifecycle ---

    async def start(self) -> None:
        self._origin_us = int(self._clock() * 1e6)
        self._seed_unavailable()
        await self.server.start(self.settings.host, self.settings.port)
        if not self.settings.paused:
            self._running.set()
        self._replay_task = asyncio.create_task(self._replay(), name="mtconnect-replay")

    async def stop(self) -> None:
        if self._stall_handle is not None:
            self._stall_handle.cancel()
        self.open.set()
        if self._replay_task is not None:
            self._replay_task.cancel()
            try:
                await self._replay_task
            except asyncio.CancelledError:
                if (task := asyncio.current_task()) is not None and task.cancelling():
                    raise
            self._replay_task = None
        await self.server.stop()

    async def __aenter__(self) -> MTConnectAgent:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def now_us(self) -> int:
        """The agent's clock, in microseconds since the epoch (the documents' creationTime)."""
        return int(self._clock() * 1e6)

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def url(self) -> str:
        return f"http://{self.settings.host}:{self.port}"

    # --- controls for tests ---

    def pause(self) -> None:
        """Stop the replay after the current line; the server goes on (heartbeats)."""
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    def restart(self, instance_id: int | None = None, *, resend: bool = False, keep_clients: bool = False) -> None:
        """As if the agent process restarted: clients cut off, a new instanceId (the old one + 1 unless
        given), an empty buffer with sequences from 1, every item UNAVAILABLE; then the replay goes on
        where it was. Assets are kept. ``resend``: the adapter reconnects and sends its whole state
        first (every value the items had before, at one new timestamp), as a real adapter does.
        ``keep_clients``: connections stay open and a running stream goes on with the new instance from its
        first sequence (what a client behind a proxy that reconnects upstream by itself sees)."""
        before = self.buffer.current.records()
        self.streams_survive_restart = keep_clients
        if not keep_clients:
            self.server.disconnect_clients()
        self.instance_id = instance_id if instance_id is not None else self.instance_id + 1
        self.buffer = Buffer(self.settings.buffer_size)
        self.restarts += 1
        self._seed_unavailable()
        if resend:
            self._line_ts = self._stamp()
            self._line_items.clear()
            for rec in before:
                if rec.value is not None:
                    self._add(Record(rec.item, 0, self._ts(rec.item), rec.value, 0, rec.condition, rec.native_code,
                                     rec.asset_type))
            self._notify()
        log.info("MTConnect agent restarted: instanceId %d", self.instance_id)

    def unstall(self) -> None:
        """End a stall now."""
        if self._stall_handle is not None:
            self._stall_handle.cancel()
        self.open.set()

    def stall(self, seconds: float) -> None:
        """For ``seconds`` the server answers nothing and streams send nothing, heartbeats included; the
        replay goes on filling the buffer. A new stall replaces a running one."""
        if self._stall_handle is not None:
            self._stall_handle.cancel()
        self.open.clear()
        self._stall_handle = asyncio.get_running_loop().call_later(seconds, self.open.set)

    def disconnect_clients(self) -> int:
        """Cut every client connection (a network drop); returns how many were cut."""
        return self.server.disconnect_clients()

    def inject(self, shdr: str | Iterable[str]) -> list[Record]:
        """Apply SHDR lines now (their timestamps are replaced like the replay's); returns the observations
        they produced. For scripted condition sequences, messages, assets."""
        lines = shdr.splitlines() if isinstance(shdr, str) else shdr
        before = self.buffer.next_sequence
        buffer = self.buffer
        for line in read_shdr(lines, self._kind_of):
            self._apply(line)
        return list(buffer.scan(before, buffer.next_sequence)) if buffer is self.buffer else []

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` holds, checked after every change of the buffer (bound it with
        ``asyncio.timeout``)."""
        while not predicate():
            await self.changed()

    async def changed(self) -> None:
        """Return at the next change of the buffer (a replayed line, a restart, an injection)."""
        await self._changed.wait()

    # --- the replay ---

    def _kind_of(self, key: str) -> str | None:
        item = self._keys.get(key)
        if item is None:
            if key not in self._unknown:
                self._unknown.add(key)
                log.info("SHDR key %r is not in the device model; its values are skipped", key)
            return None
        return item.shdr_kind

    async def _replay(self) -> None:
        loop = asyncio.get_running_loop()
        speed = self.settings.speed
        target = loop.time()
        while True:
            for delay_us, line in self._steps:
                self._offset_us += delay_us
                if delay_us and math.isfinite(speed):
                    target += delay_us / 1e6 / speed
                    if (wait := target - loop.time()) > 0:
                        await asyncio.sleep(wait)
                else:
                    await asyncio.sleep(0)  # let clients be served between lines
                if not self._running.is_set():
                    await self._running.wait()
                    target = loop.time()
                self._apply(line)
                self.lines_replayed += 1
            self.loops += 1
            if not self.settings.loop:
                break
            self._offset_us += LOOP_GAP_US
        self.replay_done.set()
        log.info("MTConnect replay finished: %d lines, next sequence %d", self.lines_replayed,
                 self.buffer.next_sequence)

    def _stamp(self) -> int:
        if self.settings.timestamps == "wall":
            candidate = int(self._clock() * 1e6)
        else:
            candidate = self._origin_us + self._offset_us
        self._last_us = max(candidate, self._last_us + 1)
        return self._last_us

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _seed_unavailable(self) -> None:
        ts = self._stamp()
        for device in self.devices:
            for item in device.items:
                cond = _UNAVAILABLE_CONDITION if item.category == "CONDITION" else None
                self._add(Record(item, 0, ts, None, self.instance_id, condition=cond), dedupe=False)
        self._notify()

    def _add(self, rec: Record, *, dedupe: bool = True) -> None:
        if dedupe and self.settings.filter_duplicates and self.buffer.current.is_duplicate(rec):
            return
        rec = Record(rec.item, self.buffer.next_sequence, rec.timestamp_us, rec.value, self.instance_id,
                     rec.condition, rec.native_code, rec.asset_type)
        self.buffer.append(rec)
        if self.settings.record:
            self.produced.append(rec)

    def _apply(self, line: Line) -> None:
        self._line_ts = self._stamp()
        self._line_items.clear()
        for u in line.updates:
            if isinstance(u, ValueUpdate):
                item = self._keys[u.key]
                discrete = item.type == "MESSAGE"
                self._add(Record(item, 0, self._ts(item), u.value, 0, native_code=u.native_code), dedupe=not discrete)
            elif isinstance(u, ConditionUpdate):
                item = self._keys[u.key]
                level = u.level if u.level in ("NORMAL", "WARNING", "FAULT") else "UNAVAILABLE"
                cond = (level, u.native_code, u.native_severity, u.qualifier, u.message)
                self._add(Record(item, 0, self._ts(item), None if level == "UNAVAILABLE" else level, 0,
                                 condition=cond))
            else:
                self._apply_asset(u)
        self._notify()

    def _ts(self, item: Item) -> int:
        """The line's timestamp; a later one for an item the line already changed (two removed assets,
        a key written twice), so that no item has two observations at one time."""
        if item.id in self._line_items:
            self._line_ts = self._stamp()
            self._line_items.clear()
        self._line_items.add(item.id)
        return self._line_ts

    def _apply_asset(self, u: AssetUpdate | AssetRemove | AssetRemoveAll) -> None:
        device = self.devices[0]  # an adapter's assets belong to the device it feeds
        items = self._asset_items[device.uuid]
        if isinstance(u, AssetUpdate):
            ts = self._ts(items["ASSET_CHANGED"])
            self.assets.put(AssetRecord(u.asset_id, u.asset_type, device.uuid, ts, u.xml))
            self._add(Record(items["ASSET_CHANGED"], 0, ts, u.asset_id, 0, asset_type=u.asset_type), dedupe=False)
            return
        if isinstance(u, AssetRemove):
            targets = [a for a in [self.assets.get(u.asset_id)] if a is not None and not a.removed]
        else:
            targets = [a for a in self.assets.newest_first() if a.asset_type == u.asset_type and not a.removed]
        for a in targets:
            ts = self._ts(items["ASSET_REMOVED"])
            self.assets.put(AssetRecord(a.asset_id, a.asset_type, a.device_uuid, ts, a.xml, removed=True))
            self._add(Record(items["ASSET_REMOVED"], 0, ts, a.asset_id, 0, asset_type=a.asset_type), dedupe=False)


def _retime(lines: list[Line], max_gap: float) -> list[tuple[int, Line]]:
    """Each line with the pause before it, in microseconds of the recording (see the module doc)."""
    cap = int(max_gap * 1e6)
    out: list[tuple[int, Line]] = []
    mark: float | None = None  # the latest time seen in the current segment
    for line in lines:
        delay = 0
        if not line.is_asset:
            if mark is None or line.timestamp < mark - max(max_gap, 1.0):
                mark = line.timestamp  # the start, or a splice back in time: a new segment
            elif line.timestamp > mark:
                delay = min(int(round((line.timestamp - mark) * 1e6)), cap)
                mark = line.timestamp
        out.append((delay, line))
    return out
