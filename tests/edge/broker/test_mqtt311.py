"""What field devices rely on from MQTT 3.1.1, checked against the embedded broker with a raw client.

Retained messages, QoS 1/2 redelivery after a reconnect, queueing for offline
persistent sessions, keepalive timeouts and will messages. Several of these fail
on plain amqtt 0.12.1 and pass only through our corrections in
edge/broker/amqtt_glue.py, so they also guard those overrides across upgrades.
Absence of a message is checked with a marker: the broker delivers in order, so
if the marker arrives first, the unwanted message was not sent before it.
"""

from __future__ import annotations

from tests.edge.broker.conftest import BrokerFactory
from tests.edge.broker.mqttraw import PUBACK, PUBCOMP, PUBLISH, PUBREC, PUBREL, RawClient


async def test_retained_message_reaches_later_subscriber_and_empty_payload_clears_it(
    start_broker: BrokerFactory, port: int
) -> None:
    async with start_broker():
        pub, rc, _ = await RawClient.connect(port, "pub")
        assert rc == 0
        await pub.publish("plant/line1/state", b"running", qos=1, packet_id=1, retain=True)
        await pub.read_kind(PUBACK)

        sub, _, _ = await RawClient.connect(port, "sub")
        assert await sub.subscribe(1, ("plant/+/state", 1)) == [1]
        got = await sub.read_kind(PUBLISH)
        assert (got.topic, got.payload, got.retain) == ("plant/line1/state", b"running", True)
        await sub.ack(PUBACK, got.packet_id)

        await pub.publish("plant/line1/state", b"", qos=1, packet_id=2, retain=True)
        await pub.read_kind(PUBACK)
        late, _, _ = await RawClient.connect(port, "late")
        await late.subscribe(1, ("plant/+/state", 0), ("marker", 0))
        await pub.publish("marker", b"m", qos=0)
        assert (await late.read_kind(PUBLISH)).topic == "marker"  # nothing retained any more
        for client in (pub, sub, late):
            await client.disconnect()


async def test_qos1_delivery_is_repeated_with_dup_after_reconnect(start_broker: BrokerFactory, port: int) -> None:
    async with start_broker():
        sub, _, _ = await RawClient.connect(port, "dashboard", clean=False)
        await sub.subscribe(1, ("alerts/#", 1))
        pub, _, _ = await RawClient.connect(port, "pub")
        await pub.publish("alerts/press-3", b"overtemp", qos=1, packet_id=5)
        await pub.read_kind(PUBACK)

        first = await sub.read_kind(PUBLISH)
        assert first.payload == b"overtemp" and not first.dup
        await sub.abort()  # lost before acknowledging

        sub, rc, present = await RawClient.connect(port, "dashboard", clean=False)
        assert (rc, present) == (0, True)
        again = await sub.read_kind(PUBLISH)
        assert (again.payload, again.qos, again.dup) == (b"overtemp", 1, True)
        await sub.ack(PUBACK, again.packet_id)
        await sub.disconnect()
        await pub.disconnect()


async def test_qos2_delivery_is_repeated_after_reconnect_then_completes(start_broker: BrokerFactory, port: int) -> None:
    async with start_broker():
        sub, _, _ = await RawClient.connect(port, "recorder", clean=False)
        await sub.subscribe(1, ("recipes/#", 2))
        pub, _, _ = await RawClient.connect(port, "pub")
        await pub.publish("recipes/r7", b"v2", qos=2, packet_id=9)
        await pub.read_kind(PUBREC)
        await pub.ack(PUBREL, 9)
        await pub.read_kind(PUBCOMP)

        first = await sub.read_kind(PUBLISH)
        assert first.qos == 2
        await sub.abort()

        sub, _, _ = await RawClient.connect(port, "recorder", clean=False)
        again = await sub.read_kind(PUBLISH)
        assert (again.payload, again.qos, again.dup) == (b"v2", 2, True)
        await sub.ack(PUBREC, again.packet_id)
        rel = await sub.read_kind(PUBREL)
        assert rel.packet_id == again.packet_id
        await sub.ack(PUBCOMP, again.packet_id)
        await sub.disconnect()
        await pub.disconnect()


