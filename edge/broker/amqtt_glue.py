"""Where twinedge plugs into amqtt 0.12: auth and ACL plugins, a store-before-ack protocol handler,
and a Broker subclass that uses that handler and corrects what amqtt does differently from MQTT 3.1.1.

The public seams used: amqtt's plugin API (``BaseAuthPlugin``, ``BaseTopicPlugin``),
``ProtocolHandler.handle_publish``, ``handle_read_timeout`` and ``mqtt_publish``.
amqtt has no public seam for the rest, so ``TwinedgeBroker`` overrides four of
the broker's underscore methods, each narrowly and each covered by a test in
tests/edge/broker/test_mqtt311.py that fails if an amqtt upgrade bypasses it:

- ``_initialize_client_session``: hands every connection our ``IngestHandler``
  (amqtt names its handler class inline) and sets the keepalive timeout to
  1.5 x the client's keepalive [MQTT-3.1.2-24];
- ``_publish_session_retained_messages``: messages queued for an offline session
  are delivered with RETAIN = 0 (amqtt sets 1);
- ``_publish_retained_messages_for_subscription``: on reconnect amqtt sends the
  retained messages of *every* client's subscriptions to the new client; we
  only send those of the client's own subscriptions;
- ``_retain_broadcast_message``: bounds the queue of an offline session.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

from amqtt.broker import Broker
from amqtt.contexts import Action
from amqtt.mqtt.packet import PUBACK
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.mqtt.publish import PublishPacket
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin
from amqtt.session import OutgoingApplicationMessage, Session

from edge.broker.acl import Acl, AclAction, topic_matches
from edge.broker.auth import Authenticator
from edge.broker.ingest import TelemetryIngest, device_of_topic
from shared.errors import TwinedgeError

__all__ = ["Hooks", "IngestHandler", "TwinedgeAuthPlugin", "TwinedgeBroker", "TwinedgeTopicPlugin"]

log = logging.getLogger(__name__)

_ACTIONS = {Action.PUBLISH: AclAction.PUBLISH, Action.SUBSCRIBE: AclAction.SUBSCRIBE, Action.RECEIVE: AclAction.RECEIVE}
_LOG_EVERY = 60.0  # seconds between repeated warnings about the same user
_PUBACK = bytes([PUBACK << 4, 2])  # fixed header of a PUBACK; the packet id follows


@dataclass
class Hooks:
    """The state the plugins, handlers and broker share (one per EmbeddedBroker)."""

    ingest: TelemetryIngest
    acl: Acl
    authenticator: Authenticator | None
    allow_anonymous: bool
    max_queued_messages: int
    broker: Broker | None = None
    refused_connections: int = 0
    refused_publishes: int = 0
    queued_dropped: int = 0
    _last_warned: dict[str, float] = field(default_factory=dict)

    def warn_once(self, key: str, message: str, *args: Any) -> None:
        """A WARNING at most once a minute per key (a user, a client), so a retry loop cannot flood the log."""
        now = time.monotonic()
        if now - self._last_warned.get(key, -_LOG_EVERY) >= _LOG_EVERY:
            if len(self._last_warned) > 10_000:
                self._last_warned.clear()
            self._last_warned[key] = now
            log.warning(message, *args)

    def has_subscribers(self, topic: str) -> bool:
        """Does any session (connected or persistent offline) hold a subscription matching ``topic``?"""
        if self.broker is None:
            return False
        return any(subs and topic_matches(f, topic) for f, subs in self.broker.subscriptions.items())


class TwinedgeAuthPlugin(BaseAuthPlugin):
    """Username/password from our password file; anonymous clients only when configured."""

    @dataclass
    class Config:
        hooks: Any = None

    async def authenticate(self, *, session: Session) -> bool:
        hooks: Hooks = self.config.hooks
        where = f"{session.remote_address}:{session.remote_port}"
        if session.username is None:
            if hooks.allow_anonymous:
                # Not flagged session.is_anonymous: amqtt would then neither queue messages for the
                # client's persistent session nor keep it, which MQTT 3.1.1 does not allow.
                return True
            hooks.refused_connections += 1
            hooks.warn_once(f"anon:{session.remote_address}", "refused MQTT client %r from %s: no username given "
                            "(anonymous access is off)", session.client_id, where)
            return False
        if hooks.authenticator is not None and await hooks.authenticator.check(session.username, session.password):
            return True
        hooks.refused_connections += 1
        hooks.warn_once(f"user:{session.username}", "refused MQTT client %r from %s: wrong password or unknown "
                        "user %r", session.client_id, where, session.username)
        return False


class TwinedgeTopicPlugin(BaseTopicPlugin):
    """Our ACL for publish, subscribe and receive."""

    @dataclass
    class Config:
        hooks: Any = None

    async def topic_filtering(
        self, *, session: Session | None = None, topic: str | None = None, action: Action | None = None
    ) -> bool:
        if session is None or topic is None or action is None:
            return False
        hooks: Hooks = self.config.hooks
        ok = hooks.acl.allowed(session.username, session.client_id or "", _ACTIONS[action], topic)
        if not ok and action is Action.SUBSCRIBE:
            hooks.warn_once(f"sub:{session.username}:{topic}", "MQTT client %r (user %r) may not subscribe to %r",
                            session.client_id, session.username, topic)
        return ok


class IngestHandler(BrokerProtocolHandler):
    """A connection's protocol handler that stores telemetry *before* acknowledging it.

    amqtt sends PUBACK/PUBREC as soon as a PUBLISH is parsed. Here a publish on
    ``twin/<id>/telemetry`` is first decoded and handed to the sink; for QoS 1/2
    the sink's ``put(durable=True)`` must return (the SQLite transaction committed)
    before the acknowledgement leaves. Acknowledgements keep the order in which
    the PUBLISH packets arrived [MQTT-4.6.0-2], while the puts of consecutive
    messages still overlap (so the store can commit them in one transaction).
    """

    def __init__(self, *args: Any, hooks: Hooks, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hooks = hooks
        self._ack_tail: asyncio.Future[None] | None = None
        self._closing: asyncio.Task[None] | None = None
        self._acks = bytearray()  # PUBACKs of this loop iteration, written with one send()

    async def handle_publish(self, publish_packet: PublishPacket) -> None:
        qos = publish_packet.qos or 0
        previous, mine = self._ack_tail, None
        if qos:
            mine = asyncio.get_running_loop().create_future()
            self._ack_tail = mine
        try:
            await self._publish_in_order(publish_packet, qos, previous, mine)
        finally:
            if mine is not None and not mine.done():
                mine.set_result(None)

    async def _publish_in_order(
        self, packet: PublishPacket, qos: int, previous: asyncio.Future[None] | None, mine: asyncio.Future[None] | None
    ) -> None:
        session, topic, data = self.session, packet.topic_name, packet.data
        if session is None or topic is None or data is None or device_of_topic(topic) is None:
            await self._after(previous)
            self._flush_acks()
            await super().handle_publish(packet)
            return
        hooks = self.hooks
        client_id = session.client_id or ""
        if not hooks.acl.allowed(session.username, client_id, AclAction.PUBLISH, topic):
            # MQTT 3.1.1 cannot refuse a PUBLISH: amqtt acknowledges it and our ACL plugin drops it.
            hooks.refused_publishes += 1
            hooks.warn_once(f"pub:{session.username}:{topic}", "MQTT client %r (user %r) may not publish to %r; "
                            "message dropped", client_id, session.username, topic)
            await self._after(previous)
            self._flush_acks()
            await super().handle_publish(packet)
            return
        packet_id = packet.variable_header.packet_id if packet.variable_header else None
        duplicate = qos == 2 and packet_id in session.inflight_in  # PUBREC sent: already stored
        if not duplicate:
            try:
                await hooks.ingest.handle(topic, bytes(data), client_id=client_id, durable=qos > 0)
            except TwinedgeError as exc:  # e.g. QueueFull: no PUBACK, the device keeps the frame
                hooks.warn_once("store-refused", "could not store telemetry from MQTT client %r on %s: %s; closing "
                                "the connection unacknowledged so the device sends it again", client_id, topic, exc)
                await self.handle_connection_closed()
                return
        await self._after(previous)
        if qos == 1 and packet_id is not None and not packet.retain_flag and not hooks.has_subscribers(topic):
            self._queue_puback(packet_id)  # the hot path: nobody to forward to
            return
        if qos == 0 and not packet.retain_flag and not hooks.has_subscribers(topic):
            return
        if mine is not None and qos == 2:
            mine.set_result(None)  # PUBREC goes out now; do not hold later acks until PUBREL
        self._flush_acks()
        await super().handle_publish(packet)  # amqtt's path: ack, then broadcast and retain

    def _queue_puback(self, packet_id: int) -> None:
        """PUBACKs produced in one event-loop iteration leave in one write: a send() per ack was
        the largest single cost at high rates (amqtt also resets a keepalive timer per packet)."""
        if not self._acks:
            asyncio.get_running_loop().call_soon(self._flush_acks)
        self._acks += _PUBACK + packet_id.to_bytes(2, "big")

    def _flush_acks(self) -> None:
        if self._acks and self.writer is not None:
            self.writer.write(bytes(self._acks))
        self._acks.clear()

    @staticmethod
    async def _after(previous: asyncio.Future[None] | None) -> None:
        if previous is not None and not previous.done():
            await previous

    def handle_read_timeout(self) -> None:
        """Nothing received for 1.5 x keepalive: close the connection (amqtt only logs it) [MQTT-3.1.2-24]."""
        session = self.session
        if self._closing is not None or session is None:
            return
        log.info("MQTT client %r sent nothing within its keepalive (%d s); closing the connection",
                 session.client_id, session.keep_alive)
        self._closing = asyncio.get_running_loop().create_task(
            self.handle_connection_closed(), name=f"mqtt-keepalive-close-{session.client_id}"
        )

    async def mqtt_publish(
        self, topic: str, data: bytes | bytearray, qos: int | None, retain: bool, ack_timeout: int | None = None
    ) -> OutgoingApplicationMessage:
        """Deliver to this client; for a persistent session keep an unacknowledged QoS 1/2 message for redelivery.

        amqtt forgets a message whose PUBACK/PUBCOMP did not arrive before the
        connection dropped; MQTT 3.1.1 [MQTT-4.4.0-1] wants it sent again (DUP) on reconnect.
        """
        session = self.session
        if session is None or qos not in (1, 2) or session.clean_session:
            return await super().mqtt_publish(topic, data, qos, retain, ack_timeout)
        message = OutgoingApplicationMessage(session.next_packet_id, topic, qos, data, retain)
        try:
            await self._handle_message_flow(message)
        except (asyncio.CancelledError, TimeoutError):
            if message.puback_packet is None and message.pubcomp_packet is None and message.packet_id is not None:
                session.inflight_out[message.packet_id] = message
            raise
        return message


class TwinedgeBroker(Broker):
    """amqtt's Broker with our handler and the MQTT 3.1.1 corrections listed in the module docstring."""

    def __init__(self, config: Any, *, hooks: Hooks) -> None:
        super().__init__(config)
        self.hooks = hooks
        hooks.broker = self

    async def _initialize_client_session(self, *args: Any, **kwargs: Any) -> tuple[BrokerProtocolHandler, Session]:
        _, session = await super()._initialize_client_session(*args, **kwargs)
        if session.keep_alive > 0:
            session.keep_alive = math.ceil(session.keep_alive * 1.5)
        return IngestHandler(self.plugins_manager, hooks=self.hooks), session

    async def _publish_session_retained_messages(self, session: Session) -> None:
        handler = self.sessions.get(session.client_id or "", (None, None))[1]
        tasks = []
        while handler is not None and not session.retained_messages.empty():
            queued = session.retained_messages.get_nowait()
            publish = handler.mqtt_publish(queued.topic, queued.data, queued.qos, retain=False)
            tasks.append(asyncio.ensure_future(publish))
        if tasks:
            await asyncio.wait(tasks)

    async def _publish_retained_messages_for_subscription(
        self, subscription: tuple[str, int], session: Session
    ) -> None:
        holders = self.subscriptions.get(subscription[0], ())
        if any(s.client_id == session.client_id for s, _ in holders):
            await super()._publish_retained_messages_for_subscription(subscription, session)

    async def _retain_broadcast_message(self, broadcast: dict[str, Any], qos: int, target_session: Session) -> None:
        queue = target_session.retained_messages
        if queue.qsize() >= self.hooks.max_queued_messages:
            queue.get_nowait()  # the oldest goes, as with Mosquitto's max_queued_messages
            self.hooks.queued_dropped += 1
            self.hooks.warn_once(f"queue:{target_session.client_id}", "offline MQTT client %r has %d queued "
                                 "messages; dropping the oldest", target_session.client_id, queue.qsize() + 1)
        await super()._retain_broadcast_message(broadcast, qos, target_session)
