"""The embedded broker of a real daemon under abuse from raw sockets on 127.0.0.1.

Silent and half-sent connections, a flood of sockets, an oversized PUBLISH,
refused publishes, QoS downgrade, refused telemetry, deny rules and protocol
errors: each is what a hostile or broken device on the plant network can do
without (or with) a login. One daemon serves the module: short timeouts, 512
descriptors (so that a flood of 600 sockets is real), its systemd socket watched
by the test, and a listener per test that reads the log, so that rate-limited
lines stay independent.
Counts and times are bounded: a few hundred sockets, timeouts of 1-2 s.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import aiomqtt
import msgpack
import pytest

from tests.e2e.daemon import PASSWORD, USER
from tests.e2e.hostile import OPS, OPS_PASSWORD, HostileDaemon
from tests.edge.broker.mqttraw import (
    PUBACK,
    PUBCOMP,
    PUBLISH,
    PUBREC,
    PUBREL,
    RawClient,
    close_all,
    connect_packet,
    fixed_header,
    open_silent,
    packet,
    publish_packet,
)

GOOD = msgpack.packb({"ts": 1_800_000_000.0, "sensors": {"temp": 70.5}})

ACL = """
[[broker.acl]]
username = "device"
publish = ["twin/+/telemetry", "plant/#"]
deny_publish = ["plant/secret/#"]
subscribe = ["#"]
deny_subscribe = ["plant/secret/#"]

[[broker.acl]]
username = "ops"
publish = ["#"]
"""


@pytest.fixture(scope="module")
def systemd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[socket.socket]:
    """The daemon's $NOTIFY_SOCKET: what systemd would hear (READY, STATUS, WATCHDOG)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(tmp_path_factory.mktemp("systemd") / "notify.sock"))
        sock.setblocking(False)
        yield sock


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, systemd: socket.socket) -> Iterator[HostileDaemon]:
    edge = HostileDaemon(
        tmp_path_factory.mktemp("hostile"),
        listeners={"main": "", "limited": "max_connections = 5", "proto": "", "slow": "", "flood": ""},
        broker_toml='connect_timeout = "1s"',
        extra_toml=ACL,
        nofile=512,  # a flood of 600 sockets is more than the daemon may open
        env={"NOTIFY_SOCKET": systemd.getsockname(), "WATCHDOG_USEC": "1000000"},
    )
    edge.start()
    yield edge
    assert edge.stop() == 0
    log = edge.log_text()
    assert "Traceback" not in log and "out of system resource" not in log
    assert "MQTT connections per listener: main 62, limited 5, proto 62, slow 62, flood 62 (the process may open " \
           "512 files; 256 are kept" in log


async def login(port: int, client_id: str, user: str = USER, password: str = PASSWORD, **kw: Any) -> RawClient:
    client, code, _ = await RawClient.connect(port, client_id, username=user, password=password, **kw)
    assert code == 0
    return client


async def counters_reach(daemon: HostileDaemon, expected: dict[str, int], within: float = 5.0) -> dict[str, Any]:
    """Wait until the status counters named in ``expected`` reach their values (they are counted just after
    the connection was closed or the publish acknowledged)."""
    async with asyncio.timeout(within):
        while True:
            mqtt = await daemon.mqtt()
            if all(_get(mqtt, key) >= value for key, value in expected.items()):
                return mqtt
            await asyncio.sleep(0.05)


async def counters_until(daemon: HostileDaemon, condition: Callable[[dict[str, Any]], bool]) -> None:
    async with asyncio.timeout(5):
        while not condition(await daemon.mqtt()):
            await asyncio.sleep(0.05)


def _listener(mqtt: dict[str, Any], name: str) -> dict[str, Any]:
    listener: dict[str, Any] = next(x for x in mqtt["listeners"] if x["name"] == name)
    return listener


def _get(mqtt: dict[str, Any], key: str) -> int:
    value: Any = mqtt
    for part in key.split("."):
        value = value.get(part, 0) if isinstance(value, dict) else 0
    return int(value)


def log_lines(daemon: HostileDaemon, *words: str) -> list[str]:
    return [line for line in daemon.log_text().splitlines() if all(w in line for w in words)]


