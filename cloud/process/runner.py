"""The engine at work: define and compile bindings, catch them up live after a batch, replay a range.

One ``Engine`` per process. ``notify(devices)`` (called by the sync route once
a batch is stored) wakes one background task, which catches up the enabled
bindings of those devices off the request path: it reads the readings newer
than each binding's watermark from storage, runs ``engine.step`` and stores
the step (``Storage.advance_binding``). ``replay`` runs the same step over a
stored range from an empty state and stores nothing (``twincloud process test``).
A step (formulas, model solves) runs in a worker thread, never on the event loop: live ones in the engine's
own thread, so a busy shared pool (optimizations, uploads) never holds them up.
Bindings of a device run in the order their outputs feed each other, so a
formula over another binding's output sees it in the same pass.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Collection, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from cloud.config import ProcessConfig
from cloud.live import LiveHub
from cloud.process.bindings import BindingError, BindingSpec, Compiled, FormulaSpec, compile_binding
from cloud.process.engine import DerivedPoint, Limits, Reading, now_us, seed, step
from cloud.process.registry import ModelRegistry
from cloud.storage.base import Storage, StorageError, UnknownDevice
from cloud.storage.derived import BindingRow, DerivedWrite, UnknownBinding
from shared.errors import InputError
from shared.frame import TelemetryFrame

__all__ = ["Engine", "downstream"]

log = logging.getLogger(__name__)
_FAR = 2**62
OWNED_TTL_S = 2.0  # how long sync trusts its list of the fields bindings own (a binding defined elsewhere)
T = TypeVar("T")


def _outputs(spec: dict[str, Any], name: str, models: ModelRegistry) -> set[str]:
    inner = spec.get("spec", {})
    if inner.get("kind") == "formula":
        return {inner.get("output", "")}
    if inner.get("outputs"):
        return set(inner["outputs"].values())
    try:
        return {f"{name}.{o}" for o in models.get(inner.get("model", "")).outputs}
    except InputError:
        return set()


class Engine:
    def __init__(self, storage: Storage, config: ProcessConfig, hub: LiveHub | None = None) -> None:
        self.storage = storage
        self.config = config
        self.hub = hub
        self.models = ModelRegistry(config.models)
        self.limits = Limits(config.max_state_points)
        self._pending: set[str] = set()
        self._wake = asyncio.Event()
        self._compiled: dict[tuple[int, str], Compiled] = {}
        self._owned: tuple[float, dict[str, dict[str, str]]] | None = None
        # The live steps' own thread: the shared default pool (optimizations, uploads, replays) can be busy for a
        # minute, and live virtual sensors must not wait for it.
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="virtual-sensors")

    async def _live(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, functools.partial(fn, *args))

    # --- defining --------------------------------------------------------------------
    async def _fields(self, device: str, rows: list[BindingRow], skip: str) -> tuple[set[str], set[str]]:
        """The device's telemetry fields, and the fields the other bindings of it derive."""
        found = await self.storage.lookup(device)
        if found is None:
            raise UnknownDevice(f"device {device!r} has sent no data", "device")
        derived_all: set[str] = set()
        derived_others: set[str] = set()
        for row in rows:
            outs = _outputs(row.spec, row.name, self.models)
            derived_all |= outs
            if row.name != skip:
                derived_others |= outs
        fields = {s.field for s in found[1]} - derived_all
        return fields, derived_others

    async def compile(self, spec: BindingSpec, rows: list[BindingRow] | None = None, *,
                      check_loops: bool = True, live: bool = False) -> Compiled:
        """Check and compile ``spec``; a loop through other bindings is refused when defining (``check_loops``).

        Running bindings are not re-checked for loops (one found then would stop every binding of the device):
        ``downstream`` keeps a binding from reading what its outputs feed instead.
        """
        if rows is None:
            rows = await self.storage.bindings(spec.device)
        fields, others = await self._fields(spec.device, rows, spec.name)
        if live:
            compiled = await self._live(compile_binding, spec, fields, others, self.models)
        else:
            compiled = await asyncio.to_thread(compile_binding, spec, fields, others, self.models)
        if not check_loops:
            return compiled
        upstream = {o: r.name for r in rows if r.name != spec.name for o in _outputs(r.spec, r.name, self.models)}
        mine = set(compiled.outputs.values())
        for sensor in compiled.sensors:  # a cycle through another binding would feed this one its own output
            other = upstream.get(sensor)
            if other is not None and self._reads(rows, other, mine, set()):
                raise BindingError(f"{sensor!r} is derived by binding {other!r}, which reads this binding's "
                                   "outputs: a loop", "spec")
        return compiled

    def _reads(self, rows: list[BindingRow], name: str, targets: set[str], seen: set[str]) -> bool:
        row = next((r for r in rows if r.name == name), None)
        if row is None or name in seen:
            return False
        seen.add(name)
        inner = row.spec.get("spec", {})
        reads = {i["sensor"] for i in inner.get("inputs", {}).values()}
        if inner.get("kind") == "formula":
            from cloud.process.formulas import names_of
            reads |= names_of(inner.get("expression", "0"))
        if reads & targets:
            return True
        producers = {o: r.name for r in rows for o in _outputs(r.spec, r.name, self.models)}
        return any(self._reads(rows, producers[s], targets, seen) for s in reads if s in producers)

    async def define(self, spec: BindingSpec, by: str, *, replace: bool = False) -> BindingRow:
        await self.compile(spec)
        row = await self.storage.put_binding(spec.name, spec.device, spec.model_dump(mode="json"), by, now_us(),
                                             replace=replace, max_per_device=self.config.max_bindings_per_device)
        self._owned = None
        self.notify([spec.device])
        return row

    async def owned(self) -> dict[str, dict[str, str]]:
        """device -> field -> the binding deriving it (``cloud.process.ownership``), at most ``OWNED_TTL_S`` old:
        a binding defined through another worker or replica is seen here within that time."""
        now = time.monotonic()
        if self._owned is None or now - self._owned[0] > OWNED_TTL_S:
            owned: dict[str, dict[str, str]] = {}
            for row in await self.storage.bindings(with_state=False):  # on the sync path: no states read
                for field in _outputs(row.spec, row.name, self.models):
                    owned.setdefault(row.device, {})[field] = row.name
            self._owned = (now, owned)
        return self._owned[1]

    async def binding(self, name: str) -> BindingRow:
        for row in await self.storage.bindings():
            if row.name == name:
                return row
        raise UnknownBinding(f"no binding named {name!r}", "name")

    # --- live ------------------------------------------------------------------------
    def notify(self, devices: Iterable[str]) -> None:
        """Devices with new readings: their bindings are caught up by ``run`` (never on the caller's path)."""
        self._pending.update(devices)
        if self._pending:
            self._wake.set()

    async def run(self) -> None:
        """The background task: catch up the devices ``notify`` names, until cancelled."""
        try:
            await self._catch_up_forever()
        finally:
            self._pool.shutdown(wait=False, cancel_futures=True)

    async def _catch_up_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            devices, self._pending = self._pending, set()
            for device in sorted(devices):
                try:
                    await self.catch_up(device)
                except StorageError as exc:
                    log.warning("virtual sensors of device %s wait: %s", device, exc)
                except InputError as exc:
                    log.warning("virtual sensors of device %s cannot run: %s", device, exc)
                except Exception:  # noqa: BLE001 - one device's bindings must never stop every other device's
                    log.exception("virtual sensors of device %s failed; they are tried again with its next batch",
                                  device)

    async def catch_up(self, device: str) -> int:
        """Run the device's enabled bindings over their new readings; the number of points derived."""
        rows = [r for r in await self.storage.bindings(device) if r.enabled]
        if not rows:
            return 0
        total = 0
        ordered = self._ordered(rows)
        for k, row in enumerate(ordered):
            total += await self._catch_up_one(row, rows, self.never_read(row, ordered[:k], rows))
        return total

    def _ordered(self, rows: list[BindingRow]) -> list[BindingRow]:
        """Producers before the bindings that read their outputs."""
        outs = {r.name: _outputs(r.spec, r.name, self.models) for r in rows}
        done: list[BindingRow] = []
        left = sorted(rows, key=lambda r: r.name)
        while left:
            made = {o for r in left for o in outs[r.name]}
            ready = [r for r in left if not (_reads_of(r) & (made - outs[r.name]))] or left[:1]
            done += ready
            left = [r for r in left if r not in ready]
        return done

    async def _compiled_for(self, row: BindingRow, rows: list[BindingRow]) -> Compiled:
        key = (row.id, str(row.spec))
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = await self.compile(BindingSpec.model_validate(row.spec), rows, check_loops=False, live=True)
            if len(self._compiled) > 1000:
                self._compiled.clear()
            self._compiled[key] = compiled
        return compiled

    def never_read(self, row: BindingRow, before: list[BindingRow], rows: list[BindingRow]) -> set[str]:
        """The fields ``row`` must not read: its own outputs and what they feed (``downstream``), except the
        outputs of the bindings that run before it. In a chain without a loop it reads none of them anyway; in a
        loop (defined anyway: see ``downstream``) this cuts it once, at the edge that leads back to the binding
        run first."""
        mine = _outputs(row.spec, row.name, self.models)
        earlier = {o for r in before for o in _outputs(r.spec, r.name, self.models)}
        return downstream(mine, [r for r in rows if r.name != row.name], self.models) - (earlier - mine)

    async def _catch_up_one(self, row: BindingRow, rows: list[BindingRow], never: set[str]) -> int:
        total = 0
        while True:
            compiled = await self._compiled_for(row, rows)
            after = row.watermark if row.watermark is not None else -1
            readings = await self.readings(compiled, after, _FAR, self.config.catch_up_readings, never)
            if not readings:
                return total
            # a step runs models (a solve per triggering reading): CPU work, kept off the event loop
            state, points = await self._live(step, compiled, {**row.state, "watermark": after}, readings,
                                             self.limits)
            t = compiled.tags
            write = DerivedWrite(row.id, row.rev, row.device,
                                 [(p.field, p.ts, p.value, p.flag, p.watermark) for p in points],
                                 (t.model, t.version, t.param_hash, t.backend, t.rtol, t.atol), state,
                                 state.get("watermark"), now_us())
            stored = await self.storage.advance_binding(write)
            fresh = next((r for r in await self.storage.bindings(row.device) if r.id == row.id), None)
            if fresh is None or not fresh.enabled:
                return total
            row = fresh
            if stored:
                total += len(points)
                self._publish(row.device, points)

    def _publish(self, device: str, points: list[DerivedPoint]) -> None:
        if self.hub is None:
            return
        frames = [TelemetryFrame.model_construct(ts=p.ts / 1e6, device_id=device, sensors={p.field: p.value},
                                                 metrics={}, status="ok") for p in points if p.value is not None]
        self.hub.publish(frames)

    # --- reading and replaying ---------------------------------------------------------
    async def readings(self, c: Compiled, after: int, stop: int, limit: int, never: Collection[str]) -> list[Reading]:
        """The numeric readings of the binding's sensors with after < ts < stop, oldest first, at most about
        ``limit`` (cut at a timestamp, so that no sensor's readings of one instant are split). The fields in
        ``never`` (``never_read``: its own outputs and what they feed) are never read."""
        found = await self.storage.lookup(c.spec.device)
        if found is None:
            return []
        # Each series is scanned on its own, so a batch committing between two scans would be seen by one and
        # not the other, and half of its instant would count as late. Only what the lookup saw is read: every
        # series' newest timestamp is stored with its batch, so all readings up to the newest are visible.
        newest = max((s.last_ts for s in found[1] if s.last_ts is not None), default=None)
        if newest is None:
            return []
        stop = min(stop, newest + 1)
        never = set(never)
        out: list[Reading] = []
        cut = stop
        for info in found[1]:
            if not (c.all_sensors or info.field in c.sensors) or info.field in never or info.kind == "text":
                continue
            rows = await self.storage.scan(info.id, after + 1, stop, limit)
            if len(rows) >= limit:
                cut = min(cut, rows[-1][0])
            out += [Reading(ts, info.field, float(v)) for ts, v in rows if isinstance(v, int | float)]
        if cut < stop:  # one instant is never split between two steps
            out = [r for r in out if r.ts < cut] or [r for r in out if r.ts <= cut]
        out.sort(key=lambda r: (r.ts, r.sensor))
        return out

    async def _held_before(self, c: Compiled, before: int, never: Collection[str]) -> list[Reading]:
        """The newest numeric reading before ``before`` of each input of ``c`` (and of its start sensor)."""
        found = await self.storage.lookup(c.spec.device)
        if found is None:
            return []
        inner = c.spec.spec
        wanted = set(c.names.values()) | ({inner.start_on} if not isinstance(inner, FormulaSpec) else set())
        out: list[Reading] = []
        for info in found[1]:
            if info.field not in wanted or info.field in never or info.kind == "text":
                continue

            def build(param: Callable[[int], str], series: int = info.id) -> tuple[str, list[Any]]:
                return (f"SELECT ts, value FROM samples WHERE series_id = {param(1)} AND ts < {param(2)} "
                        "AND value IS NOT NULL ORDER BY ts DESC LIMIT 1", [series, before])
            out += [Reading(int(ts), info.field, float(v)) for ts, v in await self.storage.select(build)]
        return out

    async def replay(self, spec: BindingSpec, start: int, stop: int, max_points: int) -> list[DerivedPoint]:
        """Run a binding over the stored readings of [start, stop) from an empty state; store nothing.

        It reads from before ``start`` what a point at ``start`` depends on: a window's width, and for a
        model ``max_run_s`` (so a range starting mid-shot finds the shot's start, and reproduces its points);
        and before that, each input's newest reading (``engine.seed``: the values a live run holds)."""
        compiled = await self.compile(spec)
        mine = BindingRow(0, spec.name, spec.device, spec.model_dump(mode="json"), True, 0, None, {}, 0, 0, None,
                          "", 0, 0)
        rows = [r for r in await self.storage.bindings(spec.device) if r.name != spec.name] + [mine]
        ordered = self._ordered(rows)
        never = self.never_read(mine, ordered[:next(k for k, r in enumerate(ordered) if r is mine)], rows)
        inner = spec.spec
        if isinstance(inner, FormulaSpec):  # a window open at start (or closed there) began a width before it
            lookback = round(inner.window.seconds * 1e6) if inner.window is not None else 0
        else:  # a run open at start opened at most max_run_s before it: from its shot start, solved from start
            lookback = round(inner.max_run_s * 1e6)
        points: list[DerivedPoint] = []
        after = start - lookback - 1
        state = seed(compiled, await self._held_before(compiled, after + 1, never))
        while len(points) < max_points:
            readings = await self.readings(compiled, after, stop, self.config.catch_up_readings, never)
            if not readings:
                break
            state, found = await asyncio.to_thread(step, compiled, state, readings, self.limits, start)
            points += [p for p in found if p.ts >= start]
            after = state["watermark"]
        return points[:max_points]


