"""One OPC-UA subscription on one session: monitored items in chunks, notifications to frames.

Monitored items sample every change (``sampling_interval`` 0 by default: as fast
as the server allows) into a server-side queue of ``queue_size`` values per item
that discards the oldest, so that a tag changing several times within one
publishing interval loses none of those changes. (With sampling equal to the
publishing interval and a queue of 1, a 100 ms tag at 100 ms publishing lost
1.6 % of its changes: the two clocks drift, and a change that falls between two
samples is never seen.)

The publish callback is the hot path (10k notifications/s for 1,000 items at
10 Hz): per item it does one dict lookup and one type check. The values of one
publish response become one frame per device, or, when the server's queue held
several values of one node, as many frames as needed (see ``split_by_time``),
handed to a small bounded queue. When that queue is full the callback waits,
which holds back the next Publish request: the server then keeps only the
latest ``queue_size`` values per item, so a slow store slows the source down
instead of growing memory.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Sequence
from typing import Any

from asyncua import Client, ua

from edge.sources.base import FrameSink
from edge.sources.opcua.client import chunks
from edge.sources.opcua.config import OpcUaSourceConfig
from edge.sources.opcua.nodes import FrameAssembler, LostSignal, Node, NodeTable
from edge.sources.opcua.values import decode_data_value, describe_status
from shared.frame import TelemetryFrame

__all__ = ["Subscriber", "split_by_time"]

log = logging.getLogger(__name__)

_DataChange = ua.DataChangeNotification
_DEADBAND_TYPES = {"absolute": 1, "percent": 2}

Entry = tuple[float | None, str, Any]  # (source timestamp or None, sensor name, value)


def _time_key(entry: Entry) -> float:
    return math.inf if entry[0] is None else entry[0]  # no timestamp: the time of receipt, i.e. the newest


def split_by_time(entries: list[Entry]) -> list[tuple[dict[str, Any], float | None]]:
    """One device's values of one publish as ``(sensors, newest timestamp)`` groups, oldest first.

    A frame holds one value per sensor. When the server's queue delivered several values of a node in
    one publish, the values are taken in time order and a new frame starts where a node would repeat:
    every value is kept, a node's values stay in order, and each frame's timestamp is the newest
    SourceTimestamp among its values (so never earlier than any value it carries). With one value per
    node, which is the usual case, this is one frame.
    """
    sensors = {name: value for _ts, name, value in entries}
    if len(sensors) == len(entries):  # no node repeats: the fast path
        stamps = [ts for ts, _name, _value in entries if ts is not None]
        return [(sensors, max(stamps) if stamps else None)]
    groups: list[tuple[dict[str, Any], float | None]] = []
    current: dict[str, Any] = {}
    newest: float | None = None
    for ts, name, value in sorted(entries, key=_time_key):  # stable: equal times keep their arrival order
        if name in current:
            groups.append((current, newest))
            current, newest = {}, None
        current[name] = value
        if ts is not None and (newest is None or ts > newest):
            newest = ts
    groups.append((current, newest))
    return groups


class Subscriber:
    """Creates the subscription and its monitored items; turns publish responses into frames."""

    def __init__(
        self,
        client: Client,
        config: OpcUaSourceConfig,
        table: NodeTable,
        sink: FrameSink,
        out: asyncio.Queue[list[TelemetryFrame] | None],
        lost: LostSignal,
        items_per_call: int,
    ) -> None:
        self.client, self.config, self.table, self.sink = client, config, table, sink
        self.out, self.lost = out, lost
        self.items_per_call = items_per_call
        self.assembler = FrameAssembler(config.name)
        self.subscription_id: int | None = None
        self.stale_after = math.inf
        self.last_publish = time.monotonic()
        self.waiting_for_room = False
        self._handles: dict[int, Node] = {}

    async def start(self) -> None:
        pi_ms = self.config.publishing_interval * 1000.0
        keepalive = max(1, math.ceil(max(self.config.watchdog_interval * 1000.0, pi_ms) / pi_ms))
        # the server keeps the subscription this many cycles without Publish requests (a slow sink holds
        # them back): as long as the session itself, at least the 3 keep-alives the specification asks
        lifetime = max(3 * keepalive, math.ceil(self.config.session_timeout * 1000.0 / pi_ms))
        params = ua.CreateSubscriptionParameters(
            RequestedPublishingInterval=pi_ms,
            RequestedLifetimeCount=min(2**32 - 1, lifetime),
            RequestedMaxKeepAliveCount=min(2**32 - 1, keepalive),
            MaxNotificationsPerPublish=0,
            PublishingEnabled=True,
            Priority=0,
        )
        result = await self.client.uaclient.create_subscription(params, self.on_publish)
        self.subscription_id = result.SubscriptionId
        # the server sends at least a keep-alive every RevisedMaxKeepAliveCount cycles
        period = result.RevisedPublishingInterval * max(1, result.RevisedMaxKeepAliveCount) / 1000.0
        self.stale_after = 2 * period + self.config.request_timeout
        self.last_publish = time.monotonic()
        await self.add(self.table.usable())

    def _request(self, node: Node) -> ua.MonitoredItemCreateRequest:
        cfg = node.config
        mparams = ua.MonitoringParameters(
            ClientHandle=node.handle,
            SamplingInterval=self.config.sampling_interval * 1000.0,  # 0: every change, as fast as the server can
            QueueSize=self.config.queue_size,
            DiscardOldest=True,
        )
        if cfg.deadband is not None:
            mparams.Filter = ua.DataChangeFilter(
                Trigger=ua.DataChangeTrigger.StatusValue,
                DeadbandType=_DEADBAND_TYPES[cfg.deadband_type],
                DeadbandValue=cfg.deadband,
            )
        return ua.MonitoredItemCreateRequest(
            ItemToMonitor=ua.ReadValueId(NodeId=node.ua_id, AttributeId=ua.AttributeIds.Value),
            MonitoringMode=ua.MonitoringMode.Reporting,
            RequestedParameters=mparams,
        )

    async def add(self, nodes: Sequence[Node]) -> None:
        """Create monitored items, ``items_per_call`` per request; nodes the server refuses are set aside."""
        nodes = [node for node in nodes if node.ua_id is not None]
        for part in chunks(nodes, self.items_per_call):
            batch = list(part)
            for node in batch:  # a notification may arrive before the response
                self._handles[node.handle] = node
            params = ua.CreateMonitoredItemsParameters(
                SubscriptionId=self.subscription_id,
                TimestampsToReturn=ua.TimestampsToReturn.Both,
                ItemsToCreate=[self._request(node) for node in batch],
            )
            try:
                results = await self.client.uaclient.create_monitored_items(params)
            except BaseException:
                for node in batch:
                    self._handles.pop(node.handle, None)
                raise
            for node, result in zip(batch, results, strict=True):
                if result.StatusCode.is_good():
                    if node.set_aside:
                        self.table.clear_problem(node)
                    continue
                self._handles.pop(node.handle, None)
                self.table.set_problem(
                    node, f"the server refused it: {describe_status(result.StatusCode)}", set_aside=True
                )

    def stale_for(self) -> float | None:
        """Seconds without any publish response (data or keep-alive), when that is too long."""
        if self.waiting_for_room:  # we are holding the publish loop back ourselves
            return None
        silent = time.monotonic() - self.last_publish
        return silent if silent > self.stale_after else None

    async def on_publish(self, result: ua.PublishResult) -> None:
        """asyncua's publish loop calls this once per Publish response."""
        self.last_publish = time.monotonic()
        data = result.NotificationMessage.NotificationData
        if not data:
            return  # keep-alive
        handles = self._handles
        entries: dict[str, list[Entry]] = {}
        refused: list[tuple[Node, str, ua.DataValue]] = []
        refusals = 0
        for notification in data:
            if type(notification) is _DataChange:
                for item in notification.MonitoredItems:
                    node = handles.get(item.ClientHandle)
                    if node is None:
                        continue
                    value, problem, ts = decode_data_value(item.Value)
                    if problem is not None:
                        refusals += 1
                        if problem != node.problem:
                            refused.append((node, problem, item.Value))
                        continue
                    device = entries.get(node.device)
                    if device is None:
                        device = entries[node.device] = []
                    device.append((ts, node.name, value))
                    if node.problem is not None:
                        self.table.clear_problem(node)
            elif isinstance(notification, ua.StatusChangeNotification):
                self.lost.set(f"the server ended the subscription ({describe_status(notification.Status)})")
        if refusals:
            self.table.count_refused(refusals)
            for node, problem, dv in refused:
                await self._refuse(node, problem, dv)
        if entries:
            frames = self.assembler.assemble(
                (device, sensors, ts) for device, items in entries.items() for sensors, ts in split_by_time(items)
            )
            if self.out.full():
                self.waiting_for_room = True
            try:
                await self.out.put(frames)
            finally:
                self.waiting_for_room = False
                self.last_publish = time.monotonic()  # the silence was ours, not the server's

    async def _refuse(self, node: Node, problem: str, dv: ua.DataValue) -> None:
        if self.table.set_problem(node, problem):
            shown = repr(dv.Value.Value if dv.Value is not None else None)[:200].encode("utf-8", "replace")
            await self.sink.reject(f"opcua:{self.config.name}/{node.name}", problem, shown)