async def test_connections_that_never_finish_connect_are_closed_after_the_connect_timeout(
    daemon: HostileDaemon,
) -> None:
    port = daemon.ports["slow"]
    before = await daemon.mqtt()
    silent = await RawClient.open(port)
    one_byte = await RawClient.open(port)
    await one_byte.send(b"\x10")
    partial = await RawClient.open(port)
    await partial.send(connect_packet("half", username=USER, password=PASSWORD)[:9])
    half_publish = await login(port, "half-publish", keepalive=1)  # 1.5 x keepalive: 2 s
    await half_publish.send(publish_packet("plant/x", b"y" * 100, qos=1)[:20])

    for client in (silent, one_byte, partial, half_publish):
        await client.wait_closed_by_peer(within=8)
        await client.abort()
    await counters_reach(daemon, {
        "connect_timeouts": before["connect_timeouts"] + 3, "stalled_packets": before["stalled_packets"] + 1
    })
    # Three timeouts, one line (the others are counted into the next summary).
    assert len(log_lines(daemon, "WARNING", "on listener slow: no complete CONNECT within 1 s")) == 1
    assert len(log_lines(daemon, "WARNING", "client 'half-publish'", "PUBLISH was left half sent for 2 s")) == 1


def test_sockets_the_client_closed_before_connect_are_released_at_once(daemon: HostileDaemon) -> None:
    port = daemon.ports["main"]
    before = asyncio.run(daemon.mqtt())
    baseline = daemon.descriptors()
    for wave in range(6):
        # Waves well below the listen backlog, each drained before the next: the kernel hands every
        # close to the daemon (an overflowing accept queue drops them, and the timeout must act).
        socks = open_silent(port, 50)
        for index, sock in enumerate(socks):
            if index % 2:
                sock.send(b"\x10" if wave % 2 else connect_packet("x")[:5])
        close_all(socks)
        deadline = time.monotonic() + 5
        while daemon.descriptors() > baseline + 5:  # not left half-closed until garbage collection
            assert time.monotonic() < deadline, f"{daemon.descriptors()} descriptors open 5 s later ({baseline} before)"
            time.sleep(0.02)
    # Released because the client closed them, not by the connect timeout a little later (a few may
    # still time out when the machine is so busy that the daemon reads nothing for a second).
    assert asyncio.run(daemon.mqtt())["connect_timeouts"] - before["connect_timeouts"] <= 10


async def test_a_full_listener_refuses_new_connections_at_once_and_silent_ones_give_way(
    daemon: HostileDaemon,
) -> None:
    port = daemon.ports["limited"]
    clients = [await login(port, f"limited-{n}") for n in range(5)]
    refused = []
    for _ in range(3):
        extra = await RawClient.open(port)
        await extra.wait_closed_by_peer(within=2)  # closed at once, not left waiting
        refused.append(extra)

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edge.cli", "status", "--socket", str(daemon.socket), stdout=subprocess.PIPE
    )
    async with asyncio.timeout(30):
        cli_out = (await proc.communicate())[0].decode()
    assert proc.returncode == 0
    mqtt = await counters_reach(daemon, {"refused_at_limit": 3})
    limited = _listener(mqtt, "limited")
    assert (limited["connections"], limited["limit"], limited["refused"]) == (5, 5, 3)
    assert "limited 5/5" in cli_out and "3 refused at the limit" in cli_out
    mqtt_lines = ("mqtt:" + cli_out.split("mqtt:")[1].split("cloud:")[0]).splitlines()
    assert max(len(line) for line in mqtt_lines) <= 100
    assert len(log_lines(daemon, "WARNING", "on listener limited: limit of 5 connections reached")) == 1

    # Connections that never send CONNECT do not lock devices out: the oldest gives way.
    for client in clients[:2]:
        await client.disconnect()
    await counters_until(daemon, lambda mqtt: _listener(mqtt, "limited")["connections"] == 3)
    silent = [await RawClient.open(port) for _ in range(4)]
    late = await login(port, "limited-late")
    await silent[0].wait_closed_by_peer(within=2)
    await counters_reach(daemon, {"closed_for_newer": 1})
    for client in [*clients[2:], *refused, *silent, late]:
        await client.abort()


