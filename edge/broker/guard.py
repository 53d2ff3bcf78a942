"""What a TCP connection may cost the broker before and while it speaks MQTT.

Every connection accepted on a listener passes a ``ConnectionGuard`` before
amqtt sees it, and every byte amqtt reads from it passes a ``GuardedReader``:

- **Connections per listener.** When a listener holds ``limit`` connections, a
  connection that has not finished CONNECT yet gives way to the new one (the one
  that has waited longest is closed: a flood of silent sockets cannot lock real
  devices out); when every slot holds a client that did connect, the new
  connection is refused, closed at once. Limits are derived from the process's
  file-descriptor limit so that the queue, the control socket, the uplink and
  the watchdog always find a descriptor (``connection_limits``).
- **Time.** CONNECT (and, on a TLS listener, the handshake) must be complete
  ``connect_timeout`` after the connection was accepted. After CONNECT, a packet
  whose first byte arrived must be complete within 1.5 x the client's keepalive
  (``connect_timeout`` for a client without keepalive); between packets amqtt's
  keepalive timeout applies.
- **Size and framing.** The fixed header of each packet is checked as soon as it
  is read, before the body: a remaining length above ``max_packet_size`` closes
  the connection without reading the body, and so do packets MQTT 3.1.1 forbids
  (first packet not CONNECT, a second CONNECT, server-only or reserved packet
  types, wrong header flags, PUBLISH with QoS 3 or DUP at QoS 0, impossible lengths).

Each closure is counted for ``twinedge status`` and logged at WARNING with the
client's address, at most one line per kind per minute (with the count).
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from amqtt.adapters import StreamReaderAdapter

from edge.logthrottle import Throttle

__all__ = [
    "GUARD_COUNTERS",
    "RESERVED_DESCRIPTORS",
    "Closed",
    "Connection",
    "ConnectionGuard",
    "GuardedReader",
    "ListenerLimit",
    "connection_limits",
]

log = logging.getLogger(__name__)

RESERVED_DESCRIPTORS = 128  # kept for SQLite, the control socket, the uplink, sources, sd_notify, model files
DEFAULT_MAX_CONNECTIONS = 1000
# A listener accepts up to 16 sockets per loop iteration (amqtt_glue.ACCEPT_BATCH), and a few iterations
# pass before the guard sees them: a flood holds some descriptors beyond the limit (measured: < 100).
BURST_SHARE = 8  # an eighth of the descriptor limit (at least 128) is kept for that

CONNECT, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 3, 4, 5, 6, 7
SUBSCRIBE, UNSUBSCRIBE, PINGREQ, DISCONNECT = 8, 10, 12, 14
_FLAGS = {CONNECT: 0, PUBACK: 0, PUBREC: 0, PUBREL: 2, PUBCOMP: 0, SUBSCRIBE: 2, UNSUBSCRIBE: 2, PINGREQ: 0,
          DISCONNECT: 0}  # required fixed-header flags [MQTT-2.2.2-2]; PUBLISH is checked on its own
_EXACT_LENGTH = {PUBACK: 2, PUBREC: 2, PUBREL: 2, PUBCOMP: 2, PINGREQ: 0, DISCONNECT: 0}
_MIN_LENGTH = {CONNECT: 12, PUBLISH: 2, SUBSCRIBE: 5, UNSUBSCRIBE: 4}
_NAMES = {CONNECT: "CONNECT", PUBLISH: "PUBLISH", PUBACK: "PUBACK", PUBREC: "PUBREC", PUBREL: "PUBREL",
          PUBCOMP: "PUBCOMP", SUBSCRIBE: "SUBSCRIBE", UNSUBSCRIBE: "UNSUBSCRIBE", PINGREQ: "PINGREQ",
          DISCONNECT: "DISCONNECT"}


class Closed:
    """Why the guard closed a connection: the keys of the counters in ``status``."""

    REFUSED = "refused_at_limit"
    GAVE_WAY = "closed_for_newer"
    CONNECT_TIMEOUT = "connect_timeouts"
    STALLED = "stalled_packets"
    OVERSIZED = "oversized_packets"
    PROTOCOL = "protocol_errors"


GUARD_COUNTERS = (Closed.REFUSED, Closed.GAVE_WAY, Closed.CONNECT_TIMEOUT, Closed.STALLED, Closed.OVERSIZED,
                  Closed.PROTOCOL)


@dataclass(frozen=True)
class ListenerLimit:
    name: str  # as in the config
    limit: int
    tls: Any = None  # an ssl.SSLContext for a TLS listener (the handshake runs under the connect timeout)


def connection_limits(
    configured: Sequence[tuple[str, int | None]], files: int | None = None
) -> tuple[dict[str, int], str, bool]:
    """Per-listener connection limits that fit the process's descriptor limit (``files``, default RLIMIT_NOFILE).

    ``configured``: (listener name, max_connections or None). Configured limits
    are kept while they fit (scaled down together when they do not); listeners
    without one share the rest, up to 1000 each. Returns (limits, an explanation
    for the log, whether a configured limit had to be lowered).
    """
    if files is None:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        files = soft if soft != resource.RLIM_INFINITY else 1 << 20
    kept = RESERVED_DESCRIPTORS + max(128, files // BURST_SHARE)
    budget = max(len(configured), files - kept)
    explicit = {name: limit for name, limit in configured if limit is not None}
    automatic = [name for name, limit in configured if limit is None]
    room = budget - len(automatic)  # each automatic listener keeps at least one connection
    total = sum(explicit.values())
    lowered = total > room
    if lowered:
        explicit = {name: max(1, limit * room // total) for name, limit in explicit.items()}
    share = (budget - sum(explicit.values())) // len(automatic) if automatic else 0
    limits = {name: explicit.get(name) or max(1, min(DEFAULT_MAX_CONNECTIONS, share)) for name, _ in configured}
    why = f"the process may open {files} files; {kept} are kept for the queue, control socket, uplink, sources " \
          "and bursts of new connections"
    return limits, why, lowered


@dataclass
class _Listener:
    name: str
    limit: int
    tls: Any
    active: set[Connection] = field(default_factory=set)
    waiting: dict[Connection, None] = field(default_factory=dict)  # not yet CONNECTed, oldest first
    refused: int = 0


class ConnectionGuard:
    """Admits connections to listeners within their limits and counts what it closes."""

    def __init__(self, listeners: dict[str, ListenerLimit], *, connect_timeout: float, packet_limit: int) -> None:
        self.connect_timeout = connect_timeout
        self.packet_limit = packet_limit
        self.closed: Counter[str] = Counter()
        self._listeners = {key: _Listener(x.name, x.limit, x.tls) for key, x in listeners.items()}
        self._throttle = Throttle(log)
        self._open = 0
        self._idle = asyncio.Event()  # set while no connection is being handled
        self._idle.set()
        self._closing = False

    def tls_context(self, key: str) -> Any:
        return self._listeners[key].tls

    def admit(self, key: str, transport: asyncio.WriteTransport) -> Connection | None:
        """A Connection for the new socket, or None when it was refused (and closed)."""
        if self._closing:
            transport.abort()  # accepted just before the listener closed
            return None
        listener = self._listeners[key]
        peer = _peer(transport)
        if len(listener.active) >= listener.limit:
            if listener.waiting:
                oldest = next(iter(listener.waiting))
                waited = time.monotonic() - oldest.accepted_at
                oldest.close(Closed.GAVE_WAY, f"it had not sent CONNECT after {waited:.1f} s and listener "
                             f"{listener.name} is full ({listener.limit} connections); newer connections go first")
                self._forget(oldest)
            else:
                listener.refused += 1
                self.closed[Closed.REFUSED] += 1
                self._throttle.warning(f"{Closed.REFUSED}:{key}", "refused a connection from %s on listener %s: "
                                       "limit of %d connections reached", peer, listener.name, listener.limit)
                transport.abort()
                return None
        conn = Connection(self, listener, transport, peer)
        listener.active.add(conn)
        listener.waiting[conn] = None
        self._open += 1
        self._idle.clear()
        return conn

    def connected(self, conn: Connection) -> None:
        """The first packet (CONNECT) was read: the connection no longer gives way to newer ones."""
        conn.listener.waiting.pop(conn, None)

    def release(self, conn: Connection) -> None:
        """The connection's handling ended: free its slot and its socket (no half-closed leftovers)."""
        self._forget(conn)
        conn.stop_timer()
        if not conn.transport.is_closing():
            conn.transport.abort()
        self._open -= 1
        if not self._open:
            self._idle.set()

    def _forget(self, conn: Connection) -> None:
        conn.listener.active.discard(conn)
        conn.listener.waiting.pop(conn, None)

    def report(self, kind: str, conn: Connection, detail: str) -> None:
        self.closed[kind] += 1
        who = f"client {conn.client_id!r} from {conn.peer}" if conn.client_id is not None else conn.peer
        self._throttle.warning(f"{kind}:{conn.listener.name}", "closed the MQTT connection of %s on listener %s: %s",
                               who, conn.listener.name, detail)

    def snapshot(self) -> dict[str, Any]:
        return {
            "listeners": {
                x.name: {"connections": len(x.active), "limit": x.limit, "refused": x.refused}
                for x in self._listeners.values()
            },
            **{kind: self.closed[kind] for kind in GUARD_COUNTERS},
        }

    async def close(self, within: float = 2.0) -> None:
        """Drop every connection still open and wait (bounded) until their handling has ended.

        Left to the end of the event loop, a connection's task would be cancelled there,
        and Python 3.11 reports every such task with a traceback.
        """
        self._closing = True
        for _ in range(5):  # connections accepted before the listeners closed reach admit() and are dropped
            await asyncio.sleep(0)
        for listener in self._listeners.values():
            for conn in list(listener.active):
                if not conn.transport.is_closing():
                    conn.transport.abort()
        try:
            async with asyncio.timeout(within):
                await self._idle.wait()
        except TimeoutError:
            log.warning("%d MQTT connections were still being handled at shutdown", self._open)
        await asyncio.sleep(0)  # the sockets of the aborts above close in the next iteration
        self._throttle.close()


