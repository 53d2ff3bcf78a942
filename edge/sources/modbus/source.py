"""Modbus source: polls one device (TCP, or RTU on a shared serial line) and emits one frame per cycle.

Timing: cycles run on a fixed monotonic grid (``poll_interval``). A cycle that
overruns skips the ticks it missed (counted in ``health.detail["missed_cycles"]``)
and the next one starts at once, then the grid resumes: never a burst.

Reporting: a register without ``deadband`` is reported every cycle. With
``deadband = d`` a number is reported when it differs from the value last
reported by more than ``d`` (``deadband = 0``: whenever it changes). Every
value is reported in the first cycle after each (re)connect and again every
``heartbeat``, so a flat value is never silent for longer than that. A cycle in
which nothing is due sends no frame.

Failures: an unreachable or silent device is retried with jittered backoff and
reported DISCONNECTED; a block the device refuses (Modbus exception) makes the
source DEGRADED while the other values keep flowing (see ``poll``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from pydantic import ValidationError

from edge.sources.base import Backoff, FrameSink, Source, SourceState
from edge.sources.modbus.client import BusConflictError, BusLink, LinkError, TcpLink
from edge.sources.modbus.config import ModbusSourceConfig
from edge.sources.modbus.map import RegisterConfig, Value, build_tag
from edge.sources.modbus.poll import CycleResult, DevicePoller, Link
from shared.frame import TelemetryFrame

__all__ = ["ModbusSource", "make_link", "make_poller"]

log = logging.getLogger(__name__)


def make_link(config: ModbusSourceConfig) -> Link:
    if config.tcp is not None:
        return TcpLink(config.tcp, config.unit_id, config.timeout)
    assert config.rtu is not None
    return BusLink(config.rtu, config.unit_id, config.timeout)


def make_poller(config: ModbusSourceConfig, link: Link, *, keep_raw: bool = False) -> DevicePoller:
    """The poll cycle the source runs; the probe uses the same one (with the raw words kept)."""
    return DevicePoller(
        link,
        [build_tag(reg) for reg in config.registers],
        max_registers=config.max_registers_per_read,
        max_bits=config.max_bits_per_read,
        max_gap=config.max_gap,
        label=config.describe(),
        keep_raw=keep_raw,
    )


class _Reporter:
    """Decides which values go into a frame: deadbands and the heartbeat."""

    def __init__(self, registers: Sequence[RegisterConfig], heartbeat: float) -> None:
        self.deadband = {r.name: r.deadband for r in registers if r.deadband is not None}
        self.heartbeat = heartbeat
        self._last: dict[str, Value] = {}
        self._full_at = 0.0

    def reset(self) -> None:
        """After a reconnect every value is reported once."""
        self._last.clear()
        self._full_at = 0.0

    def select(self, values: dict[str, Value], now: float) -> dict[str, Value]:
        if not self.deadband:
            return values
        if now >= self._full_at:
            self._full_at = now + self.heartbeat
            self._last.update(values)
            return values
        out: dict[str, Value] = {}
        last, deadband = self._last, self.deadband
        for name, value in values.items():
            band = deadband.get(name)
            if band is None or name not in last:
                out[name] = value
                continue
            before = last[name]
            if isinstance(value, bool | str) or isinstance(before, bool | str):
                moved = value != before
            else:
                moved = abs(value - before) > band if band > 0 else value != before
            if moved:
                out[name] = value
        last.update(out)
        return out


class ModbusSource(Source):
    kind = "modbus"
    config: ModbusSourceConfig

    def __init__(self, config: ModbusSourceConfig, sink: FrameSink) -> None:
        super().__init__(config, sink)
        self._who = config.describe()
        self._link = make_link(config)
        self._poller = make_poller(config, self._link)
        self._reporter = _Reporter(config.registers, config.heartbeat)
        self.health.detail.update({
            "endpoint": self._link.where,
            "unit_id": config.unit_id,
            "blocks": len(self._poller.blocks),
            "requests_per_cycle": 0,
            "cycles": 0,
            "missed_cycles": 0,
            "late_cycles": 0,
            "failing_blocks": {},
            "invalid_values": {},
            "last_cycle_ms": None,
        })

    async def run(self) -> None:
        backoff = Backoff(initial=min(1.0, max(0.1, self.config.poll_interval)), maximum=60.0)
        connected_once = False
        try:
            while True:
                try:
                    await self._link.connect()
                    if connected_once:
                        self.health.reconnects += 1
                    connected_once = True
                    self._reporter.reset()
                    await self._poll(backoff)
                except LinkError as exc:
                    self.health.errors += 1
                    await self._link.close()
                    delay = backoff.next_delay()
                    # The delay is kept apart from the reason: an outage is logged once, not per attempt.
                    self.health.set_state(SourceState.DISCONNECTED, f"{self._who} {exc}", retry_in=delay)
                    await asyncio.sleep(delay)
        except BusConflictError as exc:
            self.health.set_state(SourceState.FAILED, str(exc))
            raise
        finally:
            await self._link.close()

    async def _poll(self, backoff: Backoff) -> None:
        """Poll on the grid until the link fails (raises LinkError)."""
        period = self.config.poll_interval
        detail = self.health.detail
        tick = time.monotonic()
        while True:
            started = time.monotonic()
            if started - tick > 0.1 * period:
                detail["late_cycles"] += 1
            ts = time.time()
            result = await self._poller.read_cycle()
            if result.ok_blocks:
                backoff.reset()
            await self._emit(ts, result, started)
            detail["last_cycle_ms"] = round((time.monotonic() - started) * 1000, 2)
            tick += period
            now = time.monotonic()
            if now > tick:
                missed = int((now - tick) // period)
                detail["missed_cycles"] += missed
                tick += missed * period
            await asyncio.sleep(max(0.0, tick - now))

    async def _emit(self, ts: float, result: CycleResult, now: float) -> None:
        detail = self.health.detail
        detail["cycles"] += 1
        detail["requests_per_cycle"] = result.requests
        detail["blocks"] = len(self._poller.blocks)
        detail["failing_blocks"] = result.failing
        self._note_invalid(result.invalid)
        if result.failing:
            first, reason = next(iter(result.failing.items()))
            total = len(self._poller.blocks)
            self.health.set_state(
                SourceState.DEGRADED,
                f"{self._who}: {len(result.failing)} of {total} reads failing; {first}: {reason}",
            )
        else:
            self.health.set_state(SourceState.CONNECTED)
        sensors = self._reporter.select(result.values, now)
        if not sensors:
            return
        try:
            frame = TelemetryFrame(ts=ts, device_id=self.config.frame_device_id, sensors=sensors)
        except ValidationError as exc:  # bounded by the config checks; kept as a guard, never a crash
            await self.sink.reject(self.name, f"{self._who}: frame refused: {exc.errors()[0]['msg']}")
            return
        await self.sink.put([frame])
        self.health.record_success(1, len(sensors))

    def _note_invalid(self, invalid: dict[str, str]) -> None:
        known: dict[str, str] = self.health.detail["invalid_values"]
        for name, reason in invalid.items():
            if known.get(name) != reason:
                log.warning("%s: value %r %s; it is left out of the frame", self._who, name, reason)
        self.health.detail["invalid_values"] = invalid
