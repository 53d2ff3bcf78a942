"""Telemetry from an external MQTT broker (e.g. the site's Mosquitto) instead of the embedded one.

The edge subscribes to the device topics as a client and feeds the same ingest
path as the embedded broker. With QoS 1 it keeps a persistent session
(clean_session = false) and acknowledges each message only after its frames
are committed, so the external broker redelivers whatever the edge had not
stored when it crashed or lost the connection. Reconnects with jittered capped
backoff. The MQTT connection itself is ``client_mqtt.MqttConnection`` (why not
aiomqtt/paho: see there).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Sequence
from typing import Any

from edge.broker.client_mqtt import MqttConnection, MqttError, Publish
from edge.broker.config import MqttClientConfig
from edge.broker.ingest import RejectReason, TelemetryIngest, alert_topic, group_by_device, republish_prefix
from edge.sources.base import Backoff, FrameSink, QueueFull, SourceHealth, SourceState
from shared.batch import AlertEvent
from shared.codec import encode_frames
from shared.errors import TwinedgeError
from shared.frame import TelemetryFrame

__all__ = ["ExternalMqttIngest"]

log = logging.getLogger(__name__)

PENDING_MAX = 20_000  # decoded messages waiting for a commit before reading pauses
CONNECT_TIMEOUT = 10.0


class _Pending:
    """Decoded messages waiting for their commit; bounded, so a slow store slows the reading."""

    def __init__(self) -> None:
        self.frames: list[TelemetryFrame] = []
        self.acks: list[int] = []  # QoS 1 packet ids, in arrival order
        self.count = 0
        self._changed = asyncio.Condition()

    async def add(self, frames: list[TelemetryFrame], messages: list[Publish]) -> None:
        """Hand a batch to the committer; waits while too much is pending."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.count < PENDING_MAX)
            self.frames.extend(frames)
            self.acks.extend(m.packet_id for m in messages if m.qos)
            self.count += len(messages)
            self._changed.notify_all()

    async def take(self) -> tuple[list[TelemetryFrame], list[int]]:
        async with self._changed:
            await self._changed.wait_for(lambda: self.count > 0)
            taken = self.frames, self.acks
            self.frames, self.acks, self.count = [], [], 0
            self._changed.notify_all()
            return taken