def _peer(transport: asyncio.WriteTransport) -> str:
    info = transport.get_extra_info("peername")
    if isinstance(info, tuple) and len(info) >= 2:
        host = f"[{info[0]}]" if ":" in str(info[0]) else str(info[0])
        return f"{host}:{info[1]}"
    return "an unknown address"


_TYPE, _LENGTH, _BODY = 0, 1, 2


class Connection:
    """One accepted socket: its deadlines and the framing of what amqtt has read from it so far."""

    def __init__(self, guard: ConnectionGuard, listener: _Listener, transport: asyncio.WriteTransport, peer: str):
        self.guard = guard
        self.listener = listener
        self.transport = transport
        self.peer = peer
        self.client_id: str | None = None
        self.accepted_at = time.monotonic()
        self.packet_timeout = guard.connect_timeout  # set from the keepalive after CONNECT
        self.packets = 0
        self._state = _TYPE
        self._type = 0
        self._flags = 0
        self._length = 0
        self._shift = 0
        self._remaining = 0
        self._started = 0.0
        self._topic: bytearray | None = None  # the topic of a PUBLISH being read, checked before amqtt sees it
        self._topic_need = 0
        self._closed = False
        # One timer per connection checks its deadline, instead of a timeout around every read: a
        # timeout per read cost more than the rest of the guard and halved the broker's message rate.
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = self._loop.call_at(self.deadline() or 0.0, self._check_deadline)

    def deadline(self) -> float | None:
        """When the read in progress must have finished (time.monotonic), or None between packets."""
        if not self.packets:
            return self.accepted_at + self.guard.connect_timeout
        if self._state != _TYPE:
            return self._started + self.packet_timeout
        return None

    def _check_deadline(self) -> None:
        """The timer: close a connection whose CONNECT or packet is late; else wait for the next deadline."""
        self._timer = None
        if self._closed:
            return
        deadline = self.deadline()
        if deadline is None:
            return  # between packets: the next packet's first byte arms the timer again
        if self._loop.time() >= deadline:
            self.timed_out()
        else:
            self._timer = self._loop.call_at(deadline, self._check_deadline)

    def stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def timed_out(self) -> None:
        if not self.packets:
            self.close(Closed.CONNECT_TIMEOUT, f"no complete CONNECT within {self.guard.connect_timeout:g} s")
        else:
            self.close(Closed.STALLED, f"a {_NAMES.get(self._type, 'packet')} was left half sent for "
                       f"{self.packet_timeout:g} s")

    def close(self, kind: str, detail: str) -> None:
        """Count and log why, then drop the socket at once (nothing more is read from it)."""
        if self._closed:
            return
        self._closed = True
        self.stop_timer()
        self.guard.report(kind, self, detail)
        self.transport.abort()

    def feed(self, data: bytes) -> bool:
        """Follow the packet framing over bytes amqtt consumed; False when the connection had to be closed."""
        size = len(data)
        if self._state == _BODY and self._topic is None and size < self._remaining:
            self._remaining -= size  # the common case: a field inside a packet's body
            return True
        index = 0
        while index < size:
            if self._state == _BODY:
                taken = min(self._remaining, size - index)
                if self._topic is not None:  # a PUBLISH whose topic is not complete yet
                    taken = min(taken, self._topic_need - len(self._topic))
                    self._topic += data[index : index + taken]
                    if len(self._topic) == self._topic_need and not self._check_topic():
                        return False
                self._remaining -= taken
                index += taken
                if not self._remaining:
                    self._packet_done()
                continue
            byte = data[index]
            index += 1
            if self._state == _TYPE:
                self._type, self._flags = byte >> 4, byte & 0x0F
                self._length, self._shift, self._started = 0, 0, self._loop.time()
                self._state = _LENGTH
                due = self._started + self.packet_timeout
                if self._timer is None or self._timer.when() > due:
                    if self._timer is not None:
                        self._timer.cancel()
                    self._timer = self._loop.call_at(due, self._check_deadline)
                problem = self._check_type()
                if problem:
                    self.close(Closed.PROTOCOL, f"protocol error: {problem}")
                    return False
                continue
            self._length |= (byte & 0x7F) << self._shift
            self._shift += 7
            if byte & 0x80:
                if self._shift >= 28:
                    self.close(Closed.PROTOCOL, "protocol error: malformed remaining length (more than 4 bytes)")
                    return False
                continue
            if not self._check_length():
                return False
            self._remaining = self._length
            self._state = _BODY
            if self._type == PUBLISH:
                self._topic, self._topic_need = bytearray(), 2
            if not self._remaining:
                self._packet_done()
        return True

    def _packet_done(self) -> None:
        self._state = _TYPE
        self.packets += 1
        if self.packets == 1:
            self.guard.connected(self)

    def _check_topic(self) -> bool:
        """The topic length, then the topic, of a PUBLISH: refused before amqtt parses it (amqtt skips a
        bad one and goes on reading the rest of the packet as if it were the next one)."""
        assert self._topic is not None
        if self._topic_need == 2:
            self._topic_need = 2 + int.from_bytes(self._topic, "big")
            if self._topic_need + (2 if self._flags & 0x06 else 0) > self._length:
                return self._protocol_error("a PUBLISH whose topic is longer than the packet")
            if self._topic_need > 2:
                return True
        raw, self._topic = bytes(self._topic[2:]), None
        try:
            topic = raw.decode("utf-8")
        except UnicodeDecodeError:
            return self._protocol_error("a PUBLISH topic that is not UTF-8 [MQTT-1.5.3-1]")
        shown = repr(topic[:100])
        if not topic:
            return self._protocol_error("PUBLISH with an empty topic [MQTT-4.7.3-1]")
        if "+" in topic or "#" in topic:
            return self._protocol_error(f"PUBLISH to {shown}, a topic with wildcards [MQTT-3.3.2-2]")
        if "\0" in topic:
            return self._protocol_error("a PUBLISH topic holding U+0000 [MQTT-1.5.3-2]")
        if topic.startswith("$"):
            return self._protocol_error(f"PUBLISH to {shown}: topics starting with '$' are the broker's")
        return True

    def _protocol_error(self, problem: str) -> bool:
        self.close(Closed.PROTOCOL, f"protocol error: {problem}")
        return False

    def _check_type(self) -> str | None:
        kind, flags = self._type, self._flags
        if not self.packets and kind != CONNECT:
            return f"the first packet is {_NAMES.get(kind, f'of type {kind}')}, not CONNECT [MQTT-3.1.0-1]"
        if self.packets and kind == CONNECT:
            return "a second CONNECT on one connection [MQTT-3.1.0-2]"
        if kind == PUBLISH:
            qos = (flags >> 1) & 3
            if qos == 3:
                return "PUBLISH with QoS 3 [MQTT-3.3.1-4]"
            if qos == 0 and flags & 0x08:
                return "PUBLISH at QoS 0 with DUP set [MQTT-3.3.1-2]"
            return None
        if kind not in _FLAGS:
            return f"packet type {kind} is not sent by clients (reserved or server-only)"
        if flags != _FLAGS[kind]:
            return f"{_NAMES[kind]} with header flags {flags:04b}, not {_FLAGS[kind]:04b} [MQTT-2.2.2-2]"
        return None

    def _check_length(self) -> bool:
        kind, length = self._type, self._length
        name = _NAMES.get(kind, "packet")
        if length > self.guard.packet_limit:
            self.close(Closed.OVERSIZED, f"it announced a {name} of {length} bytes; max_packet_size is "
                       f"{self.guard.packet_limit} bytes")
            return False
        exact = _EXACT_LENGTH.get(kind)
        minimum = _MIN_LENGTH.get(kind, 0) + (2 if kind == PUBLISH and self._flags & 0x06 else 0)
        if (exact is not None and length != exact) or length < minimum:
            self.close(Closed.PROTOCOL, f"protocol error: a {name} of {length} bytes cannot be well formed")
            return False
        return True


class GuardedReader(StreamReaderAdapter):
    """amqtt's stream reader with the guard's deadlines and framing checks on every read.

    A closed connection surfaces to amqtt as ``ConnectionResetError``, which its
    decoders turn into "no more data": the handler then ends the session as for a
    dropped connection (will message included).
    """

    def __init__(self, reader: asyncio.StreamReader, conn: Connection) -> None:
        super().__init__(reader)
        self.conn = conn

    async def read(self, n: int = -1) -> bytes:
        # A late connection is closed by its timer (Connection._check_deadline): the read then ends
        # with IncompleteReadError, which amqtt takes as the end of the connection.
        data = await super().read(n)
        if not self.conn.feed(data):
            raise ConnectionResetError("closed by the broker")
        return data
