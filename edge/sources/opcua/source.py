"""OPC-UA source: reads PLC variables through subscriptions (default) or polling, and reconnects by itself.

One run of the source is a loop of sessions. Each session: connect (security
policy, user name), read the server's operation limits, resolve node ids,
then either subscribe (one subscription, monitored items created in chunks of
at most MaxMonitoredItemsPerCall and ``max_items_per_call``) or poll (Reads of
at most MaxNodesPerRead nodes). A session ends when asyncua reports the
connection lost (socket closed, or its periodic server-state probe failed),
when the subscription goes silent past its keep-alive, or when the server
ends it; the source then closes what is left, waits with jittered backoff and
builds a fresh session and subscription. The daemon never restarts for this.

Two paces of retrying. A server that cannot be reached at all (connection refused,
no route) is watched with a cheap TCP connect every ~0.5 s, and the session is
built as soon as the port accepts: a restarted PLC delivers data again within
about a second of listening. A server that accepts and then fails (refuses our
certificate or login, closes the channel, times out) gets the capped exponential
backoff, and a refusal that retrying soon will not cure (``permanent``: a login
or certificate problem) is retried every ``reconnect_max_delay``, so that once an
engineer fixes it on the PLC the source comes back by itself. The state and its
reason are logged once per change, not per attempt.

Value decoding and timestamps: see ``values``; frame assembly and node
problems: see ``nodes``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from urllib.parse import urlsplit

from asyncua import Client

from edge.sources.base import Backoff, FrameSink, Source, SourceState
from edge.sources.opcua.client import (
    TRANSPORT_ERRORS,
    OpcUaConnectError,
    OperationLimits,
    close,
    connect,
    describe_error,
    read_operation_limits,
    resolve_node_ids,
)
from edge.sources.opcua.config import OpcUaSourceConfig
from edge.sources.opcua.nodes import LostSignal, Node, NodeTable
from edge.sources.opcua.poll import Poller
from edge.sources.opcua.subscription import Subscriber
from shared.frame import TelemetryFrame

__all__ = ["OpcUaSource"]

log = logging.getLogger(__name__)

_FRAME_QUEUE = 4  # publish cycles buffered between the publish loop and the sink
PROBE_INTERVAL = 0.5  # seconds between TCP probes of a server that refuses connections (jittered +-20 %)


class OpcUaSource(Source):
    """Subscribes to (or polls) the configured nodes of one OPC-UA server and emits TelemetryFrames."""

    kind = "opcua"
    config: OpcUaSourceConfig

    def __init__(self, config: OpcUaSourceConfig, sink: FrameSink) -> None:
        super().__init__(config, sink)
        self.table = NodeTable(config, self.health)
        self._sessions = 0
        self._closed = False

    async def run(self) -> None:
        cfg = self.config
        backoff = Backoff(initial=0.5, maximum=cfg.reconnect_max_delay)
        while True:
            try:
                client = await connect(cfg)
            except OpcUaConnectError as exc:
                self.health.errors += 1
                if exc.unreachable:
                    self.health.set_state(SourceState.DISCONNECTED, f"{exc.reason}; waiting for it to accept "
                                          f"connections (checked every {PROBE_INTERVAL:g} s)")
                    await self.until_accepting()
                    continue
                delay = cfg.reconnect_max_delay if exc.permanent else backoff.next_delay()
                self._disconnected(exc.reason, delay, cause="certificate" if exc.certificate else None)
                await asyncio.sleep(delay)
                continue
            try:
                reason = await self._serve(client, backoff)
            except TRANSPORT_ERRORS as exc:  # failed while setting the session up
                reason, _ = describe_error(exc, cfg)
                log.debug("source %s: session set-up failed", cfg.name, exc_info=True)
            self.health.errors += 1
            delay = backoff.next_delay()
            self._disconnected(reason, delay)
            await asyncio.sleep(delay)

    def _disconnected(self, reason: str, delay: float, cause: str | None = None) -> None:
        self.health.set_state(SourceState.DISCONNECTED, reason, retry_in=delay, cause=cause)

    async def until_accepting(self) -> None:
        """Return once the server's port accepts a TCP connection: a probe every ~PROBE_INTERVAL seconds.

        A bare connect costs the server nothing worth mentioning (no hello, no channel), unlike the
        full handshake a reconnect attempt makes; so it can be done often while the server is down.
        """
        parts = urlsplit(self.config.url)
        host, port = parts.hostname or "", parts.port or 4840
        limit = min(self.config.request_timeout, 2.0)
        while True:
            await asyncio.sleep(random.uniform(0.8 * PROBE_INTERVAL, 1.2 * PROBE_INTERVAL))
            try:
                async with asyncio.timeout(limit):
                    _reader, writer = await asyncio.open_connection(host, port)
            except (OSError, TimeoutError):
                continue
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            log.debug("source %s: %s:%s accepts connections again", self.config.name, host, port)
            return

    async def _serve(self, client: Client, backoff: Backoff) -> str:
        """Run one session until it is lost; return why, in plain words. Closes the client."""
        lost = LostSignal()
        client.connection_lost_callback = functools.partial(self._on_connection_lost, lost)
        self._closed = False
        try:
            return await self._session(client, backoff, lost)
        finally:
            self.table.connected = False
            if not self._closed:
                await close(client, self.config.request_timeout)

    async def _on_connection_lost(self, lost: LostSignal, exc: Exception) -> None:
        """asyncua's connection supervisor calls this when the socket closed or its probe failed."""
        url = self.config.url
        if isinstance(exc, TimeoutError):
            lost.set(f"OPC-UA server {url} stopped answering (no reply to the session check)")
        elif isinstance(exc, ConnectionError):
            lost.set(f"the connection to OPC-UA server {url} was lost")
        else:
            lost.set(describe_error(exc, self.config)[0])

    async def _session(self, client: Client, backoff: Backoff, lost: LostSignal) -> str:
        cfg = self.config
        limits = await read_operation_limits(client)
        self.health.detail["limits"] = {
            "monitored_items_per_call": limits.items_per_call(cfg.max_items_per_call),
            "nodes_per_read": limits.reads_per_call(cfg.max_items_per_call),
        }
        await self._resolve(client, [node for node in self.table.nodes])
        out: asyncio.Queue[list[TelemetryFrame] | None] = asyncio.Queue(maxsize=_FRAME_QUEUE)
        if cfg.mode == "subscribe":  # set up before the TaskGroup, so that its errors are not wrapped
            items_per_call = limits.items_per_call(cfg.max_items_per_call)
            sub = Subscriber(client, cfg, self.table, self.sink, out, lost, items_per_call)
            await sub.start()
        async with asyncio.TaskGroup() as tg:
            if cfg.mode == "subscribe":
                forward = tg.create_task(self._forward(out), name=f"opcua:{cfg.name}:forward")
                watch = tg.create_task(self._watch(client, sub, lost), name=f"opcua:{cfg.name}:watch")
            else:
                poll = tg.create_task(self._poll(client, limits, lost), name=f"opcua:{cfg.name}:poll")
            self._session_up(backoff)
            reason = await lost.wait()
            if cfg.mode == "subscribe":
                watch.cancel()
                self.table.connected = False
                await close(client, cfg.request_timeout)  # stops the publish loop
                self._closed = True
                await out.put(None)  # the forwarder hands over what is queued, then ends
                await forward
            else:
                poll.cancel()
        return reason

    def _session_up(self, backoff: Backoff) -> None:
        backoff.reset()
        self._sessions += 1
        if self._sessions > 1:
            self.health.reconnects += 1
        self.table.connected = True
        self.table.refresh_state()

    async def _resolve(self, client: Client, nodes: list[Node]) -> None:
        """NodeIds for nodes; every node gets a fresh chance on each session."""
        resolved = await resolve_node_ids(client, [node.config.node_id for node in nodes])
        for node, result in zip(nodes, resolved, strict=True):
            if isinstance(result, str):
                node.ua_id = None
                self.table.set_problem(node, result, set_aside=True)
            else:
                node.ua_id = result
                node.set_aside = False

    async def _forward(self, out: asyncio.Queue[list[TelemetryFrame] | None]) -> None:
        while (frames := await out.get()) is not None:
            await self.sink.put(frames)
            self.health.record_success(len(frames), sum(len(frame.sensors) for frame in frames))

    async def _watch(self, client: Client, sub: Subscriber, lost: LostSignal) -> None:
        """Notice a silent subscription; retry set-aside nodes now and then."""
        cfg = self.config
        tick = max(0.2, min(1.0, sub.stale_after / 4))
        next_retry = time.monotonic() + cfg.retry_bad_nodes
        while not lost.is_set():
            await asyncio.sleep(tick)
            silent = sub.stale_for()
            if silent is not None:
                lost.set(f"OPC-UA server {cfg.url} sent no data or keep-alive for {silent:.0f} s")
                return
            if time.monotonic() >= next_retry:
                next_retry = time.monotonic() + cfg.retry_bad_nodes
                retry = self.table.set_aside()
                if retry:
                    try:
                        await self._resolve(client, retry)
                        await sub.add(retry)
                    except TRANSPORT_ERRORS as exc:
                        lost.set(describe_error(exc, cfg)[0])
                        return

    async def _poll(self, client: Client, limits: OperationLimits, lost: LostSignal) -> None:
        cfg = self.config
        poller = Poller(client, cfg.name, self.table, self.sink, limits.reads_per_call(cfg.max_items_per_call))
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        next_retry = next_at + cfg.retry_bad_nodes
        while True:
            try:
                if loop.time() >= next_retry:
                    next_retry = loop.time() + cfg.retry_bad_nodes
                    await self._resolve(client, self.table.set_aside())
                frames = await poller.read_once()
            except TRANSPORT_ERRORS as exc:
                lost.set(describe_error(exc, cfg)[0])
                return
            if frames:
                await self.sink.put(frames)
            if poller.good:  # good values that were not new (a large device, unchanged) are still data
                self.health.record_success(len(frames), sum(len(frame.sensors) for frame in frames))
            next_at += cfg.poll_interval
            now = loop.time()
            if next_at < now:  # a read took longer than the interval: skip the missed cycles
                next_at = now
            await asyncio.sleep(next_at - now)
