"""What `twinedge status` and `twinedge queue stats` say about the queue: one snapshot of its counts."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from edge.queuefiles import DiskUsage

__all__ = ["QueueStats"]


@dataclass
class QueueStats:
    depth: int
    oldest_seq: int | None
    newest_seq: int | None
    oldest_stored_at: float | None
    disk: DiskUsage
    full: bool = False  # the policy applied within the last report interval
    policy: str = "drop_oldest"
    drops: dict[str, int] = field(default_factory=dict)
    refused_unacked: int = 0
    duplicates: int = 0
    quarantined: int = 0
    resets: int = 0
    alerts: int = 0  # alert events waiting for the cloud
    oldest_alert_stored_at: float | None = None
    alert_drops: dict[str, int] = field(default_factory=dict)
    events: int = 0  # edge events waiting for the cloud
    event_drops: dict[str, int] = field(default_factory=dict)
    documents: int = 0  # documents waiting for the cloud
    document_drops: dict[str, int] = field(default_factory=dict)

    @property
    def used_bytes(self) -> int:
        return self.disk.used

    @property
    def budget_bytes(self) -> int:
        return self.disk.budget

    def oldest_age(self, now: float | None = None) -> float | None:
        if self.oldest_stored_at is None:
            return None
        return max(0.0, (now or time.time()) - self.oldest_stored_at)

    def as_dict(self) -> dict[str, Any]:
        return {
            "depth": self.depth,
            "oldest_seq": self.oldest_seq,
            "newest_seq": self.newest_seq,
            "oldest_age_s": self.oldest_age(),
            **self.disk.as_dict(),
            "full": self.full,
            "when_full": self.policy,
            "drops": dict(self.drops),
            "refused_unacked": self.refused_unacked,
            "duplicates": self.duplicates,
            "quarantined": self.quarantined,
            "store_resets": self.resets,
            "alerts": {
                "pending": self.alerts,
                "oldest_age_s": None if self.oldest_alert_stored_at is None
                else max(0.0, time.time() - self.oldest_alert_stored_at),
                "dropped": dict(self.alert_drops),
            },
            "events": {"pending": self.events, "dropped": dict(self.event_drops)},
            "documents": {"pending": self.documents, "dropped": dict(self.document_drops)},
        }
