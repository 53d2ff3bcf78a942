"""Simulated MQTT field devices for end-to-end tests: QoS 1 publishers that know what was acknowledged."""

from __future__ import annotations

import asyncio
import json

from tests.e2e.daemon import PASSWORD, USER
from tests.edge.broker.mqttraw import PUBACK, RawClient

T0 = 1_790_000_000.0  # in the past: the cloud refuses frames dated ahead of its clock


class Device:
    """Publishes frames ts = T0 + i, sensors {"i": i}, one at a time, and remembers which were acknowledged.

    A device that lost its connection resends the frame it had in flight, as a
    real MQTT device does.
    """

    def __init__(self, name: str, *, pace: float = 0.0) -> None:
        self.name = name
        self.pace = pace
        self.next = 0  # the next frame to publish (or to resend when not yet acked)
        self.acked: list[int] = []
        self.progress = asyncio.Event()

    def payload(self, i: int) -> bytes:
        return json.dumps({"ts": T0 + i, "device_id": self.name, "sensors": {"i": i}}).encode()

    async def publish_until_cut(self, port: int, stop: asyncio.Event | None = None) -> None:
        """Publish until the connection breaks (returns) or ``stop`` is set."""
        try:
            client, code, _ = await RawClient.connect(port, self.name, username=USER, password=PASSWORD)
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        assert code == 0, f"CONNACK {code}"
        try:
            while stop is None or not stop.is_set():
                packet_id = self.next % 65535 + 1
                await client.publish(f"twin/{self.name}/telemetry", self.payload(self.next), qos=1,
                                     packet_id=packet_id)
                ack = await client.read_kind(PUBACK)
                assert ack.packet_id == packet_id
                self.acked.append(self.next)
                self.next += 1
                self.progress.set()
                if self.pace:
                    await asyncio.sleep(self.pace)
        except (ConnectionError, asyncio.IncompleteReadError):
            return  # the broker went away mid-publish: resend self.next after the restart
        finally:
            await client.abort()