async def test_offline_persistent_session_gets_queued_messages_in_order_without_retain(
    start_broker: BrokerFactory, port: int
) -> None:
    async with start_broker():
        sub, _, _ = await RawClient.connect(port, "hmi-1", clean=False)
        await sub.subscribe(1, ("orders/#", 1))
        await sub.disconnect()

        pub, _, _ = await RawClient.connect(port, "pub")
        for n in range(3):
            await pub.publish("orders/new", f"o{n}".encode(), qos=1, packet_id=n + 1)
            await pub.read_kind(PUBACK)

        sub, rc, present = await RawClient.connect(port, "hmi-1", clean=False)
        assert (rc, present) == (0, True)
        got = []
        for _ in range(3):
            packet = await sub.read_kind(PUBLISH)
            got.append((packet.payload, packet.retain))
            await sub.ack(PUBACK, packet.packet_id)
        assert got == [(b"o0", False), (b"o1", False), (b"o2", False)]
        await sub.disconnect()
        await pub.disconnect()


async def test_offline_queue_is_bounded_oldest_dropped(start_broker: BrokerFactory, port: int) -> None:
    async with start_broker(max_queued_messages=2) as broker:
        sub, _, _ = await RawClient.connect(port, "slow", clean=False)
        await sub.subscribe(1, ("q/#", 1))
        await sub.disconnect()
        pub, _, _ = await RawClient.connect(port, "pub")
        for n in range(5):
            await pub.publish("q/x", str(n).encode(), qos=1, packet_id=n + 1)
            await pub.read_kind(PUBACK)
        sub, _, _ = await RawClient.connect(port, "slow", clean=False)
        payloads = []
        for _ in range(2):
            packet = await sub.read_kind(PUBLISH)
            payloads.append(packet.payload)
            await sub.ack(PUBACK, packet.packet_id)
        assert payloads == [b"3", b"4"]
        assert broker.snapshot()["offline_queue_dropped"] == 3
        await sub.disconnect()
        await pub.disconnect()


async def test_silent_client_is_disconnected_after_one_and_a_half_keepalives_and_its_will_sent(
    start_broker: BrokerFactory, port: int
) -> None:
    async with start_broker():
        watcher, _, _ = await RawClient.connect(port, "watcher")
        await watcher.subscribe(1, ("status/#", 1))
        device, rc, _ = await RawClient.connect(
            port, "plc-7", keepalive=1, will=("status/plc-7", b"offline", 1, False)
        )
        assert rc == 0
        await device.wait_closed_by_peer(within=10)  # never pinged: the broker must hang up
        await device.abort()
        will = await watcher.read_kind(PUBLISH)
        assert (will.topic, will.payload) == ("status/plc-7", b"offline")
        await watcher.disconnect()


async def test_will_is_sent_on_abrupt_loss_but_not_after_disconnect(start_broker: BrokerFactory, port: int) -> None:
    async with start_broker():
        watcher, _, _ = await RawClient.connect(port, "watcher")
        await watcher.subscribe(1, ("status/#", 0))
        polite, _, _ = await RawClient.connect(port, "polite", will=("status/polite", b"gone", 0, False))
        await polite.disconnect()
        crash, _, _ = await RawClient.connect(port, "crash", will=("status/crash", b"gone", 0, True))
        await crash.abort()
        will = await watcher.read_kind(PUBLISH)
        assert will.topic == "status/crash"  # the polite client's will never came first

        late, _, _ = await RawClient.connect(port, "late")
        await late.subscribe(1, ("status/#", 0))
        retained = await late.read_kind(PUBLISH)
        assert (retained.topic, retained.retain) == ("status/crash", True)  # will_retain honoured
        await watcher.disconnect()
        await late.disconnect()


async def test_reconnecting_client_gets_no_retained_messages_of_other_clients_subscriptions(
    start_broker: BrokerFactory, port: int
) -> None:
    async with start_broker():
        pub, _, _ = await RawClient.connect(port, "pub")
        await pub.publish("secret/recipe", b"s", qos=1, packet_id=1, retain=True)
        await pub.read_kind(PUBACK)
        other, _, _ = await RawClient.connect(port, "other")
        await other.subscribe(1, ("secret/#", 0))
        await other.read_kind(PUBLISH)

        newcomer, _, _ = await RawClient.connect(port, "newcomer")
        await newcomer.subscribe(1, ("marker", 0))
        await pub.publish("marker", b"m", qos=0)
        first = await newcomer.read_kind(PUBLISH)
        assert first.topic == "marker"  # amqtt alone would first push secret/recipe here
        for client in (pub, other, newcomer):
            await client.disconnect()


