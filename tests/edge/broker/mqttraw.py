"""A minimal MQTT 3.1.1 client speaking raw packets, for tests that need exact control.

Library clients acknowledge, ping and reconnect by themselves; checking what a
broker does when a client does *not* acknowledge, stays silent past its
keepalive or vanishes without DISCONNECT needs a client that does only what it is told.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from dataclasses import dataclass

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT = 8, 9, 10, 11, 12, 13, 14


def _str(value: str | bytes) -> bytes:
    raw = value.encode() if isinstance(value, str) else value
    return struct.pack("!H", len(raw)) + raw


def fixed_header(kind: int, flags: int, length: int) -> bytes:
    """A packet's fixed header announcing ``length`` bytes of body (which may then never come)."""
    out = bytearray([(kind << 4) | flags])
    while True:
        byte, length = length % 128, length // 128
        out.append(byte | (0x80 if length else 0))
        if not length:
            break
    return bytes(out)


def _packet(kind: int, flags: int, body: bytes) -> bytes:
    return fixed_header(kind, flags, len(body)) + body


def packet(kind: int, flags: int, body: bytes) -> bytes:
    """One MQTT packet: fixed header (type, flags, remaining length) and body."""
    return _packet(kind, flags, body)


def connect_packet(
    client_id: str,
    *,
    clean: bool = True,
    keepalive: int = 60,
    username: str | None = None,
    password: str | None = None,
    will: tuple[str, bytes, int, bool] | None = None,
) -> bytes:
    """The bytes of a CONNECT (MQTT 3.1.1), e.g. to send only part of it."""
    flags = (0x02 if clean else 0) | (0x80 if username is not None else 0) | (0x40 if password is not None else 0)
    payload = _str(client_id)
    if will is not None:
        topic, message, qos, retain = will
        flags |= 0x04 | (qos << 3) | (0x20 if retain else 0)
        payload += _str(topic) + _str(message)
    if username is not None:
        payload += _str(username)
    if password is not None:
        payload += _str(password)
    return _packet(CONNECT, 0, _str("MQTT") + bytes([4, flags]) + struct.pack("!H", keepalive) + payload)


def publish_packet(topic: str, payload: bytes, *, qos: int = 0, packet_id: int = 1, retain: bool = False) -> bytes:
    body = _str(topic) + (struct.pack("!H", packet_id) if qos else b"") + payload
    return _packet(PUBLISH, (qos << 1) | (1 if retain else 0), body)


@dataclass
class Packet:
    kind: int
    flags: int
    body: bytes

    @property
    def packet_id(self) -> int:
        if self.kind == PUBLISH:
            (tlen,) = struct.unpack("!H", self.body[:2])
            return int(struct.unpack("!H", self.body[2 + tlen : 4 + tlen])[0]) if self.qos else 0
        return int(struct.unpack("!H", self.body[:2])[0])

    @property
    def qos(self) -> int:
        return (self.flags >> 1) & 3

    @property
    def dup(self) -> bool:
        return bool(self.flags & 8)

    @property
    def retain(self) -> bool:
        return bool(self.flags & 1)

    @property
    def topic(self) -> str:
        (tlen,) = struct.unpack("!H", self.body[:2])
        return self.body[2 : 2 + tlen].decode()

    @property
    def payload(self) -> bytes:
        (tlen,) = struct.unpack("!H", self.body[:2])
        return self.body[2 + tlen + (2 if self.qos else 0) :]


class RawClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(
        cls,
        port: int,
        client_id: str,
        *,
        clean: bool = True,
        keepalive: int = 60,
        username: str | None = None,
        password: str | None = None,
        will: tuple[str, bytes, int, bool] | None = None,
    ) -> tuple[RawClient, int, bool]:
        """Open a connection and send CONNECT; returns (client, CONNACK return code, session present)."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        client = cls(reader, writer)
        await client.send(
            connect_packet(client_id, clean=clean, keepalive=keepalive, username=username, password=password, will=will)
        )
        connack = await client.read()
        assert connack.kind == CONNACK, connack
        return client, connack.body[1], bool(connack.body[0] & 1)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def read(self, within: float = 10.0) -> Packet:
        async with asyncio.timeout(within):
            header = await self.reader.readexactly(1)
            length, shift = 0, 0
            while True:
                byte = (await self.reader.readexactly(1))[0]
                length |= (byte & 0x7F) << shift
                shift += 7
                if not byte & 0x80:
                    break
            body = await self.reader.readexactly(length)
        return Packet(header[0] >> 4, header[0] & 0x0F, body)

    async def read_kind(self, kind: int, within: float = 10.0) -> Packet:
        """The next packet, which must be of ``kind``."""
        packet = await self.read(within)
        assert packet.kind == kind, f"expected packet type {kind}, got {packet.kind} {packet.body!r}"
        return packet

    @classmethod
    async def open(cls, port: int) -> RawClient:
        """A TCP connection that has sent nothing yet."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def publish(
        self, topic: str, payload: bytes, *, qos: int = 0, packet_id: int = 1, retain: bool = False, dup: bool = False
    ) -> None:
        body = _str(topic) + (struct.pack("!H", packet_id) if qos else b"") + payload
        flags = (qos << 1) | (1 if retain else 0) | (8 if dup else 0)
        await self.send(_packet(PUBLISH, flags, body))

    async def subscribe(self, packet_id: int, *filters: tuple[str, int]) -> list[int]:
        body = struct.pack("!H", packet_id) + b"".join(_str(f) + bytes([q]) for f, q in filters)
        await self.send(_packet(SUBSCRIBE, 2, body))
        suback = await self.read_kind(SUBACK)
        return list(suback.body[2:])

    async def ack(self, kind: int, packet_id: int) -> None:
        await self.send(_packet(kind, 2 if kind == PUBREL else 0, struct.pack("!H", packet_id)))

    async def ping(self) -> None:
        await self.send(_packet(PINGREQ, 0, b""))

    async def disconnect(self) -> None:
        await self.send(_packet(DISCONNECT, 0, b""))
        await self.abort()

    async def abort(self) -> None:
        """Vanish without DISCONNECT (a power cut at the device)."""
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, OSError):
            pass

    async def wait_closed_by_peer(self, within: float) -> None:
        """Read (and discard) until the broker closes the connection; TimeoutError if it does not."""
        async with asyncio.timeout(within):
            try:
                while await self.reader.read(4096):
                    pass
            except ConnectionError:
                pass  # an abort (RST) is a close too, also when it breaks a write still in progress


def open_silent(port: int, count: int, *, timeout: float | None = None) -> list[socket.socket]:
    """``count`` TCP connections to 127.0.0.1 that send nothing (stop early if the kernel refuses more)."""
    socks = []
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(("127.0.0.1", port))
        except OSError:
            sock.close()
            break
        socks.append(sock)
    return socks


def close_all(socks: list[socket.socket]) -> None:
    for sock in socks:
        sock.close()