class ExternalMqttIngest:
    """Subscribe to device telemetry on an external broker; same run/started/snapshot as EmbeddedBroker."""

    def __init__(self, config: MqttClientConfig, sink: FrameSink, *, edge_id: str) -> None:
        self.config = config
        self.sink = sink
        self.edge_id = edge_id
        self.started = asyncio.Event()  # set while connected and subscribed
        self.disconnected = asyncio.Event()  # set while not connected after a first attempt
        self.ingest = TelemetryIngest(sink, max_payload=config.max_payload, max_frames=config.max_frames_per_message)
        self.health = SourceHealth(name=f"mqtt {config.host}:{config.port}", kind="mqtt_client")
        self._conn: MqttConnection | None = None
        self._backoff = Backoff(initial=0.5, maximum=30.0)

    @property
    def _where(self) -> str:
        return f"{self.config.host}:{self.config.port}"

    def _password(self) -> str | None:
        if self.config.password is not None:
            return self.config.password.get_secret_value()
        if self.config.password_file is not None:
            try:
                return self.config.password_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise TwinedgeError(f"cannot read MQTT password file {self.config.password_file}: {exc}") from None
        return None

    async def _connect(self, password: str | None, tls: ssl.SSLContext | None) -> MqttConnection:
        loop = asyncio.get_running_loop()
        # Larger than any payload we accept, plus the topic: bigger PUBLISHes are skipped, not buffered.
        max_packet = self.config.max_payload + 2 + 65535 + 2
        async with asyncio.timeout(CONNECT_TIMEOUT):
            _, conn = await loop.create_connection(
                lambda: MqttConnection(max_packet=max_packet, inbox_max=PENDING_MAX),
                self.config.host, self.config.port, ssl=tls,
            )
            try:
                await conn.connect(
                    self.config.client_id, clean_session=self.config.qos == 0,
                    keepalive=int(self.config.keepalive), username=self.config.username, password=password,
                )
            except BaseException:
                conn.close(disconnect=False)
                raise
        return conn

    def _tls_context(self) -> ssl.SSLContext | None:
        if not self.config.tls:
            return None
        try:
            return ssl.create_default_context(cafile=self.config.cafile)
        except (OSError, ssl.SSLError) as exc:
            raise TwinedgeError(f"cannot load mqtt_client.cafile {self.config.cafile}: {exc}") from None

    async def run(self) -> None:
        """Connect, subscribe and ingest until cancelled; reconnect with backoff on any broker trouble."""
        password = self._password()
        tls = self._tls_context()
        while True:
            problem = "the connection ended"
            try:
                conn = await self._connect(password, tls)
                try:
                    await self._session(conn)
                finally:
                    conn.close()  # DISCONNECT: the broker keeps the session, unacknowledged messages come again
            except (MqttError, QueueFull) as exc:  # refused frames stay unacknowledged: the broker sends them again
                problem = str(exc)
            except TimeoutError:
                problem = f"no answer within {CONNECT_TIMEOUT:.0f} s"
            except OSError as exc:  # refused, unreachable, TLS handshake
                problem = exc.strerror or str(exc)
            finally:
                self.started.clear()
                self.disconnected.set()
            delay = self._backoff.next_delay()
            self.health.errors += 1
            self.health.reconnects += 1
            self.health.set_state(SourceState.DISCONNECTED, f"MQTT broker {self._where}: {problem}", retry_in=delay)
            await asyncio.sleep(delay)

    async def _session(self, conn: MqttConnection) -> None:
        """Subscribe and ingest until the connection ends (raises MqttError then).

        Reading starts before SUBSCRIBE: a persistent session's queued messages
        arrive right after CONNACK, and with a large in-flight window they could
        otherwise fill the inbox and pause reading before the SUBACK is seen.
        """
        pending = _Pending()
        tasks = [
            asyncio.create_task(self._read_loop(conn, pending), name="mqtt-client-read"),
            asyncio.create_task(self._commit_loop(conn, pending), name="mqtt-client-commit"),
            asyncio.create_task(self._keepalive(conn), name="mqtt-client-keepalive"),
        ]
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                await conn.subscribe(self.config.topics, self.config.qos)
            self._conn = conn
            self._backoff.reset()
            self.health.set_state(SourceState.CONNECTED)
            self.disconnected.clear()
            self.started.set()
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # the MqttError that ended the connection, or a failed commit
            if conn.closed.done():
                conn.closed.result()  # why it ended (e.g. the keepalive gave up)
            raise MqttError("the connection ended")
        finally:
            self._conn = None
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _read_loop(self, conn: MqttConnection, pending: _Pending) -> None:
        """Decode messages as they arrive while ``_commit_loop`` commits what has gathered and acks it.

        Reading does not wait for the commit: while one transaction is written, the
        next one's messages are decoded. Each commit takes everything decoded since
        the previous one, so under load a few large transactions carry the whole
        in-flight window, and their PUBACKs leave in arrival order, in one write.
        """
        client_id = f"{self.config.client_id}@{self._where}"
        while True:
            batch = await conn.messages()  # raises MqttError when the connection ended
            frames: list[TelemetryFrame] = []
            for message in batch:
                frames.extend(await self._frames_of(message, client_id))
            await pending.add(frames, batch)

    async def _frames_of(self, message: Publish, client_id: str) -> list[TelemetryFrame]:
        if len(message.payload) == message.size:
            return await self.ingest.frames_of(message.topic, message.payload, client_id=client_id)
        # Skipped unread by the connection (larger than any packet we buffer): counted like any too-large payload.
        self.ingest.messages_in += 1
        self.ingest.bytes_in += message.size
        await self.ingest.reject(
            RejectReason.TOO_LARGE, f"{message.size} bytes exceeds the limit of {self.ingest.max_payload} bytes",
            topic=message.topic, client_id=client_id, payload=None,
        )
        return []

    async def _commit_loop(self, conn: MqttConnection, pending: _Pending) -> None:
        durable = self.config.qos > 0
        while True:
            frames, acks = await pending.take()
            if frames:
                await self.sink.put(frames, durable=durable)
                self.ingest.frames_in += len(frames)
                self.health.record_success(len(frames), sum(len(f.sensors) for f in frames))
            if acks:
                conn.ack(acks)

    async def _keepalive(self, conn: MqttConnection) -> None:
        """PINGREQ at half the keepalive; a broker silent for 1.5 keepalives is taken as gone."""
        keepalive = self.config.keepalive
        while True:
            await asyncio.sleep(keepalive / 2)
            if time.monotonic() - conn.last_received > keepalive * 1.5:
                conn.close(disconnect=False, problem=f"no answer from the broker for {keepalive * 1.5:.0f} s")
                return
            conn.ping()

    async def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """Publish at QoS 0 on the external broker (dropped while disconnected)."""
        conn = self._conn
        if conn is not None:
            conn.publish(topic, payload, retain=retain)

    async def publish_stored(self, frames: Sequence[TelemetryFrame]) -> None:
        """With ``republish = true``: one message per device on twinedge/<edge>/frames/<device>."""
        if not self.config.republish or self._conn is None:
            return
        for device, group in group_by_device(frames).items():
            await self.publish(republish_prefix(self.edge_id) + device, encode_frames(group))

    async def publish_alerts(self, alerts: Sequence[AlertEvent]) -> None:
        """After commit: each alert event on twin/<device_id>/alerts as JSON."""
        for alert in alerts:
            await self.publish(alert_topic(alert.device_id), alert.model_dump_json().encode())

    def snapshot(self) -> dict[str, Any]:
        return {
            "kind": "external",
            "broker": self._where,
            "running": self.started.is_set(),
            "health": self.health.snapshot(),
            "as_of": time.time(),
            **self.ingest.snapshot(),
        }
