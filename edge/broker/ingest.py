"""MQTT payload -> validated frames -> the sink, with every refusal counted by reason.

One ingest path serves the embedded broker and the external-broker client.
Devices publish to ``twin/<device_id>/telemetry`` one frame (a map) or a list of
frames, as MessagePack or JSON. The topic names the device: a frame without
``device_id`` takes it from the topic, and a frame naming another device is
refused (``device_mismatch``), so one device's credentials cannot write
another device's data. A refused payload is counted, handed to
``sink.reject``, and logged once per burst, never once per message.
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any, NamedTuple

from edge.logthrottle import Throttle
from edge.sources.base import FrameSink, SourceHealth
from shared.codec import decode_obj, validate_frame
from shared.errors import CodecError, FrameError
from shared.frame import DEVICE_ID_PATTERN, TelemetryFrame

__all__ = [
    "BURST_QUIET",
    "Received",
    "RejectReason",
    "TelemetryIngest",
    "alert_topic",
    "device_of_topic",
    "group_by_device",
    "republish_prefix",
]

log = logging.getLogger(__name__)

_DEVICE_RE = re.compile(DEVICE_ID_PATTERN)
BURST_QUIET = 10.0  # seconds between two lines about refused payloads


class RejectReason:
    """The reason codes that `status` counts (a payload's first problem decides)."""

    TOO_LARGE = "too_large"
    UNREADABLE = "unreadable"
    NOT_FRAMES = "not_frames"
    TOO_MANY_FRAMES = "too_many_frames"
    INVALID_FRAME = "invalid_frame"
    DEVICE_MISMATCH = "device_mismatch"
    BAD_TOPIC = "bad_topic"


def device_of_topic(topic: str) -> str | None:
    """``twin/<id>/telemetry`` -> ``<id>``; None for any other topic (the id itself is not checked)."""
    if topic.startswith("twin/") and topic.endswith("/telemetry"):
        middle = topic[5:-10]
        if middle and "/" not in middle:
            return middle
    return None


def republish_prefix(edge_id: str) -> str:
    """Stored frames are republished on ``twinedge/<edge_id>/frames/<device_id>`` (``republish = true``)."""
    return f"twinedge/{edge_id}/frames/"


def alert_topic(device_id: str) -> str:
    """A device's alert events (raised, cleared) are published on ``twin/<device_id>/alerts``."""
    return f"twin/{device_id}/alerts"


def group_by_device(frames: Sequence[TelemetryFrame]) -> dict[str, list[TelemetryFrame]]:
    groups: dict[str, list[TelemetryFrame]] = {}
    for frame in frames:
        groups.setdefault(frame.device_id, []).append(frame)
    return groups


class Received(NamedTuple):
    """What became of one message: frames stored, and frames (or the whole payload, as 1) refused."""

    stored: int
    refused: int


class TelemetryIngest:
    """Decodes device payloads and hands the frames to the sink."""

    def __init__(
        self, sink: FrameSink, *, max_payload: int, max_frames: int = 10_000, health: SourceHealth | None = None
    ) -> None:
        self.sink = sink
        self.health = health  # the MQTT side's health: frames stored count as its data, as for a source
        self.max_payload = max_payload
        self.max_frames = max_frames
        self.messages_in = 0
        self.frames_in = 0
        self.bytes_in = 0
        self.rejected: Counter[str] = Counter()
        self.last_message: float | None = None
        self._log = Throttle(log, BURST_QUIET)  # one line per burst of refusals, then a count

    def snapshot(self) -> dict[str, Any]:
        return {
            "messages_in": self.messages_in,
            "frames_in": self.frames_in,
            "bytes_in": self.bytes_in,
            "rejected": dict(self.rejected),
            "last_message": self.last_message,
        }

    def close(self) -> None:
        self._log.close()

    async def reject(
        self, reason: str, detail: str, *, topic: str, client_id: str, payload: bytes | None, n: int = 1
    ) -> None:
        """Count, log once per burst and hand to the sink's quarantine."""
        self.rejected[reason] += n
        origin = f"mqtt:{topic}"
        self._log.warning("refused", "refused MQTT payload from client %r on %s: %s (%s)", client_id, topic, detail,
                          reason)
        await self.sink.reject(origin, f"{reason}: {detail}", payload)

    async def receive(self, topic: str, payload: bytes, *, client_id: str, durable: bool) -> Received:
        """Ingest one message: how many frames were stored and how many refused.

        With ``durable=True`` it returns only after the sink committed the frames,
        which is what lets the broker acknowledge a QoS 1/2 publish afterwards.
        """
        frames, refused = await self._parse(topic, payload, client_id=client_id)
        if frames:
            await self.sink.put(frames, durable=durable)
            self.frames_in += len(frames)
            if self.health is not None:
                self.health.record_success(len(frames), sum(len(frame.sensors) for frame in frames))
        return Received(len(frames), refused)

    async def frames_of(self, topic: str, payload: bytes, *, client_id: str) -> list[TelemetryFrame]:
        """The valid frames of one message; refusals are counted and handed to ``sink.reject``."""
        return (await self._parse(topic, payload, client_id=client_id))[0]

    async def _parse(self, topic: str, payload: bytes, *, client_id: str) -> tuple[list[TelemetryFrame], int]:
        """(valid frames, number refused: frames, or 1 for a payload refused whole)."""
        self.messages_in += 1
        self.bytes_in += len(payload)
        self.last_message = time.time()
        device = device_of_topic(topic)
        if device is None or not _DEVICE_RE.match(device):
            shown = repr(device)[:80]
            await self.reject(
                RejectReason.BAD_TOPIC, f"the topic's device id {shown} is not a valid id (letters, digits, . _ : -)",
                topic=topic, client_id=client_id, payload=payload,
            )
            return [], 1
        if len(payload) > self.max_payload:
            await self.reject(
                RejectReason.TOO_LARGE, f"{len(payload)} bytes exceeds the limit of {self.max_payload} bytes",
                topic=topic, client_id=client_id, payload=None,
            )
            return [], 1
        try:
            obj = decode_obj(payload, max_bytes=self.max_payload)
        except CodecError as exc:
            await self.reject(RejectReason.UNREADABLE, str(exc), topic=topic, client_id=client_id, payload=payload)
            return [], 1
        return await self._frames(obj, device, topic=topic, client_id=client_id, payload=payload)

    async def _frames(
        self, obj: Any, device: str, *, topic: str, client_id: str, payload: bytes
    ) -> tuple[list[TelemetryFrame], int]:
        if isinstance(obj, dict):
            items, single = [obj], True
        elif isinstance(obj, list):
            items, single = obj, False
            if len(items) > self.max_frames:
                await self.reject(
                    RejectReason.TOO_MANY_FRAMES, f"{len(items)} frames in one message exceeds {self.max_frames}",
                    topic=topic, client_id=client_id, payload=payload,
                )
                return [], 1
        else:
            await self.reject(
                RejectReason.NOT_FRAMES, f"expected a frame (map) or a list of frames, got {type(obj).__name__}",
                topic=topic, client_id=client_id, payload=payload,
            )
            return [], 1
        frames: list[TelemetryFrame] = []
        refused: dict[str, list[str]] = {}
        for index, item in enumerate(items):
            prefix = "" if single else f"[{index}]."
            if isinstance(item, dict):
                named = item.get("device_id")
                if named is None:
                    item = {**item, "device_id": device}
                elif named != device:
                    shown = repr(named)[:70]
                    refused.setdefault(RejectReason.DEVICE_MISMATCH, []).append(
                        f"{prefix}device_id: {shown} differs from the topic's device {device!r}"
                    )
                    continue
            try:
                frames.append(validate_frame(item, prefix))
            except FrameError as exc:
                refused.setdefault(RejectReason.INVALID_FRAME, []).append(str(exc))
        for reason, details in refused.items():
            more = f" (and {len(details) - 1} more)" if len(details) > 1 else ""
            await self.reject(
                reason, details[0][:300] + more, topic=topic, client_id=client_id, payload=payload, n=len(details)
            )
        return frames, sum(len(details) for details in refused.values())
