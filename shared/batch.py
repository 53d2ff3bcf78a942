"""The sync contract between an edge and the cloud: a batch of sequenced frames and its ack.

Every frame an edge stores gets a per-edge sequence number that only grows. The
cloud stores a frame at most once per (edge, sequence) and answers with
``acked_through``: every frame of the batch with a sequence at or below it is
stored (or was already stored, or was refused for good), so the edge may delete
exactly those.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shared.frame import DEVICE_ID_PATTERN

__all__ = ["EdgeHealth", "Rejection", "SyncAck", "SyncBatch", "SequencedFrame"]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EdgeHealth(_Wire):
    """What the edge reports about itself with every batch."""

    queue_depth: int = Field(ge=0, description="frames waiting in the edge queue")
    oldest_age_s: float | None = Field(default=None, ge=0, description="age of the oldest queued frame, s")
    drops: dict[str, int] = Field(default_factory=dict, description="frames dropped, by reason")
    quarantined: int = Field(default=0, ge=0, description="frames set aside as invalid")
    sources: dict[str, str] = Field(default_factory=dict, description="source name -> health state")


class SequencedFrame(_Wire):
    """A frame as it travels to the cloud: its edge sequence and the frame as plain data.

    ``frame`` stays plain data here (any value, even one that is not a map) so
    that the cloud can validate every frame on its own and refuse only the bad
    ones; the edge sends ``TelemetryFrame.to_wire()``.
    """

    seq: int = Field(ge=1, le=2**63 - 1)
    frame: Any = Field(description="a TelemetryFrame as plain data (validated one by one)")


class SyncBatch(_Wire):
    edge_id: str = Field(pattern=DEVICE_ID_PATTERN)
    sent_at: float
    frames: list[SequencedFrame] = Field(max_length=50_000)
    health: EdgeHealth


class Rejection(_Wire):
    seq: int
    reason: str


class SyncAck(_Wire):
    acked_through: int | None = Field(description="highest sequence the edge may delete through")
    stored: int = Field(ge=0, description="frames newly stored")
    duplicates: int = Field(ge=0, description="frames already stored before")
    rejected: list[Rejection] = Field(default_factory=list)
