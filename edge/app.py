"""The Gateway: owns one TaskGroup with the store writer, the MQTT side, the sources and the control socket.

Every task runs under a ``Supervisor`` with a restart budget (edge/supervisor.py).
A source that keeps crashing is marked failed and the daemon stays up; a part
the daemon cannot work without (writer, MQTT side, uplink, control socket)
that keeps crashing ends the daemon with exit status 1 so that systemd restarts
it. An error of ours raised while starting (a port in use, an unusable state
directory) is not retried: it ends start-up with exit status 78. SIGTERM
cancels the group; the writer commits what is queued within a bound shorter
than systemd's TimeoutStopSec.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from edge import __version__, heap
from edge.config import GatewayConfig
from edge.control.server import ControlServer
from edge.errors import DaemonFailed, StartupError
from edge.eventqueue import EventFilter
from edge.events import EventRecorder
from edge.inference import InferenceEngine
from edge.inference.puller import ModelPuller
from edge.logthrottle import install_loop_exception_handler
from edge.sdnotify import notify, open_notify_socket, watchdog_interval
from edge.sources import Source, SourceHealth, SourceState, build_source
from edge.sources.modbus.config import ModbusSourceConfig
from edge.store import Store
from edge.supervisor import Supervisor
from edge.uplink import Uplink
from edge.writer import StoreWriter
from shared.batch import EVENT_LEVELS, MAX_MODEL_REPORTS, AlertEvent, EdgeHealth
from shared.errors import TwinedgeError
from shared.frame import TelemetryFrame

__all__ = ["Gateway", "run_daemon"]

log = logging.getLogger(__name__)

SHUTDOWN_BOUND = 20.0  # below the unit's TimeoutStopSec=30
STATUS_EVERY = 10.0


class MqttSide(Protocol):
    """MQTT ingest (the embedded broker, or the client of an external one), in the terms of a source:
    ``run()`` until cancelled, ``health`` for `status`; plus what a broker adds (republishing, counters)."""

    started: asyncio.Event
    health: SourceHealth

    async def run(self) -> None: ...

    async def publish_stored(self, frames: Sequence[TelemetryFrame]) -> None: ...

    async def publish_alerts(self, alerts: Sequence[AlertEvent]) -> None: ...

    def snapshot(self) -> dict[str, Any]: ...


class Gateway:
    def __init__(self, config: GatewayConfig, *, restart_delay: float = 1.0) -> None:
        self.config = config
        self.restart_delay = restart_delay
        self.store = Store(config.store_path, config.store)
        self.engine = InferenceEngine(config.inference, edge_id=config.edge.id, sensor_units=sensor_units(config))
        self.writer = StoreWriter(
            self.store,
            max_frames=config.store.batch_max_frames,
            max_delay=config.store.batch_max_delay,
            queue_frames=config.store.ingest_queue_frames,
            enrich=self.engine.enrich,
            edge_id=config.edge.id,
        )
        self.sources: list[Source] = [build_source(src, self.writer) for src in config.sources]
        self.mqtt: MqttSide | None = self._build_mqtt()
        self.uplink = (
            Uplink(config.uplink, self.store, edge_id=config.edge.id, health=self.edge_health)
            if config.uplink is not None else None
        )
        self.puller = self._build_puller()
        self.events = self._build_events()
        self.control = ControlServer(
            config.control_socket,
            config.control.mode,
            {
                "status": self._status,
                "queue_stats": self._queue_stats,
                "queue_peek": self._queue_peek,
                "quarantine": self._quarantine,
                "model_status": self._model_status,
                "model_rollback": self._model_rollback,
                "events": self._events,
            },
        )
        self.ready = asyncio.Event()
        self.started_at = time.time()
        self.restarts: dict[str, dict[str, Any]] = {}  # part -> count and last reason, for `status`

    def _build_mqtt(self) -> MqttSide | None:
        # Imported here: a gateway without MQTT does not load amqtt.
        if self.config.mqtt_client is not None:
            from edge.broker.client import ExternalMqttIngest

            return ExternalMqttIngest(self.config.mqtt_client, self.writer, edge_id=self.config.edge.id)
        if self.config.broker.enabled:
            from edge.broker.embedded import EmbeddedBroker

            return EmbeddedBroker(self.config.broker, self.writer, edge_id=self.config.edge.id)
        return None

    def _build_events(self) -> EventRecorder:
        """The event log, told by the sources, the queue's full-disk policy and the models (edge/events.py)."""
        events = EventRecorder(self.store, edge_id=self.config.edge.id)
        for health in self._healths():
            health.observer = events.source_changed
        self.store.report.observer = lambda kind, line, counts: events.record(
            kind, "operator", line, details=counts, subject="queue")
        self.engine.events = events.record
        if self.uplink is not None:
            uplink = self.uplink
            events.on_stored(lambda _events: uplink.on_commit(()))
        return events

    def _build_puller(self) -> ModelPuller | None:
        """The model downloader, with an uplink: the cloud names this edge's models (edge/inference/puller.py)."""
        if self.config.uplink is None:
            return None
        return ModelPuller(self.config.uplink, self.engine, edge_id=self.config.edge.id,
                           models_dir=self.config.models_dir, poll_interval=self.config.inference.poll_interval,
                           keep=[m.package for m in self.config.inference.local])

    async def run(self) -> None:
        await self.store.open()
        try:
            self.events.record("edge_started", "operator", f"edge {self.config.edge.id} started (twinedge "
                               f"{__version__}, {len(self.sources)} sources)",
                               details={"version": __version__, "sources": len(self.sources),
                                        "pid": os.getpid(), "queue": str(self.config.store_path)})
            await self.engine.start()
            self.writer.on_commit(self.control.publish)
            if self.mqtt is not None and (self.config.mqtt_client is not None or self.config.broker.republish):
                self.writer.on_commit(self.mqtt.publish_stored)
            if self.mqtt is not None:
                self.writer.on_alerts(self.mqtt.publish_alerts)
            if self.uplink is not None:
                self.writer.on_commit(self.uplink.on_commit)
            self.writer.on_events(self.events.announce)
            async with asyncio.TaskGroup() as tg:
                self._start(tg, "store writer", self.writer.run)
                self._start(tg, "quarantine writer", self.writer.run_quarantine)
                self._start(tg, "control socket", self.control.run)
                if self.mqtt is not None:
                    self._start(tg, "MQTT side", self.mqtt.run)
                if self.uplink is not None:
                    self._start(tg, "uplink", self.uplink.run)
                if self.puller is not None:
                    self._start(tg, "model downloader", self.puller.run)
                self._start(tg, "event log", self.events.run)
                self._start(tg, "systemd notifier", self._announce)
                for source in self.sources:
                    tg.create_task(self._supervise_source(source), name=f"source:{source.name}")
        finally:
            self.engine.close()
            await self._record_stop()
            await self.store.close()

    async def _record_stop(self) -> None:
        """The stop event, and every event still in memory, go to the queue file before it closes."""
        uptime = time.time() - self.started_at
        self.events.record("edge_stopped", "operator", f"edge {self.config.edge.id} stopped after {uptime:.0f} s",
                           details={"uptime_s": round(uptime, 1)})
        try:
            async with asyncio.timeout(5):
                await self.events.close()
        except (TimeoutError, TwinedgeError) as exc:
            log.warning("the last edge events could not be stored: %s", exc or "timed out")

    async def _announce(self) -> None:
        """READY once the queue and listeners are up; then STATUS lines and watchdog pings.

        ``notify`` never raises (a failed send is logged, rate-limited), so nothing stops this loop
        but cancellation: a missed ping must not end the daemon that systemd is watching.
        """
        await self.control.started.wait()
        if self.mqtt is not None and self.config.mqtt_client is None:
            # The embedded broker must listen before we are ready; an external broker
            # that is unreachable is retried and must not hold up start-up.
            await self.mqtt.started.wait()
        self.ready.set()
        heap.settle()  # what start-up made lives as long as the daemon (edge.heap)
        notify("READY=1")
        log.info(
            "twinedge %s ready: edge %s, %d sources, queue %s",
            __version__, self.config.edge.id, len(self.sources), self.config.store_path,
        )
        ping = watchdog_interval()
        period = min(STATUS_EVERY, ping) if ping else STATUS_EVERY
        last_status = 0.0
        while True:
            if ping:
                notify("WATCHDOG=1")
            if time.monotonic() - last_status >= STATUS_EVERY:
                notify(f"STATUS={await self._status_line()}")
                last_status = time.monotonic()
            await asyncio.sleep(period)

    async def _status_line(self) -> str:
        up = sum(1 for s in self.sources if s.health.state == SourceState.CONNECTED)
        line = f"{up}/{len(self.sources)} sources connected; queue {self.store.depth} frames"
        if self.store.report.is_full():
            line += f"; queue FULL ({self.config.store.when_full})"
        return line

    def _start(self, tg: asyncio.TaskGroup, name: str, target: Callable[[], Awaitable[None]]) -> None:
        tg.create_task(self._supervise_part(name, target), name=name)

    async def _supervise_part(self, name: str, target: Callable[[], Awaitable[None]]) -> None:
        """A part the daemon needs: restarted within the budget, then the daemon ends (exit 1)."""

        def fatal(exc: Exception) -> bool:
            # Our own error before the daemon is ready is a configuration or environment problem:
            # restarting would fail the same way (e.g. a port in use), so start-up ends here.
            return isinstance(exc, TwinedgeError) and not self.ready.is_set()

        def restarting(reason: str, _delay: float) -> None:
            entry = self.restarts.setdefault(name, {"count": 0, "last_reason": None})
            entry["count"] += 1
            entry["last_reason"] = reason

        supervisor = Supervisor(name, delay=self.restart_delay, fatal=fatal, on_restart=restarting)
        gave_up = await supervisor.run(target)
        raise DaemonFailed(f"the {name} {gave_up}")

    async def _supervise_source(self, source: Source) -> None:
        """A source: restarted within the budget, then marked failed while the daemon stays up."""

        def restarting(reason: str, delay: float) -> None:
            source.health.reconnects += 1
            source.health.set_state(SourceState.DISCONNECTED, f"{reason}; restarting in {delay:.1f} s")

        supervisor = Supervisor(f"source {source.name}", delay=self.restart_delay, on_restart=restarting)
        gave_up = await supervisor.run(source.run)
        source.health.set_state(
            SourceState.FAILED, f"{gave_up}; not restarted. Fix the cause and restart the service."
        )

    def _healths(self) -> list[SourceHealth]:
        """Every source of data, MQTT ingest first."""
        mqtt = [self.mqtt.health] if self.mqtt is not None else []
        return mqtt + [s.health for s in self.sources]

    async def edge_health(self) -> EdgeHealth:
        """What every sync batch tells the cloud about this edge: one query, the rest is in memory."""
        oldest = await self.store.oldest()
        return EdgeHealth(
            queue_depth=self.store.depth,
            oldest_age_s=None if oldest is None else max(0.0, time.time() - oldest[1]),
            drops={**self.store.drops, **{f"alert:{k}": v for k, v in self.store.alert_drops.items()},
                   **{f"event:{k}": v for k, v in self.store.event_drops.items()}},
            quarantined=self.store.quarantined_count,
            sources={h.name: h.state.value for h in self._healths()},
            models=dict(list(self.engine.reports().items())[:MAX_MODEL_REPORTS]),
        )

    # --- control handlers ----------------------------------------------------

    async def _status(self, _req: dict[str, Any]) -> dict[str, Any]:
        stats = await self.store.stats()
        return {
            "edge_id": self.config.edge.id,
            "version": __version__,
            "started_at": self.started_at,
            "uptime_s": time.time() - self.started_at,
            "restarts": self.restarts,
            "sources": [h.snapshot() for h in self._healths()],
            "mqtt": self.mqtt.snapshot() if self.mqtt is not None else None,
            "cloud": self.uplink.snapshot() if self.uplink is not None else None,
            "model_downloads": self.puller.snapshot() if self.puller is not None else None,
            "queue": stats.as_dict(),
            "models": {d["device_id"]: {k: d[k] for k in ("model", "version", "state", "last_score",
                                                          "last_scored_at", "drift")}
                       for d in self.engine.status()["devices"]},
            "writer": {
                "queued_in_memory": self.writer.queued,
                "commits": self.writer.commits,
                "committed_frames": self.writer.committed_frames,
                "backpressure_waits": self.writer.waits,
                "rejected": dict(self.writer.rejected),
            },
        }

    async def _model_status(self, _req: dict[str, Any]) -> dict[str, Any]:
        return self.engine.status()

    async def _model_rollback(self, req: dict[str, Any]) -> dict[str, Any]:
        device = req.get("device")
        if not isinstance(device, str):
            raise ValueError("name the device to roll back")
        return await self.engine.rollback(device)

    async def _events(self, req: dict[str, Any]) -> list[dict[str, Any]]:
        """`twinedge events`: the newest events up to a level, of a device, since a time, after a sequence."""
        level = req.get("level") or "developer"
        if level not in EVENT_LEVELS:
            raise ValueError(f"level must be one of {', '.join(EVENT_LEVELS)} (got {str(level)[:40]!r})")
        device, since = req.get("device"), req.get("since")
        if device is not None and not isinstance(device, str):
            raise ValueError("device must be a device id")
        if since is not None and (not isinstance(since, int | float) or isinstance(since, bool)):
            raise ValueError("since must be epoch seconds")
        which = EventFilter(level, device, None if since is None else float(since),
                            max(0, int(req.get("after_seq") or 0)), min(max(int(req.get("limit") or 50), 1), 10_000))
        return [{"seq": e.seq, "synced": e.synced, **e.event_dict()} for e in await self.store.recent_events(which)]

    async def _queue_stats(self, _req: dict[str, Any]) -> dict[str, Any]:
        return (await self.store.stats()).as_dict()

    async def _queue_peek(self, req: dict[str, Any]) -> list[dict[str, Any]]:
        limit = min(max(int(req.get("limit", 10)), 1), 1000)
        rows = await self.store.read(limit=limit)
        return [{"seq": r.seq, "stored_at": r.stored_at, "frame": r.frame_dict()} for r in rows]

    async def _quarantine(self, req: dict[str, Any]) -> list[dict[str, Any]]:
        limit = min(max(int(req.get("limit", 20)), 1), 1000)
        return await self.store.quarantined(limit)


