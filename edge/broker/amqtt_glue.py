"""Where twinedge plugs into amqtt 0.12: auth and ACL plugins, a store-before-ack protocol handler,
and a Broker subclass that uses that handler and corrects what amqtt does differently from MQTT 3.1.1.

The public seams used: amqtt's plugin API (``BaseAuthPlugin``, ``BaseTopicPlugin``),
``ProtocolHandler.handle_publish``, ``handle_read_timeout`` and ``mqtt_publish``, and the
broker's ``stream_connected`` (where a listener hands over each TCP connection),
``external_connected`` and ``retain_message``. amqtt has no public seam for the
rest, so ``TwinedgeBroker`` overrides six of the broker's underscore methods, each
narrowly and each covered by a test (tests/edge/broker/test_mqtt311.py,
test_abuse.py, test_embedded.py) that fails if an amqtt upgrade bypasses it:

- ``_initialize_client_session``: hands every connection our ``IngestHandler``
  (amqtt names its handler class inline), sets the keepalive timeout to
  1.5 x the client's keepalive [MQTT-3.1.2-24] and reports invalid CONNECTs;
- ``_broadcast_message``: a message remembers the QoS it was published with, so
  that each subscriber gets the lower of that and its subscription's QoS
  [MQTT-3.8.4] (amqtt uses the subscription's), and telemetry the edge refused is
  not forwarded;
- ``_create_server_instance``: TCP listeners accept in small batches from a long kernel queue;
- ``_publish_session_retained_messages``: messages queued for an offline session
  are delivered with RETAIN = 0 (amqtt sets 1);
- ``_publish_retained_messages_for_subscription``: on reconnect amqtt sends the
  retained messages of *every* client's subscriptions to the new client; we
  only send those of the client's own subscriptions;
- ``_retain_broadcast_message``: bounds the queue of an offline session and keeps
  only messages whose delivery QoS (the lower of publish and subscription) is 1 or 2.

Connection limits, timeouts and packet framing are edge/broker/guard.py's.
"""

from __future__ import annotations

import asyncio
import logging
import math
import ssl
import time
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from amqtt.adapters import ReaderAdapter, StreamWriterAdapter, WriterAdapter
from amqtt.broker import Broker
from amqtt.contexts import Action, ListenerType
from amqtt.errors import AMQTTError, MQTTError
from amqtt.mqtt.packet import PUBACK
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.mqtt.publish import PublishPacket
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin
from amqtt.session import OutgoingApplicationMessage, Session

from edge.broker.acl import Acl, AclAction, topic_matches
from edge.broker.auth import Authenticator
from edge.broker.guard import Closed, Connection, ConnectionGuard, GuardedReader
from edge.broker.ingest import TelemetryIngest, device_of_topic
from edge.logthrottle import Throttle
from shared.errors import TwinedgeError

__all__ = ["Hooks", "IngestHandler", "Published", "TwinedgeAuthPlugin", "TwinedgeBroker", "TwinedgeTopicPlugin"]

log = logging.getLogger(__name__)

_ACTIONS = {Action.PUBLISH: AclAction.PUBLISH, Action.SUBSCRIBE: AclAction.SUBSCRIBE, Action.RECEIVE: AclAction.RECEIVE}
_PUBACK = bytes([PUBACK << 4, 2])  # fixed header of a PUBACK; the packet id follows
LISTEN_BACKLOG = 1024  # connections the kernel holds for us to accept (capped by net.core.somaxconn)
ACCEPT_BATCH = 16  # connections accepted per event-loop iteration


def topic_kind(topic: str) -> str:
    """How `status` groups refused publishes: device telemetry or anything else."""
    return "telemetry" if device_of_topic(topic) is not None else "other"


class Published(bytes):
    """A message's payload with the QoS it was published at, travelling through amqtt's broadcast.

    ``forward = False`` marks telemetry the edge refused: acknowledged to the
    device, but neither delivered to subscribers nor retained.
    """

    qos: int
    forward: bool

    def __new__(cls, data: bytes | bytearray, qos: int, *, forward: bool = True) -> Published:
        obj = super().__new__(cls, data)
        obj.qos, obj.forward = qos, forward
        return obj


