"""Poll mode of the OPC-UA source: which nodes go into which Read, and how a Read becomes frames.

A frame must show one moment of a machine. So the nodes of one device are read in
one Read request whenever the server's MaxNodesPerRead (and ``max_items_per_call``)
allows: devices are packed whole into Reads, in config order. A poll frame then
carries every readable node of the device, stamped with the time its Read
completed.

A device with more nodes than one Read may carry cannot be read at one moment.
Its values are then grouped by their own timestamp (SourceTimestamp, else
ServerTimestamp, else the time their Read completed), one frame per distinct
timestamp, and a value whose timestamp has not moved since it was last delivered
is not sent again: no frame mixes two moments, and an unchanged reading is not
stored twice under a new time.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from asyncua import Client, ua

from edge.sources.base import FrameSink
from edge.sources.opcua.client import chunks, read_values
from edge.sources.opcua.nodes import FrameAssembler, Node, NodeTable
from edge.sources.opcua.values import decode_data_value, describe_status
from shared.frame import TelemetryFrame

__all__ = ["Poller", "plan_reads"]

# Read results that mean the node itself is wrong (not a passing fault of the device behind it).
NODE_REFUSED = {
    ua.StatusCodes.BadNodeIdUnknown,
    ua.StatusCodes.BadNodeIdInvalid,
    ua.StatusCodes.BadAttributeIdInvalid,
    ua.StatusCodes.BadNotReadable,
    ua.StatusCodes.BadUserAccessDenied,
}


def plan_reads(nodes: Sequence[Node], per_call: int) -> tuple[list[list[Node]], set[str]]:
    """Reads of at most ``per_call`` nodes that keep each device's nodes in one Read where they fit,
    and the devices that do not fit in one Read."""
    by_device: dict[str, list[Node]] = {}
    for node in nodes:
        by_device.setdefault(node.device, []).append(node)
    reads: list[list[Node]] = []
    split: set[str] = set()
    current: list[Node] = []
    for device, group in by_device.items():
        if len(group) > per_call:  # more than one Read can carry: this device gets Reads of its own
            reads.extend(list(part) for part in chunks(group, per_call))
            split.add(device)
            continue
        if len(current) + len(group) > per_call:
            reads.append(current)
            current = []
        current.extend(group)
    if current:
        reads.append(current)
    return reads, split


class Poller:
    """Reads every usable node once per call of ``read_once`` and turns the results into frames."""

    def __init__(self, client: Client, name: str, table: NodeTable, sink: FrameSink, per_call: int) -> None:
        self.client, self.name, self.table, self.sink = client, name, table, sink
        self.per_call = per_call
        self.assembler = FrameAssembler(name)
        self._last_ts: dict[int, float] = {}  # node handle -> timestamp last delivered (split devices)
        self.good = 0  # good values in the last read, delivered or not (unchanged)

    async def read_once(self) -> list[TelemetryFrame]:
        nodes = [node for node in self.table.usable() if node.ua_id is not None]
        reads, split = plan_reads(nodes, self.per_call)
        self.good = 0
        whole_frames: list[tuple[str, dict[str, Any], float | None]] = []
        split_values: dict[str, dict[float, dict[str, Any]]] = {}
        refusals = 0
        for part in reads:
            results = await read_values(self.client, [node.ua_id for node in part if node.ua_id is not None], len(part))
            done_at = time.time()
            sensors_of: dict[str, dict[str, Any]] = {}
            for node, dv in zip(part, results, strict=True):
                value, problem, ts = decode_data_value(dv)
                if problem is not None:
                    refusals += 1
                    await self._problem(node, dv, problem)
                    continue
                self.table.clear_problem(node)
                self.good += 1
                if node.device in split:
                    stamp = ts if ts is not None else done_at
                    if self._last_ts.get(node.handle) == stamp:
                        continue  # the same reading as last time
                    self._last_ts[node.handle] = stamp
                    split_values.setdefault(node.device, {}).setdefault(stamp, {})[node.name] = value
                else:
                    sensors_of.setdefault(node.device, {})[node.name] = value
            whole_frames += [(device, sensors, done_at) for device, sensors in sensors_of.items()]
        if refusals:
            self.table.count_refused(refusals)
        for device, by_time in split_values.items():
            whole_frames += [(device, by_time[stamp], stamp) for stamp in sorted(by_time)]
        return self.assembler.assemble(whole_frames)

    async def _problem(self, node: Node, dv: ua.DataValue, problem: str) -> None:
        status = dv.StatusCode
        refused_node = status is not None and status.value in NODE_REFUSED
        reason = f"the server refused it: {describe_status(status)}" if refused_node else problem
        if self.table.set_problem(node, reason, set_aside=refused_node) and not refused_node:
            shown = repr(dv.Value.Value if dv.Value is not None else None)[:200].encode("utf-8", "replace")
            await self.sink.reject(f"opcua:{self.name}/{node.name}", problem, shown)