async def test_an_oversized_publish_is_refused_from_its_header_without_reading_the_body(
    daemon: HostileDaemon,
) -> None:
    port = daemon.ports["main"]
    before = await daemon.mqtt()
    rss_before = daemon.rss_mb()
    client = await login(port, "oversize")
    announced = 200 * 1024 * 1024
    header = fixed_header(PUBLISH, 2, announced)
    chunk = b"\x00" * (1024 * 1024)
    try:
        await client.send(header + b"\x00\x07plant/x\x00\x01")
        for _ in range(32):  # 32 MB of the announced 200 MB, unless the broker hangs up first
            await client.send(chunk)
    except ConnectionError:
        pass
    await client.wait_closed_by_peer(within=5)
    await client.abort()
    await counters_reach(daemon, {"oversized_packets": before["oversized_packets"] + 1})
    assert daemon.rss_mb() - rss_before < 10
    assert log_lines(daemon, "WARNING", "client 'oversize'", "announced a PUBLISH of 209715200 bytes")


async def test_refused_publishes_are_acknowledged_counted_and_logged_for_every_topic(daemon: HostileDaemon) -> None:
    port = daemon.ports["main"]
    before = (await daemon.mqtt())["refused_publishes_by_kind"]
    device = await login(port, "acl-device")
    for packet_id, topic in enumerate(["hall/7/state", "plant/secret/recipe", "twin/press-1/telemetry"], start=1):
        await device.publish(topic, GOOD, qos=1, packet_id=packet_id)
        assert (await device.read_kind(PUBACK)).packet_id == packet_id  # MQTT 3.1.1 cannot refuse a PUBLISH
    await device.disconnect()
    mqtt = await counters_reach(daemon, {"refused_publishes_by_kind.other": before.get("other", 0) + 2})
    assert mqtt["refused_publishes_by_kind"].get("telemetry", 0) == before.get("telemetry", 0)
    assert log_lines(daemon, "WARNING", "'acl-device'", "may not publish to 'hall/7/state'")


async def test_delivery_qos_is_the_lower_of_publish_and_subscription_qos(daemon: HostileDaemon) -> None:
    port = daemon.ports["main"]
    async with aiomqtt.Client("127.0.0.1", port, username=USER, password=PASSWORD, identifier="qos-dash") as sub:
        await sub.subscribe("plant/line/#", qos=2)
        publisher = await login(port, "qos-pub")
        await publisher.publish("plant/line/1", b"at-qos-0", qos=0)
        await publisher.publish("plant/line/1", b"at-qos-1", qos=1, packet_id=1)
        await publisher.read_kind(PUBACK)
        got = []
        async with asyncio.timeout(10):
            async for message in sub.messages:
                got.append((bytes(message.payload), message.qos))  # type: ignore[arg-type]
                if len(got) == 2:
                    break
        await publisher.disconnect()
    assert got == [(b"at-qos-0", 0), (b"at-qos-1", 1)]


async def test_telemetry_the_edge_refused_is_not_forwarded_to_subscribers(daemon: HostileDaemon) -> None:
    port = daemon.ports["main"]
    dashboard = await login(port, "tele-dash")
    assert await dashboard.subscribe(1, ("twin/+/telemetry", 1)) == [1]
    device = await login(port, "press-9")
    await device.publish("twin/press-9/telemetry", b"garbage at qos 0", qos=0)
    await device.publish("twin/press-9/telemetry", b"garbage at qos 1", qos=1, packet_id=1)
    await device.read_kind(PUBACK)
    await device.publish("twin/press-9/telemetry", b"garbage at qos 2", qos=2, packet_id=2, retain=True)
    await device.read_kind(PUBREC)
    await device.ack(PUBREL, 2)
    await device.read_kind(PUBCOMP)
    await device.publish("twin/press-9/telemetry", GOOD, qos=1, packet_id=3)
    await device.read_kind(PUBACK)
    first = await dashboard.read_kind(PUBLISH)
    assert first.payload == GOOD  # none of the refused messages came before it
    late = await login(port, "tele-late")
    await late.subscribe(1, ("twin/press-9/telemetry", 0), ("plant/marker", 0))
    await device.publish("plant/marker", b"m", qos=0)
    assert (await late.read_kind(PUBLISH)).topic == "plant/marker"  # the refused one was not retained
    for client in (dashboard, device, late):
        await client.disconnect()


