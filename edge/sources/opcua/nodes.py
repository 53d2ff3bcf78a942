"""The OPC-UA source's node table, its frame assembly, and the 'session lost' signal.

A node that cannot deliver values (unknown to the server, refused as a
monitored item, a bad status, a value a frame cannot carry) is listed in the
source's health (``detail.failing``, keyed ``<device>/<node id>``, with its
sensor name and reason); the source is then DEGRADED but the other
nodes keep flowing. Nodes the server refused outright are *set aside* and
retried every ``retry_bad_nodes`` and after every reconnect.

Frames: one per device per publishing cycle (subscribe) or per read (poll).
A subscription frame carries the values that changed in that cycle (the first
one after subscribing carries them all) and its ``ts`` is the newest
SourceTimestamp among them (ServerTimestamp when a value has none, the time of
receipt when neither is usable); when the server's queue delivered several
values of one node in a cycle, they are spread over as many frames, in time
order (``subscription.split_by_time``). A poll frame carries every readable node
of a device, read in one Read request, and its ``ts`` is the time the read
completed: unchanged values keep their old SourceTimestamp, which would stamp
every poll alike. A frame is identified by device and timestamp, so a timestamp
a device already used recently is nudged forward by 1 microsecond.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from asyncua import ua
from pydantic import ValidationError

from edge.sources.base import SourceHealth, SourceState
from edge.sources.opcua.config import OpcUaNodeConfig, OpcUaSourceConfig
from shared.frame import TelemetryFrame

__all__ = ["FrameAssembler", "LostSignal", "Node", "NodeTable"]

log = logging.getLogger(__name__)

_SHOWN_PROBLEMS = 3
_RECENT_TS = 256  # timestamps remembered per device to keep frame identities distinct


@dataclass(eq=False, slots=True)
class Node:
    """One configured node and what is known about it on the current session."""

    config: OpcUaNodeConfig
    name: str
    device: str
    handle: int  # our client handle for monitored items: stable across sessions
    ua_id: ua.NodeId | None = None
    problem: str | None = None  # why this node has no value right now
    set_aside: bool = False  # the server refused the node itself; retried later

    @property
    def key(self) -> str:
        """How `status --json` names the node: '<device>/<node id>' (sensor names repeat across devices)."""
        return f"{self.device}/{self.config.node_id}"


class NodeTable:
    """All nodes of one source, and their problems mirrored into the source's health."""

    def __init__(self, config: OpcUaSourceConfig, health: SourceHealth) -> None:
        self.config = config
        self.health = health
        self.nodes = [
            Node(config=n, name=n.name, device=n.device_id or config.frame_device, handle=i + 1)
            for i, n in enumerate(config.nodes)
        ]
        self.connected = False
        self.refused_values = 0
        health.detail.update(url=config.url, mode=config.mode, nodes=len(self.nodes), failing={})

    def set_problem(self, node: Node, reason: str, *, set_aside: bool = False) -> bool:
        """Record why a node has no value; True when this is news (worth logging or reporting)."""
        news = node.problem != reason
        node.problem, node.set_aside = reason, set_aside
        if news:
            self.health.errors += 1
            self.health.detail["failing"][node.key] = {"sensor": node.name, "reason": reason}
            log.warning("source %s: node %s (%s on %s) has no value: %s", self.config.name, node.name,
                        node.config.node_id, self.config.url, reason)
            self.refresh_state()
        return news

    def clear_problem(self, node: Node) -> None:
        if node.problem is None:
            return
        node.problem, node.set_aside = None, False
        failing = self.health.detail["failing"]
        if failing.get(node.key, {}).get("sensor") == node.name:  # another sensor may read the same node
            del failing[node.key]
        log.info("source %s: node %s delivers values again", self.config.name, node.name)
        self.refresh_state()

    def count_refused(self, count: int) -> None:
        """Values not carried (bad status or not representable), for `twinedge status`."""
        self.refused_values += count
        self.health.detail["refused_values"] = self.refused_values

    def set_aside(self) -> list[Node]:
        return [node for node in self.nodes if node.set_aside]

    def usable(self) -> list[Node]:
        return [node for node in self.nodes if node.ua_id is not None and not node.set_aside]

    def summary(self) -> str | None:
        failing = [node for node in self.nodes if node.problem is not None]
        if not failing:
            return None
        shown = "; ".join(f"{n.name} ({n.config.node_id}): {n.problem}" for n in failing[:_SHOWN_PROBLEMS])
        more = f"; and {len(failing) - _SHOWN_PROBLEMS} more" if len(failing) > _SHOWN_PROBLEMS else ""
        return f"{len(failing)} of {len(self.nodes)} nodes have no value: {shown}{more}"

    def refresh_state(self) -> None:
        if not self.connected:
            return
        summary = self.summary()
        if summary is None:
            self.health.set_state(SourceState.CONNECTED, f"connected to {self.config.url}")
        else:
            self.health.set_state(SourceState.DEGRADED, summary)


class FrameAssembler:
    """Turns per-device sensor dicts into frames whose timestamps are distinct per device."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._recent: dict[str, deque[float]] = {}

    def frames(self, values: Mapping[str, dict[str, Any]], stamps: Mapping[str, float]) -> list[TelemetryFrame]:
        """One frame per device; ``stamps`` gives a device's timestamp (default: now)."""
        return self.assemble((device, sensors, stamps.get(device)) for device, sensors in values.items())

    def assemble(self, groups: Iterable[tuple[str, dict[str, Any], float | None]]) -> list[TelemetryFrame]:
        """Frames from ``(device, sensors, timestamp or None for now)``, in the order given."""
        now = time.time()
        out = []
        for device, sensors, stamp in groups:
            ts = stamp or now
            recent = self._recent.get(device)
            if recent is None:
                recent = self._recent[device] = deque(maxlen=_RECENT_TS)
            while ts in recent:
                ts += 1e-6
            try:
                frame = TelemetryFrame(ts=ts, device_id=device, sensors=sensors)
            except ValidationError as exc:  # values were checked one by one; this guards the rest
                log.error("source %s: dropped a frame of device %s that failed validation: %s",
                          self.source, device, exc.errors(include_url=False)[:3])
                continue
            recent.append(ts)
            out.append(frame)
        return out


class LostSignal:
    """Set once, by whoever first notices the session is gone; carries the reason."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self.reason = ""

    def set(self, reason: str) -> None:
        if not self._event.is_set():
            self.reason = reason
            self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    async def wait(self) -> str:
        await self._event.wait()
        return self.reason