async def test_pubrel_is_resent_after_reconnect_when_pubcomp_was_lost(start_broker: BrokerFactory, port: int) -> None:
    async with start_broker():
        sub, _, _ = await RawClient.connect(port, "recorder", clean=False)
        await sub.subscribe(1, ("recipes/#", 2))
        pub, _, _ = await RawClient.connect(port, "pub")
        await pub.publish("recipes/r8", b"v3", qos=2, packet_id=2)
        await pub.read_kind(PUBREC)
        await pub.ack(PUBREL, 2)
        await pub.read_kind(PUBCOMP)

        first = await sub.read_kind(PUBLISH)
        await sub.ack(PUBREC, first.packet_id)
        await sub.read_kind(PUBREL)
        await sub.abort()  # PUBCOMP never sent

        sub, _, present = await RawClient.connect(port, "recorder", clean=False)
        assert present
        rel = await sub.read_kind(PUBREL)
        assert rel.packet_id == first.packet_id
        await sub.ack(PUBCOMP, rel.packet_id)
        await sub.disconnect()
        await pub.disconnect()


async def test_delivery_qos_is_the_lower_of_publish_and_subscription_qos(
    start_broker: BrokerFactory, port: int
) -> None:
    async with start_broker():
        sub, _, _ = await RawClient.connect(port, "sub")
        assert await sub.subscribe(1, ("q/#", 2)) == [2]
        low, _, _ = await RawClient.connect(port, "low")
        assert await low.subscribe(1, ("q/#", 0)) == [0]
        pub, _, _ = await RawClient.connect(port, "pub")
        await pub.publish("q/a", b"zero", qos=0)
        await pub.publish("q/a", b"one", qos=1, packet_id=1)
        await pub.read_kind(PUBACK)
        got = []
        for _ in range(2):
            packet = await sub.read_kind(PUBLISH)
            got.append((packet.payload, packet.qos))  # amqtt alone: both at QoS 2
            if packet.qos:
                await sub.ack(PUBACK, packet.packet_id)
        assert got == [(b"zero", 0), (b"one", 1)]
        assert [(await low.read_kind(PUBLISH)).qos for _ in range(2)] == [0, 0]
        for client in (sub, low, pub):
            await client.disconnect()


async def test_retained_and_will_messages_are_delivered_at_the_lower_qos_too(
    start_broker: BrokerFactory, port: int
) -> None:
    async with start_broker():
        pub, _, _ = await RawClient.connect(port, "pub")
        await pub.publish("plant/mode", b"auto", qos=0, retain=True)
        watcher, _, _ = await RawClient.connect(port, "watcher")
        await watcher.subscribe(1, ("plant/#", 1), ("status/#", 0))
        retained = await watcher.read_kind(PUBLISH)
        assert (retained.payload, retained.qos) == (b"auto", 0)  # amqtt alone: QoS 1
        device, _, _ = await RawClient.connect(port, "plc-9", will=("status/plc-9", b"offline", 1, False))
        await device.abort()
        will = await watcher.read_kind(PUBLISH)
        assert (will.payload, will.qos) == (b"offline", 0)  # amqtt alone: the will's QoS 1
        await watcher.disconnect()
        await pub.disconnect()


async def test_a_qos0_message_is_not_queued_for_an_offline_session(start_broker: BrokerFactory, port: int) -> None:
    async with start_broker():
        sub, _, _ = await RawClient.connect(port, "hmi-2", clean=False)
        await sub.subscribe(1, ("orders/#", 1))
        await sub.disconnect()
        pub, _, _ = await RawClient.connect(port, "pub")
        await pub.publish("orders/new", b"fire-and-forget", qos=0)
        await pub.publish("orders/new", b"kept", qos=1, packet_id=1)
        await pub.read_kind(PUBACK)
        sub, _, present = await RawClient.connect(port, "hmi-2", clean=False)
        assert present
        first = await sub.read_kind(PUBLISH)
        assert (first.payload, first.qos) == (b"kept", 1)
        await sub.ack(PUBACK, first.packet_id)
        await sub.disconnect()
        await pub.disconnect()
