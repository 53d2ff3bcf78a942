"""The embedded MQTT broker: amqtt configured for the edge, consuming telemetry in-process.

Devices publish to ``twin/<device_id>/telemetry``; the frames go to the sink
inside the broker process (no second network hop) and a QoS 1/2 publish is
acknowledged only after the sink committed it. The edge republishes what it
stored on ``twinedge/<edge_id>/frames/<device_id>`` for local dashboards.

amqtt's default plugins ($SYS topics, event and packet loggers, its own file
auth) are not loaded: only our auth and ACL plugins run, which is most of what
makes the broker cheap enough for a Pi (see docs/mqtt.md).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Sequence
from typing import Any

from amqtt.contexts import BrokerConfig as AmqttBrokerConfig
from amqtt.contexts import ListenerConfig as AmqttListenerConfig
from amqtt.errors import BrokerError

from edge.broker.acl import Acl
from edge.broker.amqtt_glue import Hooks, Published, TwinedgeAuthPlugin, TwinedgeBroker, TwinedgeTopicPlugin
from edge.broker.auth import Authenticator
from edge.broker.config import BrokerConfig, ListenerConfig
from edge.broker.guard import GUARD_COUNTERS, ConnectionGuard, ListenerLimit, connection_limits
from edge.broker.ingest import TelemetryIngest, alert_topic, group_by_device, republish_prefix
from edge.sources.base import FrameSink, SourceHealth, SourceState
from shared.batch import AlertEvent
from shared.codec import encode_frames
from shared.errors import TwinedgeError
from shared.frame import TelemetryFrame

__all__ = ["BrokerStartError", "EmbeddedBroker"]

log = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT = 5.0


class BrokerStartError(TwinedgeError):
    """The broker could not start: a port in use, an unreadable certificate or password file."""


def _plugin_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


class EmbeddedBroker:
    """amqtt on our listeners with our auth, ACL and store-before-ack ingest.

    ``run()`` serves until cancelled, then shuts the broker down within
    SHUTDOWN_TIMEOUT seconds. ``started`` is set once every listener accepts.
    """

    def __init__(self, config: BrokerConfig, sink: FrameSink, *, edge_id: str) -> None:
        self.config = config
        self.sink = sink
        self.edge_id = edge_id
        self.started = asyncio.Event()
        # The MQTT side reports like a source: `status` lists it with the PLCs (state, frames, last data).
        self.health = SourceHealth(name="mqtt", kind="mqtt_broker")
        self.ingest = TelemetryIngest(sink, max_payload=config.max_payload, max_frames=config.max_frames_per_message,
                                      health=self.health)
        self._hooks: Hooks | None = None
        self._broker: TwinedgeBroker | None = None
        self._republish_prefix = republish_prefix(edge_id)

    def _guard(self) -> ConnectionGuard:
        """Connection limits that fit the descriptor limit, TLS contexts, timeouts: logged once at start."""
        listeners = self.config.listeners
        limits, why, lowered = connection_limits([(x.name, x.max_connections) for x in listeners])
        described = ", ".join(f"{name} {limit}" for name, limit in limits.items())
        (log.warning if lowered else log.info)(
            "MQTT connections per listener: %s (%s)%s", described, why,
            "; raise LimitNOFILE to allow the configured max_connections" if lowered else "",
        )
        guarded = {
            f"l-{x.name}": ListenerLimit(x.name, limits[x.name], self._tls_context(x) if x.tls else None)
            for x in listeners
        }
        return ConnectionGuard(
            guarded, connect_timeout=self.config.connect_timeout, packet_limit=self.config.packet_limit
        )

    @staticmethod
    def _tls_context(listener: ListenerConfig) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(str(listener.certfile), str(listener.keyfile))
        except (OSError, ssl.SSLError) as exc:  # missing, unreadable or mismatched files
            raise BrokerStartError(
                f"MQTT listener {listener.name!r}: cannot load certfile {listener.certfile} and keyfile "
                f"{listener.keyfile}: {exc.strerror or exc}"
            ) from None
        return context

    def _amqtt_config(self, hooks: Hooks) -> AmqttBrokerConfig:
        expiry = self.config.session_expiry
        config = AmqttBrokerConfig(
            # amqtt requires a "default" listener and copies its settings into any other listener's
            # fields left at their defaults, so it is an unbound placeholder, and ours are added after.
            listeners={"default": AmqttListenerConfig(bind=None)},
            timeout_disconnect_delay=0,
            session_expiry_interval=int(expiry) if expiry is not None else None,
            plugins={
                _plugin_path(TwinedgeAuthPlugin): {"hooks": hooks},
                _plugin_path(TwinedgeTopicPlugin): {"hooks": hooks},
            },
        )
        for listener in self.config.listeners:
            host = f"[{listener.host}]" if ":" in listener.host else listener.host
            # No limit and no TLS on amqtt's side: amqtt's limit makes new connections wait instead of
            # refusing them, and its TLS handshake runs before any limit or timeout applies. The guard
            # does both (TwinedgeBroker.stream_connected).
            config.listeners[f"l-{listener.name}"] = AmqttListenerConfig(bind=f"{host}:{listener.port}")
        return config

    def _describe(self) -> str:
        return ", ".join(
            f"{x.name} {x.host}:{x.port}{' (TLS)' if x.tls else ''}" for x in self.config.listeners
        )

    async def run(self) -> None:
        for noisy in ("amqtt", "transitions"):
            # amqtt logs every connection and state-machine step at INFO; keep them unless asked for.
            logger = logging.getLogger(noisy)
            if logger.level == logging.NOTSET:
                logger.setLevel(logging.WARNING)
        authenticator = None
        if self.config.password_file is not None:
            try:
                authenticator = await asyncio.to_thread(Authenticator.from_file, self.config.password_file)
            except TwinedgeError as exc:
                raise BrokerStartError(str(exc)) from None
        hooks = Hooks(
            ingest=self.ingest,
            acl=Acl(self.config.acl),
            authenticator=authenticator,
            allow_anonymous=self.config.allow_anonymous,
            max_queued_messages=self.config.max_queued_messages,
            guard=self._guard(),
        )
        broker = TwinedgeBroker(self._amqtt_config(hooks), hooks=hooks)
        try:
            await broker.start()
        except BrokerError as exc:
            reason = f"the MQTT broker could not start on {self._describe()}: {exc.__cause__ or exc}"
            self.health.set_state(SourceState.FAILED, reason)
            raise BrokerStartError(reason) from None
        self._hooks, self._broker = hooks, broker
        if self.config.allow_anonymous:
            log.warning("MQTT broker accepts anonymous clients (allow_anonymous = true)")
        log.info("MQTT broker listening on %s", self._describe())
        self.health.set_state(SourceState.CONNECTED)
        self.started.set()
        try:
            await asyncio.Future()  # serve until cancelled
        finally:
            self.started.clear()
            self._broker = None
            self.ingest.close()
            hooks.throttle.close()
            try:
                async with asyncio.timeout(SHUTDOWN_TIMEOUT):
                    await broker.shutdown()
            except TimeoutError:
                log.warning("MQTT broker did not shut down within %.0f s; leaving it", SHUTDOWN_TIMEOUT)
            await hooks.guard.close()

    async def publish(self, topic: str, payload: bytes, *, qos: int = 0, retain: bool = False) -> None:
        """Publish from the edge itself to every subscriber of ``topic`` (dropped when the broker is down).

        Each subscriber gets it at the lower of ``qos`` and its subscription's QoS.
        """
        broker = self._broker
        if broker is None:
            return
        await broker.internal_message_broadcast(topic, payload, qos)
        if retain:
            await broker.retain_message(None, topic, Published(payload, qos), qos)

    async def publish_stored(self, frames: Sequence[TelemetryFrame]) -> None:
        """After commit: one message per device on twinedge/<edge>/frames/<device> (a msgpack list).

        Costs one dict lookup per device when nobody subscribes.
        """
        hooks = self._hooks
        if not self.config.republish or hooks is None or self._broker is None:
            return
        for device, group in group_by_device(frames).items():
            topic = self._republish_prefix + device
            if hooks.has_subscribers(topic):
                await self.publish(topic, encode_frames(group))

    async def publish_alerts(self, alerts: Sequence[AlertEvent]) -> None:
        """After commit: each alert event on twin/<device_id>/alerts as JSON (QoS 1), for panels and HMIs."""
        for alert in alerts:
            await self.publish(alert_topic(alert.device_id), alert.model_dump_json().encode(), qos=1)

    def snapshot(self) -> dict[str, Any]:
        """Counters for `twinedge status`: clients, refusals by cause, and the ingest's counts."""
        broker, hooks = self._broker, self._hooks
        sessions = list(broker.sessions.values()) if broker is not None else []
        connected = sum(1 for session, _ in sessions if session.transitions.state == "connected")
        guarded = hooks.guard.snapshot() if hooks is not None else {}
        per_listener = guarded.pop("listeners", {})
        refused_publishes = dict(hooks.refused_publishes) if hooks is not None else {}
        return {
            "kind": "embedded",
            "running": self.started.is_set(),
            "listeners": [
                {"name": x.name, "host": x.host, "port": x.port, "tls": x.tls, **per_listener.get(x.name, {})}
                for x in self.config.listeners
            ],
            "clients_connected": connected,
            "sessions": len(sessions),
            "refused_connections": hooks.refused_connections if hooks else 0,  # login or will topic refused
            "refused_publishes": sum(refused_publishes.values()),
            "refused_publishes_by_kind": refused_publishes,
            "offline_queue_dropped": hooks.queued_dropped if hooks else 0,
            **{kind: guarded.get(kind, 0) for kind in GUARD_COUNTERS},
            **self.ingest.snapshot(),
        }