def sensor_units(config: GatewayConfig) -> dict[str, dict[str, str | None]]:
    """Per device, the sensors its source config declares and their units (Modbus register maps name both)."""
    out: dict[str, dict[str, str | None]] = {}
    for src in config.sources:
        if isinstance(src, ModbusSourceConfig):
            out.setdefault(src.frame_device_id, {}).update({reg.name: reg.unit for reg in src.registers})
    return out


async def run_daemon(config: GatewayConfig) -> None:
    """Run the gateway until SIGTERM/SIGINT, then shut down within SHUTDOWN_BOUND."""
    gateway = Gateway(config)
    heap.enable()
    loop = asyncio.get_running_loop()
    # asyncio's own error reports (a failed accept(), a task that died unobserved) are rate-limited,
    # and the systemd socket is opened while descriptors are free, so watchdog pings survive a flood.
    install_loop_exception_handler(loop, logging.getLogger("edge.loop"))
    open_notify_socket()
    main = asyncio.current_task()
    assert main is not None
    stopping = False

    def stop(signame: str) -> None:
        nonlocal stopping
        if not stopping:
            stopping = True
            log.info("%s received: stopping", signame)
            notify("STOPPING=1")
            main.cancel()
            loop.call_later(SHUTDOWN_BOUND, overdue)

    def overdue() -> None:
        # Committed frames are safe on disk; a clean-up that hangs must not keep the
        # service from stopping (systemd would SIGKILL it a little later anyway).
        log.error("shutdown took longer than %.0f s; exiting now", SHUTDOWN_BOUND)
        os._exit(1)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop, sig.name)
    try:
        try:
            await gateway.run()
        except* TwinedgeError as group:
            failed = [e for e in group.exceptions if isinstance(e, DaemonFailed)]
            message = "; ".join(str(e) for e in group.exceptions if not isinstance(e, DaemonFailed))
            if failed or gateway.ready.is_set():
                reason = "; ".join(e.args[0] for e in failed) or message
                log.critical("stopping after an error: %s", reason)
                raise DaemonFailed(reason) from None
            # A port in use, unreadable certificates, password, token or queue file:
            # a restart would fail the same way, so this ends with EX_CONFIG.
            log.critical("cannot start: %s", message)
            raise StartupError(message) from None
    except asyncio.CancelledError:
        if not stopping:
            raise
    log.info("stopped")