@dataclass
class Hooks:
    """The state the plugins, handlers and broker share (one per EmbeddedBroker)."""

    ingest: TelemetryIngest
    acl: Acl
    authenticator: Authenticator | None
    allow_anonymous: bool
    max_queued_messages: int
    guard: ConnectionGuard
    broker: Broker | None = None
    refused_connections: int = 0
    refused_publishes: Counter[str] = field(default_factory=Counter)
    queued_dropped: int = 0
    throttle: Throttle = field(default_factory=lambda: Throttle(log))

    def warn_once(self, key: str, message: str, *args: Any) -> None:
        """A WARNING at most once a minute per kind of problem, then a count of the repeats.

        Keys name the kind, never the user or address a client sends: a client that cycles user
        names must still get one line a minute, not one per attempt.
        """
        self.throttle.warning(key, message, *args)

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
            if not hooks.allow_anonymous:
                hooks.refused_connections += 1
                hooks.warn_once("login-anonymous", "refused MQTT client %r from %s: no username "
                                "given (anonymous access is off)", session.client_id, where)
                return False
            # Not flagged session.is_anonymous: amqtt would then neither queue messages for the
            # client's persistent session nor keep it, which MQTT 3.1.1 does not allow.
        elif hooks.authenticator is None or not await hooks.authenticator.check(session.username, session.password):
            hooks.refused_connections += 1
            hooks.warn_once("login-refused", "refused MQTT client %r from %s: wrong password or unknown "
                            "user %r", session.client_id, where, session.username)
            return False
        will = session.will_topic if session.will_flag else None
        if will is not None and not hooks.acl.allowed(session.username, session.client_id or "", AclAction.PUBLISH,
                                                      will):
            # amqtt publishes a will without asking the ACL: it would be a way round it.
            hooks.refused_connections += 1
            hooks.warn_once("will-refused", "refused MQTT client %r (user %r) from %s: it may not "
                            "publish its will message on %r", session.client_id, session.username, where, will)
            return False
        return True