async def test_a_deny_entry_keeps_a_user_with_hash_out_of_some_topics(daemon: HostileDaemon) -> None:
    port = daemon.ports["main"]
    dashboard = await login(port, "deny-dash")
    assert await dashboard.subscribe(1, ("plant/secret/recipe", 0), ("#", 0)) == [0x80, 0]
    ops = await login(port, "deny-ops", OPS, OPS_PASSWORD)
    await ops.publish("plant/secret/recipe", b"secret", qos=1, packet_id=1)
    await ops.read_kind(PUBACK)
    await ops.publish("plant/open", b"open", qos=1, packet_id=2)
    await ops.read_kind(PUBACK)
    first = await dashboard.read_kind(PUBLISH)
    assert (first.topic, first.payload) == ("plant/open", b"open")  # '#' does not reach the denied topic
    for client in (dashboard, ops):
        await client.disconnect()


async def test_protocol_errors_close_the_connection_and_are_logged_with_the_address(daemon: HostileDaemon) -> None:
    port = daemon.ports["proto"]
    before = await daemon.mqtt()
    first_not_connect = await RawClient.open(port)
    await first_not_connect.send(packet(12, 0, b""))  # PINGREQ before CONNECT
    reserved = await login(port, "proto-reserved")
    await reserved.send(bytes([0xF0, 0x00]))
    second_connect = await login(port, "proto-second")
    await second_connect.send(connect_packet("proto-second", username=USER, password=PASSWORD))
    wildcard = await login(port, "proto-wildcard")
    await wildcard.publish("plant/+/state", b"x", qos=1, packet_id=1)
    bad_flags = await login(port, "proto-flags")
    await bad_flags.send(packet(8, 0, b"\x00\x01\x00\x01a\x00"))  # SUBSCRIBE must have flags 0010
    for client in (first_not_connect, reserved, second_connect, wildcard, bad_flags):
        await client.wait_closed_by_peer(within=5)
        await client.abort()
    await counters_reach(daemon, {"protocol_errors": before["protocol_errors"] + 5})
    lines = log_lines(daemon, "WARNING", "on listener proto: protocol error")
    assert len(lines) == 1 and "127.0.0.1:" in lines[0]  # one line a minute, naming the client's address


async def test_a_flood_of_idle_sockets_leaves_status_devices_and_the_watchdog_working(
    daemon: HostileDaemon, systemd: socket.socket
) -> None:
    port = daemon.ports["flood"]
    socks = open_silent(port, 600)  # more than the 512 descriptors the daemon may open
    try:
        assert len(socks) == 600
        _drain(systemd)
        assert await _pings(systemd, count=2) == 2  # the watchdog still pings during the flood
        device = await login(port, "flood-device")  # and a device still gets in
        await device.publish("twin/press-1/telemetry", GOOD, qos=1, packet_id=1)
        await device.read_kind(PUBACK)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "edge.cli", "status", "--socket", str(daemon.socket), stdout=subprocess.PIPE
        )
        async with asyncio.timeout(30):
            cli_out = (await proc.communicate())[0].decode()
        assert proc.returncode == 0 and "closed for newer" in cli_out
        await device.disconnect()
    finally:
        close_all(socks)
    assert daemon.alive()
    # Hundreds of connections closed, a line or two in the log.
    assert 1 <= len(log_lines(daemon, "on listener flood")) <= 2


def _drain(systemd: socket.socket) -> None:
    while True:
        try:
            systemd.recv(4096)
        except BlockingIOError:
            return


async def _pings(systemd: socket.socket, count: int) -> int:
    loop = asyncio.get_running_loop()
    pings = 0
    async with asyncio.timeout(10):
        while pings < count:
            if (await loop.sock_recv(systemd, 4096)) == b"WATCHDOG=1":
                pings += 1
    return pings
