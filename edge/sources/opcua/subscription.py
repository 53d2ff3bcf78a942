"""One OPC-UA subscription on one session: monitored items in chunks, notifications to frames.

The publish callback is the hot path (10k notifications/s for 1,000 items at
10 Hz): per item it does one dict lookup and one type check; the values of one
publish response become one frame per device, handed to a small bounded queue.
When that queue is full the callback waits, which holds back the next Publish
request: the server then keeps only the latest value per item (queue size 1),
so a slow store slows the source down instead of growing memory.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Sequence

from asyncua import Client, ua

from edge.sources.base import FrameSink
from edge.sources.opcua.client import chunks
from edge.sources.opcua.config import OpcUaSourceConfig
from edge.sources.opcua.nodes import FrameAssembler, LostSignal, Node, NodeTable
from edge.sources.opcua.values import decode_data_value, describe_status
from shared.frame import TelemetryFrame

__all__ = ["Subscriber"]

log = logging.getLogger(__name__)

_DataChange = ua.DataChangeNotification
_DEADBAND_TYPES = {"absolute": 1, "percent": 2}


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
            SamplingInterval=self.config.effective_sampling_interval * 1000.0,
            QueueSize=1,
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
        values: dict[str, dict[str, object]] = {}
        stamps: dict[str, float] = {}
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
                    sensors = values.get(node.device)
                    if sensors is None:
                        sensors = values[node.device] = {}
                    sensors[node.name] = value
                    if ts is not None and ts > stamps.get(node.device, 0.0):
                        stamps[node.device] = ts
                    if node.problem is not None:
                        self.table.clear_problem(node)
            elif isinstance(notification, ua.StatusChangeNotification):
                self.lost.set(f"the server ended the subscription ({describe_status(notification.Status)})")
        if refusals:
            self.table.count_refused(refusals)
            for node, problem, dv in refused:
                await self._refuse(node, problem, dv)
        if values:
            frames = self.assembler.frames(values, stamps)
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
