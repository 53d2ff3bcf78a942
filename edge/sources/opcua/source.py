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

Value decoding and timestamps: see ``values``; frame assembly and node
problems: see ``nodes``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time

from asyncua import Client, ua

from edge.sources.base import Backoff, FrameSink, Source, SourceState
from edge.sources.opcua.client import (
    TRANSPORT_ERRORS,
    OpcUaConnectError,
    OperationLimits,
    close,
    connect,
    describe_error,
    read_operation_limits,
    read_values,
    resolve_node_ids,
)
from edge.sources.opcua.config import OpcUaSourceConfig
from edge.sources.opcua.nodes import FrameAssembler, LostSignal, Node, NodeTable
from edge.sources.opcua.subscription import Subscriber
from edge.sources.opcua.values import decode_data_value, describe_status
from shared.frame import TelemetryFrame

__all__ = ["OpcUaSource"]

log = logging.getLogger(__name__)

# Read results that mean the node itself is wrong (not a passing fault of the device behind it).
_NODE_REFUSED = {
    ua.StatusCodes.BadNodeIdUnknown,
    ua.StatusCodes.BadNodeIdInvalid,
    ua.StatusCodes.BadAttributeIdInvalid,
    ua.StatusCodes.BadNotReadable,
    ua.StatusCodes.BadUserAccessDenied,
}
_FRAME_QUEUE = 4  # publish cycles buffered between the publish loop and the sink


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
                delay = cfg.reconnect_max_delay if exc.permanent else backoff.next_delay()
                self._disconnected(exc.reason, delay)
                await asyncio.sleep(delay)
                continue
            try:
                reason = await self._serve(client, backoff)
            except TRANSPORT_ERRORS as exc:  # failed while setting the session up
                reason, _ = describe_error(exc, cfg)
                log.debug("source %s: session set-up failed", cfg.name, exc_info=True)
            delay = backoff.next_delay()
            self._disconnected(reason, delay)
            await asyncio.sleep(delay)

    def _disconnected(self, reason: str, delay: float) -> None:
        self.health.errors += 1
        self.health.set_state(SourceState.DISCONNECTED, f"{reason}; retrying in {delay:.1f} s")

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
        per_call = limits.reads_per_call(cfg.max_items_per_call)
        assembler = FrameAssembler(cfg.name)
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        next_retry = next_at + cfg.retry_bad_nodes
        while True:
            try:
                if loop.time() >= next_retry:
                    next_retry = loop.time() + cfg.retry_bad_nodes
                    await self._resolve(client, self.table.set_aside())
                frames = await self._read_once(client, per_call, assembler)
            except TRANSPORT_ERRORS as exc:
                lost.set(describe_error(exc, cfg)[0])
                return
            if frames:
                await self.sink.put(frames)
                self.health.record_success(len(frames), sum(len(frame.sensors) for frame in frames))
            next_at += cfg.poll_interval
            now = loop.time()
            if next_at < now:  # a read took longer than the interval: skip the missed cycles
                next_at = now
            await asyncio.sleep(next_at - now)

    async def _read_once(self, client: Client, per_call: int, assembler: FrameAssembler) -> list[TelemetryFrame]:
        nodes = self.table.usable()
        results = await read_values(client, [node.ua_id for node in nodes if node.ua_id is not None], per_call)
        values: dict[str, dict[str, object]] = {}
        refusals = 0
        for node, dv in zip(nodes, results, strict=True):
            value, problem, _ = decode_data_value(dv)
            if problem is not None:
                refusals += 1
                status = dv.StatusCode
                refused_node = status is not None and status.value in _NODE_REFUSED
                reason = f"the server refused it: {describe_status(status)}" if refused_node else problem
                if self.table.set_problem(node, reason, set_aside=refused_node) and not refused_node:
                    shown = repr(dv.Value.Value if dv.Value is not None else None)[:200].encode("utf-8", "replace")
                    await self.sink.reject(f"opcua:{self.config.name}/{node.name}", problem, shown)
                continue
            values.setdefault(node.device, {})[node.name] = value
            self.table.clear_problem(node)
        if refusals:
            self.table.count_refused(refusals)
        return assembler.frames(values, {})  # stamped with the time of the read