def downstream(outputs: set[str], others: list[BindingRow], models: ModelRegistry) -> set[str]:
    """The fields a binding's ``outputs`` reach: those outputs, and the outputs of every other binding that
    reads one of them, directly or through a chain. A binding never reads these (the explicit guard against
    self-triggering: a loop that got defined anyway, say by two replicas defining its halves at once, is
    cut here instead of feeding a binding its own results)."""
    reached = set(outputs)
    made = {r.name: _outputs(r.spec, r.name, models) for r in others}
    grew = True
    while grew:
        grew = False
        for r in others:
            every = r.spec.get("spec", {}).get("trigger") == ["*"]  # reads every sensor of the device
            if not made[r.name] <= reached and (every or _reads_of(r) & reached):
                reached |= made[r.name]
                grew = True
    return reached


def _reads_of(row: BindingRow) -> set[str]:
    inner = row.spec.get("spec", {})
    reads = {i["sensor"] for i in inner.get("inputs", {}).values()}
    if inner.get("kind") == "formula":
        from cloud.process.formulas import names_of
        try:
            reads |= names_of(inner.get("expression", "0"))
        except SyntaxError:
            pass
    if inner.get("kind") == "model" and inner.get("start_on"):
        reads.add(inner["start_on"])
    if inner.get("kind") == "formula":  # its trigger sensors ('*' is handled by the caller)
        reads |= set(inner.get("trigger") or ())
    return reads
