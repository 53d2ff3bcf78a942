"""The inference engine: which model scores which device, loading and swapping models, and scoring each batch.

**Rules.** A model is assigned to one device, to every device of this edge, or to the fleet; a device is scored by
its most specific rule (device, then edge, then fleet). Rules come from the cloud (``set_assignments``, called by
the downloader with verified files) and from the config (``[[inference.local]]``); at the same scope a local rule
wins.

**Loading.** A package is read, its sha256 compared with the assignment's, its schema and card read
(``shared.modelpackage``), a session opened with a bounded thread count, its input and outputs checked against
the schema and its test vectors run (``shared.modelrun``). A package that fails any step is rejected with the
reason and never reaches a device. A model that loaded is checked against each device (its sensors, and their units
where the source config states them) when the device's first frame after the change arrives; a device that lacks a
sensor rejects the model and is checked again when it reports new sensors.

**Swaps** happen between two batches: ``enrich`` holds the engine for one batch, and a new assignment or a
rollback takes effect at the next. Whatever is rejected, the model a device had keeps serving it. The model a
device had before its current one is kept for ``rollback``, which pins it until the device's assignment changes.

**Failures.** A run that raises, or gives a non-finite output, counts against the devices in it; after
``failures_before_disable`` in a row the model is taken out of that device's path (state "failed") and its frames
are stored unscored until another model is assigned or rolled back to.

Scoring runs on one thread owned by the engine, one ``session.run`` per model per batch; a run expected to take
under a millisecond (judged from the model's previous run) is done on the event loop instead (``INLINE_RUN``).
With no model assigned, ``enrich`` returns at once, and numpy and onnxruntime are never imported.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from edge import heap
from edge.inference.alerts import AlertPolicy, AlertSettings
from edge.inference.config import InferenceConfig
from edge.inference.devices import DeviceState, Rejection, Rule, rule_id
from edge.inference.stream import InputStream
from edge.scored import ScoredFrames
from shared.batch import AlertEvent, ModelReport
from shared.errors import InputError
from shared.frame import TelemetryFrame

if TYPE_CHECKING:
    from edge.inference.runtime import DeviceRows, LoadedModel
    from shared.modelpackage import ModelAssignment

__all__ = ["MAX_DEVICES", "InferenceEngine", "LocalAssignment"]

log = logging.getLogger(__name__)

T = TypeVar("T")
MAX_DEVICES = 1024  # devices with a model on one edge (what a health report carries)
MAX_REJECTED = 32  # rejected packages remembered for `model status`
# Memory stays bounded whatever devices send (a device that invents sensor names, a flood of device ids):
MAX_CARRIED = 512  # values carried forward per device with a model (beyond: those the model reads and the frame's)
MAX_REMEMBERED = 1024  # devices without a model whose last values are kept, for a model assigned later ...
MAX_REMEMBERED_VALUES = 128  # ... each with at most this many (beyond: the last frame's alone)
SCORE, CLASS, CONFIDENCE = "model.score", "model.class", "model.confidence"
# A batch whose model run is expected to take at most this long (from the model's last run) is scored on the event
# loop: for a small model, the hop to the scoring thread and back costs more CPU than the run itself.
INLINE_RUN = 0.001


@dataclass(frozen=True, slots=True)
class LocalAssignment:
    """An assignment from the cloud and the verified package file it names."""

    assignment: ModelAssignment
    path: Path


class InferenceEngine:
    """Scores frames with the models assigned to their devices; see the module docstring."""

    def __init__(self, config: InferenceConfig, *, edge_id: str,
                 sensor_units: Mapping[str, Mapping[str, str | None]] | None = None) -> None:
        self.config = config
        self.edge_id = edge_id
        self._units = {device: dict(units) for device, units in (sensor_units or {}).items()}
        self._settings = AlertSettings(config.alerts.min_duration, config.alerts.clear_ratio,
                                       config.alerts.clear_duration)
        self._local: list[Rule] = []
        self._cloud: list[Rule] = []
        self._by_device: dict[str, Rule] = {}
        self._edge_rule: Rule | None = None
        self._fleet_rule: Rule | None = None
        self._generation = 0
        self._models: dict[str, LoadedModel] = {}  # by rule key (sha256)
        self._rejected: dict[str, Rejection] = {}  # packages that failed to load, by rule key
        self._device_rejections: deque[Rejection] = deque(maxlen=MAX_REJECTED)
        self._devices: dict[str, DeviceState] = {}
        self._last: dict[str, dict[str, Any]] = {}  # last values of devices without a model (see _remember)
        self._pending: list[AlertEvent] = []  # alerts closed outside a batch (rollback), sent with the next one
        self._lock = asyncio.Lock()  # one batch, or one swap, at a time
        self._loading = asyncio.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self.unscored_devices = 0  # frames of devices past MAX_DEVICES
        # The edge's event log (``EventRecorder.record``): swaps, rejections, failures, drift changes.
        self.events: Callable[..., None] | None = None
        self._drift_levels: dict[str, str] = {}  # device -> the drift level last told

    def _tell(self, kind: str, level: str, message: str, **about: Any) -> None:
        if self.events is not None:
            self.events(kind, level, message, **about)

    # --- rules and loading ---------------------------------------------------

    @property
    def idle(self) -> bool:
        """No rule and no model anywhere: ``enrich`` only remembers the last values."""
        return not (self._local or self._cloud or self._devices or self._pending)

    async def start(self) -> None:
        """Load the config's local packages (a bad one is rejected and reported; never fatal)."""
        rules = []
        loaded: dict[tuple[Path, int], LoadedModel | None] = {}  # one package for many devices is loaded once
        for local in self.config.local:
            scope, target = ("device", local.device) if local.device is not None else ("edge", self.edge_id)
            rule = Rule(scope, target, local.package.name, local.version, None, local.package, "local")
            if (local.package, local.version) not in loaded:
                loaded[local.package, local.version] = await self._load(rule)
            model = loaded[local.package, local.version]
            if model is not None:
                rule = Rule(scope, target, model.name, local.version, model.sha256, local.package, "local")
                self._models[rule.key] = model
            rules.append(rule)
        self._local = rules
        self._reindex()

    async def set_assignments(self, assignments: Sequence[LocalAssignment]) -> None:
        """The cloud's rules for this edge, each with its verified package file. Loads what is new."""
        rules = [Rule(a.assignment.scope, a.assignment.target, a.assignment.model, a.assignment.version,
                       a.assignment.sha256, a.path, "cloud") for a in assignments]
        async with self._loading:
            for rule in rules:
                if rule.key not in self._models and rule.key not in self._rejected:
                    model = await self._load(rule)
                    if model is not None:
                        self._models[rule.key] = model
            self._cloud = rules
            self._reindex()

    async def _load(self, rule: Rule) -> LoadedModel | None:
        try:
            from edge.inference.runtime import load_model

            # not on the scoring thread: a large model's load must not hold up the batches being scored
            model = await asyncio.to_thread(lambda: load_model(
                rule.path, sha256=rule.sha256, threads=self.config.threads, version=rule.version,
                name=None if rule.origin == "local" else rule.model,
            ))
        except InputError as exc:
            self._reject(rule, str(exc))
            return None
        except Exception as exc:  # noqa: BLE001 - whatever a package does to the loader, the edge stays up
            log.debug("loading %s failed", rule.shown(), exc_info=True)
            self._reject(rule, f"the package cannot be used: {type(exc).__name__}: {str(exc)[:300]}")
            return None
        log.info("model %s loaded from %s (sha256 %s…)", rule.shown(), rule.path, model.sha256[:12])
        heap.settle()  # the model and what it imported live as long as it serves (edge.heap)
        return model

    def _reject(self, rule: Rule, reason: str) -> None:
        log.warning("model %s (%s) rejected: %s", rule.shown(), rule.path, reason)
        self._tell("model_rejected", "operator", f"model {rule.shown()} was rejected: {reason}",
                   details={"model": rule.model, "version": rule.version, "sha256": rule.sha256,
                            "path": str(rule.path)}, subject=f"model\n{rule.key}")
        self._rejected[rule.key] = Rejection(rule.model, rule.version, rule.sha256, reason, time.time())
        while len(self._rejected) > MAX_REJECTED:
            del self._rejected[next(iter(self._rejected))]

    def _reindex(self) -> None:
        by_device: dict[str, Rule] = {}
        edge = fleet = None
        for rule in [*self._local, *self._cloud]:  # local first: it wins at its scope
            if rule.scope == "device" and rule.target is not None:
                by_device.setdefault(rule.target, rule)
            elif rule.scope == "edge" and rule.target == self.edge_id:
                edge = edge or rule
            elif rule.scope == "fleet":
                fleet = fleet or rule
        self._by_device, self._edge_rule, self._fleet_rule = by_device, edge, fleet
        self._generation += 1
        wanted = {r.key for r in (*self._local, *self._cloud)}
        held = {id(m) for d in self._devices.values() for m in (d.model, d.previous) if m is not None}
        for key in [k for k, m in self._models.items() if k not in wanted and id(m) not in held]:
            del self._models[key]

    def _resolve(self, device_id: str) -> Rule | None:
        return self._by_device.get(device_id) or self._edge_rule or self._fleet_rule

    async def _run(self, call: Callable[[], T]) -> T:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    # --- per device ----------------------------------------------------------

    def _device(self, device_id: str) -> DeviceState | None:
        device = self._devices.get(device_id)
        if device is not None:
            return device
        if self._resolve(device_id) is None:
            return None
        if len(self._devices) >= MAX_DEVICES:
            if not self.unscored_devices:
                log.warning("more than %d devices with a model: device %s and later ones are stored unscored",
                            MAX_DEVICES, device_id)
            self.unscored_devices += 1
            return None
        device = self._devices[device_id] = DeviceState(device_id, self._units.get(device_id, {}),
                                                    values=self._last.pop(device_id, {}))
        return device

    def _remember(self, frame: TelemetryFrame) -> None:
        """The last values of a device without a model: a model assigned later scores its next frame at once,
        even if its deadbanded sensors were last reported before (they come again only with the heartbeat)."""
        values = self._last.get(frame.device_id)
        if values is None:
            if len(self._last) >= MAX_REMEMBERED:
                return
            values = self._last[frame.device_id] = {}
        values.update(frame.sensors)
        if len(values) > MAX_REMEMBERED_VALUES:
            self._last[frame.device_id] = dict(list(frame.sensors.items())[:MAX_REMEMBERED_VALUES])

    def _apply(self, device: DeviceState, alerts: list[AlertEvent]) -> None:
        """Bring the device to its current rule (between two batches)."""
        device.generation = self._generation
        rule = self._resolve(device.id)
        if device.pinned:
            if rule_id(rule) == device.pinned_to:
                return
            device.pinned, device.pinned_to = False, None
        device.waiting = None
        if rule is None:
            device.rule = None
            if device.model is not None:
                self._retire(device, "no model is assigned to the device any more", alerts)
            else:
                device.state, device.message = None, ""
            return
        device.rule = rule
        model = self._models.get(rule.key)
        if model is None:
            rejection = self._rejected.get(rule.key)
            self._refused(device, rule, rejection.reason if rejection else "not loaded")
            return
        if model is device.model:
            return  # the same package again (every poll brings the list): a failed model stays out
        self._check_and_swap(device, rule, model, alerts)

    def _forget(self, device: DeviceState, frame: TelemetryFrame) -> None:
        """Keep the last values of the sensors a model reads, and this frame's; forget the rest."""
        keep = set(frame.sensors)
        for model in (device.model, self._models.get(device.waiting.key) if device.waiting else None):
            if model is not None:
                keep.update(model.schema.sensor_names)
        device.values = {name: value for name, value in device.values.items() if name in keep}
        device.checked_sensors = len(device.values)

    def _check_and_swap(self, device: DeviceState, rule: Rule, model: LoadedModel, alerts: list[AlertEvent]) -> None:
        from shared.modelschema import check_sensors

        known: dict[str, str | None] = {name: None for name in device.values}
        known.update(device.units)
        device.checked_sensors = len(device.values)
        try:
            check_sensors(model.schema, known)
        except InputError as exc:
            device.waiting = rule
            if not any(r.device == device.id and r.sha256 == model.sha256 and r.reason == str(exc)
                       for r in self._device_rejections):
                self._device_rejections.append(Rejection(rule.model, rule.version, model.sha256, str(exc),
                                                          time.time(), device.id))
            self._refused(device, rule, f"does not fit the device: {exc} (checked again when the device "
                          "reports new sensors)")
            return
        self._swap(device, model, alerts, f"replaced by {model.name} v{model.version}")

    def _refused(self, device: DeviceState, rule: Rule, reason: str) -> None:
        keeps = (f"; {device.model.name} v{device.model.version} keeps serving"
                 if device.model is not None and device.state == "serving" else "")
        message = f"{rule.shown()} rejected: {reason}{keeps}"
        if message != device.message:
            log.warning("device %s: %s", device.id, message)
            self._tell("model_rejected", "operator", f"{device.id}: {message}", device=device.id,
                       details={"model": rule.model, "version": rule.version})
        device.message = message
        if device.model is None:
            device.state = "rejected"

    def _swap(self, device: DeviceState, model: LoadedModel, alerts: list[AlertEvent], why: str) -> None:
        from edge.inference.drift import DriftStats

        self._close_alert(device, why, alerts)
        if device.model is not None and device.model is not model:
            device.previous = device.model
        device.model, device.state, device.message, device.failures = model, "serving", "", 0
        schema = model.schema
        window = schema.window
        device.stream = InputStream(
            schema.sensor_names, window=window.length if window else 1, step=window.step if window else 1,
            check_gap=model.gap_check() if window else None,
        )
        device.alerts = (AlertPolicy(device.id, model.name, model.version, schema.threshold, self._settings)
                         if schema.kind == "anomaly" and schema.threshold is not None else None)
        drift = self.config.drift
        device.drift = (DriftStats(model.drift_columns, window_rows=drift.window_rows, min_rows=drift.min_rows)
                        if model.drift_columns else None)
        log.info("device %s: scored by %s v%d (sha256 %s…)", device.id, model.name, model.version, model.sha256[:12])
        self._drift_levels.pop(device.id, None)
        told = f"{device.id} is now scored by {model.name} v{model.version}"
        self._tell("model_swapped", "operator", f"{told} ({why})" if device.previous is not None else told,
                   device=device.id, details={"model": model.name, "version": model.version, "sha256": model.sha256})

    def _retire(self, device: DeviceState, why: str, alerts: list[AlertEvent]) -> None:
        self._close_alert(device, why, alerts)
        device.previous, device.model, device.state, device.message = device.model, None, None, why
        device.stream = device.alerts = device.drift = None

    @staticmethod
    def _close_alert(device: DeviceState, why: str, alerts: list[AlertEvent]) -> None:
        if device.alerts is not None and (event := device.alerts.close(why)) is not None:
            alerts.append(event)

    def _failed(self, device: DeviceState, reason: str, alerts: list[AlertEvent]) -> None:
        device.failures += 1
        if device.failures < self.config.failures_before_disable or device.model is None:
            log.debug("device %s: model run failed (%d in a row): %s", device.id, device.failures, reason)
            return
        model = device.model
        device.state = "failed"
        device.message = (f"{model.name} v{model.version} failed {device.failures} runs in a row and was taken out "
                          f"of the path; frames are stored unscored until another model is assigned or rolled back "
                          f"to. Last error: {reason}")
        log.warning("device %s: %s", device.id, device.message)
        self._tell("model_failed", "operator", f"{device.id}: {device.message}", device=device.id,
                   details={"model": model.name, "version": model.version, "error": reason})
        self._close_alert(device, "the model failed and was taken out of the path", alerts)

    async def rollback(self, device_id: str) -> dict[str, Any]:
        """Serve the device's previous model again, pinned until its assignment changes."""
        async with self._lock:
            device = self._devices.get(device_id)
            if device is None or device.previous is None:
                raise InputError(f"device {device_id!r} has no previous model to roll back to")
            current, target = device.model, device.previous
            self._swap(device, target, self._pending, f"rolled back to {target.name} v{target.version}")
            device.previous = current
            device.pinned, device.pinned_to = True, rule_id(self._resolve(device.id))
            device.generation = self._generation
            log.warning("device %s: rolled back to %s v%d (pinned until its assignment changes)",
                        device.id, target.name, target.version)
            return device.status()

    # --- the data path -------------------------------------------------------

    async def enrich(self, frames: Sequence[TelemetryFrame]) -> tuple[Sequence[TelemetryFrame], list[AlertEvent]]:
        """The frames with their scores (``model.score``, or ``model.class`` and ``model.confidence``), and the
        alert events they raised or cleared. Called by the store writer on each batch before it is written.

        The scores are kept beside the frames (``edge.scored.ScoredFrames``): the store merges them into the
        encoded frames, and a frame read from the result carries them."""
        if self.idle:
            for frame in frames:
                self._remember(frame)
            return frames, []
        async with self._lock:
            alerts, self._pending = self._pending, []
            try:
                return await self._enrich(frames, alerts)
            except BaseException:
                # Scoring broke or was cancelled: the events raised so far go with the next batch, since the
                # alert policies already count them as sent.
                self._pending = alerts + self._pending
                raise

    async def _enrich(self, frames: Sequence[TelemetryFrame],
                      alerts: list[AlertEvent]) -> tuple[ScoredFrames, list[AlertEvent]]:
        """``enrich`` under the lock; events are added to ``alerts`` as they are raised."""
        out = ScoredFrames(frames)
        # (device, its stream, its model) with rows pushed in this batch; a device's model can change mid-batch
        # (it was waiting for a sensor that arrives): its earlier rows still go to the model that read them
        pending: list[tuple[DeviceState, InputStream, LoadedModel]] = []
        devices, generation = self._devices, self._generation
        index, count = 0, len(frames)
        try:
            while index < count:
                frame = frames[index]
                device = devices.get(frame.device_id) or self._device(frame.device_id)
                if device is None:
                    self._remember(frame)
                    index += 1
                    continue
                values = device.values
                values.update(frame.sensors)
                if len(values) > MAX_CARRIED:
                    self._forget(device, frame)
                    values = device.values
                if device.generation != generation or (
                        device.waiting is not None and len(values) > device.checked_sensors):
                    self._apply(device, alerts)
                stream = device.stream
                if stream is None or device.state != "serving":
                    index += 1
                    continue
                fresh = not stream.pending
                if (stream.window == 1 and device.waiting is None and index + 1 < count
                        and frames[index + 1].device_id == frame.device_id):
                    # A run of the device's frames (an MQTT message of many) goes through the stream in one call,
                    # up to a frame that would bring too many values: that one comes back here.
                    index = stream.push_run(frames, index, values, MAX_CARRIED)
                else:
                    stream.push(index, frame.ts, values)
                    index += 1
                if fresh and stream.pending:
                    assert device.model is not None
                    pending.append((device, stream, device.model))
            jobs: dict[int, tuple[LoadedModel, list[tuple[DeviceState, InputStream]]]] = {}
            for device, stream, model in pending:
                jobs.setdefault(id(model), (model, []))[1].append((device, stream))
            for model, streams in jobs.values():
                await self._score(model, streams, frames, out, alerts)
        finally:
            for _, stream, _ in pending:
                stream.discard()
        return out, alerts

    async def _score(self, model: LoadedModel, streams: list[tuple[DeviceState, InputStream]],
                     frames: Sequence[TelemetryFrame], out: ScoredFrames, alerts: list[AlertEvent]) -> None:
        from edge.inference.runtime import DeviceRows, score_rows

        batch: list[tuple[DeviceState, list[int], DeviceRows]] = []
        for device, stream in streams:
            if (taken := stream.take()) is not None:
                batch.append((device, taken[0], DeviceRows(device.id, taken[1])))
        if not batch:
            return
        runs = [rows for _, _, rows in batch]
        if model.row_cost * sum(len(rows.inputs) for rows in runs) <= INLINE_RUN:
            outcome = model.timed(score_rows, runs)  # cheaper than the hop to the scoring thread and back
        else:
            outcome = await self._run(lambda: model.timed(score_rows, runs))
        for device, indices, rows in batch:
            if rows.error is not None:
                device.input_errors += 1
                log.debug("device %s: rows left unscored: %s", device.id, rows.error)
            elif outcome.error is not None:
                self._failed(device, outcome.error, alerts)
            elif rows.failure is not None:
                self._failed(device, rows.failure, alerts)
            else:
                self._scored(device, model, rows, indices, frames, out, alerts)

    def _scored(self, device: DeviceState, model: LoadedModel, rows: DeviceRows, indices: list[int],
                frames: Sequence[TelemetryFrame], out: ScoredFrames, alerts: list[AlertEvent]) -> None:
        device.failures = 0
        values, confidence, added = rows.values, rows.confidence, out.added
        assert values is not None
        if model.kind == "anomaly" or confidence is None:
            for index, value in zip(indices, values, strict=True):
                added[index] = {SCORE: value}
        else:
            for index, value, conf in zip(indices, values, confidence, strict=True):
                added[index] = {CLASS: value, CONFIDENCE: conf}
        if device.alerts is not None:
            alerts.extend(device.alerts.feed_rows(lambda i: frames[indices[i]].ts, values))
        device.last_score, device.last_scored_at = values[-1], frames[indices[-1]].ts
        device.rows_scored += len(values)
        if device.drift is not None and rows.raw is not None:
            device.drift.add(rows.raw)

    # --- reports -------------------------------------------------------------

    def reports(self) -> dict[str, ModelReport]:
        """Per device with a model (or a rejected or failed one): what the cloud's health report carries."""
        out = {d.id: report for d in self._devices.values() if (report := d.report()) is not None}
        for device, report in out.items():
            self._drift_told(device, report)
        return out

    def _drift_told(self, device: str, report: ModelReport) -> None:
        """An event when a device's drift level changes (unknown, while too few rows are scored, is not one)."""
        level, before = report.drift, self._drift_levels.get(device, "ok")
        if level == "unknown" or level == before:
            return
        self._drift_levels[device] = level
        worst = ", ".join(f"{name} (PSI {value:.2f})" for name, value in list(report.psi.items())[:3])
        if level == "ok":
            message = f"{device}: the inputs of {report.model} v{report.version} look like its training data again"
        else:
            message = (f"{device}: the inputs of {report.model} v{report.version} moved away from its training data "
                       f"({level}); most: {worst}")
        self._tell("drift_changed", "operator" if level != "ok" else "technical", message, device=device,
                   details={"model": report.model, "version": report.version, "drift": level, "previous": before,
                            "rows": report.rows, **{f"psi.{k}": v for k, v in list(report.psi.items())[:8]}})

    def status(self) -> dict[str, Any]:
        """What `twinedge model status` shows."""
        rules = [{"scope": r.scope, "target": r.target, "model": r.model, "version": r.version,
                  "sha256": r.sha256, "origin": r.origin} for r in [*self._local, *self._cloud]]
        rejected = [r.as_dict() for r in self._rejected.values()] + [r.as_dict() for r in self._device_rejections]
        return {
            "devices": [d.status() for d in sorted(self._devices.values(), key=lambda d: d.id)],
            "rules": rules,
            "rejected": sorted(rejected, key=lambda r: r["at"]),
            "unscored_devices": self.unscored_devices,
        }
