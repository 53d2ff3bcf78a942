"""Telemetry from an external MQTT broker (e.g. the site's Mosquitto) instead of the embedded one.

The edge subscribes to the device topics as a client (aiomqtt) and feeds the
same ingest path as the embedded broker. With QoS 1 it keeps a persistent
session (clean_session = false) and acknowledges each message only after the
frames are committed, so the external broker redelivers whatever the edge had
not stored when it crashed or lost the connection. Reconnects with jittered
capped backoff.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Sequence
from typing import Any

import aiomqtt
import paho.mqtt.client as paho

from edge.broker.config import MqttClientConfig
from edge.broker.embedded import group_by_device
from edge.broker.ingest import TelemetryIngest
from edge.sources.base import Backoff, FrameSink, SourceHealth, SourceState
from shared.codec import encode_frames
from shared.errors import TwinedgeError
from shared.frame import TelemetryFrame

__all__ = ["ExternalMqttIngest"]

log = logging.getLogger(__name__)

BATCH_MAX = 1000  # messages read from the inbox in one go
PENDING_MAX = 20_000  # decoded messages waiting for a commit before reading pauses


def _paho_of(client: aiomqtt.Client) -> paho.Client:
    """aiomqtt exposes no manual-ack switch; paho (2.x) has one. This is the one place we reach in."""
    return client._client  # noqa: SLF001


class _Pending:
    """Decoded messages waiting for their commit; bounded, so a slow store slows the reading."""

    def __init__(self) -> None:
        self.frames: list[TelemetryFrame] = []
        self.messages: list[aiomqtt.Message] = []
        self._changed = asyncio.Condition()

    def add(self, frames: list[TelemetryFrame], message: aiomqtt.Message) -> None:
        self.frames.extend(frames)
        self.messages.append(message)

    async def room(self) -> None:
        """Wake the committer, and wait while too much is pending."""
        async with self._changed:
            self._changed.notify_all()
            await self._changed.wait_for(lambda: len(self.messages) < PENDING_MAX)

    async def take(self) -> tuple[list[TelemetryFrame], list[aiomqtt.Message]]:
        async with self._changed:
            await self._changed.wait_for(lambda: bool(self.messages))
            taken = self.frames, self.messages
            self.frames, self.messages = [], []
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
        self._client: aiomqtt.Client | None = None
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

    def _make_client(self, password: str | None) -> tuple[aiomqtt.Client, asyncio.Queue[aiomqtt.Message]]:
        inboxes: list[asyncio.Queue[aiomqtt.Message]] = []

        class _Inbox(asyncio.Queue[aiomqtt.Message]):  # aiomqtt builds its queue from this class
            def __init__(self, maxsize: int = 0) -> None:
                super().__init__(maxsize)
                inboxes.append(self)

        tls_context = ssl.create_default_context(cafile=self.config.cafile) if self.config.tls else None
        persistent = self.config.qos > 0
        client = aiomqtt.Client(
            self.config.host,
            self.config.port,
            username=self.config.username,
            password=password,
            identifier=self.config.client_id,
            clean_session=not persistent,
            keepalive=int(self.config.keepalive),
            timeout=10.0,
            queue_type=_Inbox,
            tls_context=tls_context,
            max_inflight_messages=1000,
        )
        paho_client = _paho_of(client)
        # paho logs two DEBUG lines per message through aiomqtt's logger: measurable at 20k msgs/s.
        paho_client.disable_logger()
        if persistent:
            # Before connecting: a persistent session's queued messages arrive right after CONNACK.
            paho_client.manual_ack_set(True)
        return client, inboxes[0]

    async def run(self) -> None:
        """Connect, subscribe and ingest until cancelled; reconnect with backoff on any broker trouble."""
        password = self._password()
        while True:
            client, inbox = self._make_client(password)
            problem = "the connection ended"
            try:
                async with client:
                    for topic in self.config.topics:
                        await client.subscribe(topic, qos=self.config.qos)
                    self._client = client
                    self._backoff.reset()
                    self.health.set_state(SourceState.CONNECTED)
                    self.disconnected.clear()
                    self.started.set()
                    await self._consume(client, inbox)
            except aiomqtt.MqttError as exc:
                problem = str(exc)
            finally:
                self._client = None
                self.started.clear()
                self.disconnected.set()
            delay = self._backoff.next_delay()
            self.health.errors += 1
            self.health.reconnects += 1
            self.health.set_state(
                SourceState.DISCONNECTED, f"MQTT broker {self._where}: {problem}; retrying in {delay:.1f} s"
            )
            await asyncio.sleep(delay)

    async def _consume(self, client: aiomqtt.Client, inbox: asyncio.Queue[aiomqtt.Message]) -> None:
        """Decode messages as they arrive; a second task commits what has gathered and acks it.

        Reading does not wait for the commit: while one transaction is written, the
        next one's messages are already being decoded. Each commit takes everything
        decoded since the previous one, so under load a few large transactions carry
        the whole in-flight window, and their PUBACKs leave in arrival order.
        """
        pending = _Pending()
        client_id = f"{self.config.client_id}@{self._where}"
        committer = asyncio.create_task(self._commit_loop(client, pending), name="mqtt-client-commit")
        try:
            async for first in client.messages:  # raises MqttError when the connection drops
                batch = [first]
                while len(batch) < BATCH_MAX and not inbox.empty():
                    batch.append(inbox.get_nowait())
                for message in batch:
                    payload = message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
                    frames = await self.ingest.frames_of(message.topic.value, payload, client_id=client_id)
                    pending.add(frames, message)
                await pending.room()
                if committer.done():
                    committer.result()  # a commit that failed: raise its error here
        finally:
            committer.cancel()
            await asyncio.gather(committer, return_exceptions=True)

    async def _commit_loop(self, client: aiomqtt.Client, pending: _Pending) -> None:
        ack = _paho_of(client).ack
        durable = self.config.qos > 0
        while True:
            frames, messages = await pending.take()
            if frames:
                await self.sink.put(frames, durable=durable)
                self.ingest.frames_in += len(frames)
                self.health.record_success(len(frames), sum(len(f.sensors) for f in frames))
            for message in messages:
                if message.qos > 0:
                    ack(message.mid, message.qos)

    async def publish(self, topic: str, payload: bytes, *, qos: int = 0, retain: bool = False) -> None:
        """Publish on the external broker (dropped while disconnected)."""
        client = self._client
        if client is None:
            return
        try:
            await client.publish(topic, payload, qos=qos, retain=retain)
        except aiomqtt.MqttError as exc:
            log.debug("publish to %s on %s failed: %s", topic, self._where, exc)

    async def publish_stored(self, frames: Sequence[TelemetryFrame]) -> None:
        """With ``republish = true``: one message per device on twinedge/<edge>/frames/<device>."""
        if not self.config.republish or self._client is None:
            return
        for device, group in group_by_device(frames).items():
            await self.publish(f"twinedge/{self.edge_id}/frames/{device}", encode_frames(group))

    def snapshot(self) -> dict[str, Any]:
        return {
            "kind": "external",
            "broker": self._where,
            "running": self.started.is_set(),
            "health": self.health.snapshot(),
            "as_of": time.time(),
            **self.ingest.snapshot(),
        }