class TwinedgeTopicPlugin(BaseTopicPlugin):
    """Our ACL for publish, subscribe and receive; refused publishes and subscriptions are counted and logged."""

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
            hooks.warn_once("subscribe-refused", "MQTT client %r (user %r) may not subscribe to %r",
                            session.client_id, session.username, topic)
        elif not ok and action is Action.PUBLISH:
            # MQTT 3.1.1 cannot refuse a PUBLISH: amqtt has acknowledged it, and it goes no further.
            kind = topic_kind(topic)
            hooks.refused_publishes[kind] += 1
            hooks.warn_once(f"publish-refused:{kind}", "MQTT client %r (user %r) may not publish to %r; "
                            "message acknowledged and dropped", session.client_id, session.username, topic)
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
        if session is None or topic is None or data is None:
            await self._after(previous)
            self._flush_acks()
            await super().handle_publish(packet)
            return
        hooks = self.hooks
        client_id = session.client_id or ""
        forward = True
        if device_of_topic(topic) is not None and hooks.acl.allowed(session.username, client_id, AclAction.PUBLISH,
                                                                    topic):
            packet_id = packet.variable_header.packet_id if packet.variable_header else None
            duplicate = qos == 2 and packet_id in session.inflight_in  # PUBREC sent: already stored
            if not duplicate:
                try:
                    received = await hooks.ingest.receive(topic, bytes(data), client_id=client_id, durable=qos > 0)
                except TwinedgeError as exc:  # e.g. QueueFull: no PUBACK, the device keeps the frame
                    hooks.warn_once("store-refused", "could not store telemetry from MQTT client %r on %s: %s; "
                                    "closing the connection unacknowledged so the device sends it again",
                                    client_id, topic, exc)
                    await self.handle_connection_closed()
                    return
                forward = not received.refused  # a dashboard gets nothing the edge refused
            await self._after(previous)
            if qos < 2 and (not forward or (not packet.retain_flag and not hooks.has_subscribers(topic))):
                if qos == 1 and packet_id is not None:
                    self._queue_puback(packet_id)  # the hot path: nobody to forward to
                return
            if mine is not None and qos == 2:
                mine.set_result(None)  # PUBREC goes out now; do not hold later acks until PUBREL
        else:
            await self._after(previous)
        self._flush_acks()
        packet.data = Published(data, qos, forward=forward)
        await super().handle_publish(packet)  # amqtt's path: ack, ACL check, then broadcast and retain

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
        """Deliver to this client at min(publish QoS, subscription QoS), if its ACL lets it receive ``topic``;
        for a persistent session keep an unacknowledged QoS 1/2 message for redelivery.

        amqtt forgets a message whose PUBACK/PUBCOMP did not arrive before the
        connection dropped; MQTT 3.1.1 [MQTT-4.4.0-1] wants it sent again (DUP) on reconnect.
        """
        session = self.session
        if isinstance(data, Published) and qos is not None and data.qos < qos:
            qos = data.qos
        if session is not None and not self.hooks.acl.allowed(
            session.username, session.client_id or "", AclAction.RECEIVE, topic
        ):
            return OutgoingApplicationMessage(None, topic, qos, data, retain)  # retained or queued, now denied
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
    """amqtt's Broker with our handler, our connection guard and the MQTT 3.1.1 corrections listed above."""

    def __init__(self, config: Any, *, hooks: Hooks) -> None:
        super().__init__(config)
        self.hooks = hooks
        hooks.broker = self

    async def stream_connected(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, listener_name: str
    ) -> None:
        """Each TCP connection of a listener: admitted by the guard, TLS under the connect timeout,
        then amqtt reads it through the guard; its socket is released the moment handling ends."""
        guard = self.hooks.guard
        conn = guard.admit(listener_name, writer.transport)
        if conn is None:
            return
        try:
            context = guard.tls_context(listener_name)
            if context is not None and not await self._start_tls(conn, writer, context):
                return
            await self.external_connected(GuardedReader(reader, conn), StreamWriterAdapter(writer), listener_name)
        except Exception as exc:  # noqa: BLE001 - one connection's supervisor: amqtt failing on odd input
            conn.close(Closed.PROTOCOL, f"amqtt could not handle what it sent ({type(exc).__name__}: {exc})")
        finally:
            guard.release(conn)

    @staticmethod
    async def _start_tls(conn: Connection, writer: asyncio.StreamWriter, context: ssl.SSLContext) -> bool:
        """The TLS handshake, after the guard admitted the connection and within its connect timeout."""
        remaining = conn.accepted_at + conn.guard.connect_timeout - time.monotonic()
        try:
            async with asyncio.timeout(remaining):
                await writer.start_tls(context, ssl_handshake_timeout=remaining + 1)
        except TimeoutError:
            conn.timed_out()
            return False
        except OSError as exc:  # ssl.SSLError is an OSError
            reason = exc.reason if isinstance(exc, ssl.SSLError) else None
            conn.close(Closed.PROTOCOL, f"TLS handshake failed ({reason or exc or type(exc).__name__}): a client "
                       "without TLS, or one that does not trust our certificate?")
            return False
        conn.transport = writer.transport
        return True

    async def _create_server_instance(
        self, listener_name: str, listener_type: ListenerType, address: str | None, port: int,
        ssl_context: ssl.SSLContext | None,
    ) -> asyncio.Server | Any:
        """A TCP listener that accepts ACCEPT_BATCH connections per loop iteration (asyncio: 100) from a
        kernel queue of LISTEN_BACKLOG (asyncio: 100, the same number).

        A flood then neither starves the rest of the daemon (the control socket, the store) while
        the loop sets up a hundred junk connections at a time, nor drops a device's SYN (which waits
        a second for its retransmission): the connections wait in the kernel, costing no descriptor.
        """
        if listener_type is not ListenerType.TCP or ssl_context is not None:
            return await super()._create_server_instance(listener_name, listener_type, address, port, ssl_context)
        server = await asyncio.start_server(
            partial(self.stream_connected, listener_name=listener_name), address, port, reuse_address=True,
            backlog=ACCEPT_BATCH,
        )
        for sock in server.sockets:
            with sock.dup() as listening:
                listening.listen(LISTEN_BACKLOG)  # the kernel's queue only; asyncio keeps its batch
        return server

    async def _initialize_client_session(
        self, reader: ReaderAdapter, writer: WriterAdapter, remote_address: str, remote_port: int
    ) -> tuple[BrokerProtocolHandler, Session]:
        conn = reader.conn if isinstance(reader, GuardedReader) else None
        try:
            _, session = await super()._initialize_client_session(reader, writer, remote_address, remote_port)
        except MQTTError as exc:
            detail = str(exc.__cause__ or exc)
            if conn is not None:
                conn.close(Closed.PROTOCOL, f"invalid CONNECT ({'malformed' if detail in ('', 'None') else detail})")
            raise
        except AMQTTError:
            # The guard closed it (and said why) or the client went away before finishing CONNECT.
            raise
        if conn is not None:
            conn.client_id = session.client_id
        if session.keep_alive > 0:
            session.keep_alive = math.ceil(session.keep_alive * 1.5)
            if conn is not None:
                conn.packet_timeout = session.keep_alive
        return IngestHandler(self.plugins_manager, hooks=self.hooks), session

    async def _broadcast_message(
        self, session: Session | None, topic: str | None, data: bytes | bytearray | None, force_qos: int | None = None
    ) -> None:
        if isinstance(data, Published) and not data.forward:
            return
        if force_qos is not None and data is not None:
            # A will or an internal message: delivered at min(its QoS, the subscription's), not forced.
            data, force_qos = Published(data, force_qos), None
        await super()._broadcast_message(session, topic, data, force_qos)

    async def retain_message(
        self, source_session: Session | None, topic_name: str | None, data: bytes | bytearray | None,
        qos: int | None = None,
    ) -> None:
        if isinstance(data, Published) and not data.forward:
            return
        await super().retain_message(source_session, topic_name, data, qos)

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
        data = broadcast.get("data")
        if isinstance(data, Published) and data.qos < qos:
            qos = data.qos
        if qos == 0:
            return  # a QoS 0 message is not queued for an offline session
        queue = target_session.retained_messages
        if queue.qsize() >= self.hooks.max_queued_messages:
            queue.get_nowait()  # the oldest goes, as with Mosquitto's max_queued_messages
            self.hooks.queued_dropped += 1
            self.hooks.warn_once("offline-queue-full", "offline MQTT client %r has %d queued "
                                 "messages; dropping the oldest", target_session.client_id, queue.qsize() + 1)
        await super()._retain_broadcast_message(broadcast, qos, target_session)
