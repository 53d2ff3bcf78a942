"""What the engine knows per device and per rule: the assignment rules, refusals, and each device's scoring state
with its report (to the cloud) and status (to `twinedge model status`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge.inference.alerts import AlertPolicy
from edge.inference.stream import InputStream
from shared.batch import ModelReport

if TYPE_CHECKING:
    from edge.inference.drift import DriftStats
    from edge.inference.runtime import LoadedModel

__all__ = ["DeviceState", "Rejection", "Rule", "rule_id"]


@dataclass(frozen=True, slots=True)
class Rule:
    """A model version for a device, every device of an edge, or the fleet, with its package file."""

    scope: str  # "device", "edge" or "fleet"
    target: str | None
    model: str
    version: int
    sha256: str | None  # None: a local package not read yet
    path: Path
    origin: str  # "cloud" or "local"

    @property
    def key(self) -> str:
        return self.sha256 or f"local:{self.path}"

    def shown(self) -> str:
        return f"{self.model} v{self.version}" + (" (local)" if self.origin == "local" else "")


def rule_id(rule: Rule | None) -> tuple[str, int] | None:
    return None if rule is None else (rule.key, rule.version)


@dataclass(slots=True)
class Rejection:
    """A package refused, or refused by one device, and why."""

    model: str
    version: int
    sha256: str | None
    reason: str
    at: float
    device: str | None = None  # None: the package itself is bad; else: it does not fit this device

    def as_dict(self) -> dict[str, Any]:
        return {"model": self.model, "version": self.version, "sha256": self.sha256, "reason": self.reason,
                "at": self.at, "device": self.device}


@dataclass(eq=False)
class DeviceState:
    """One device's scoring state."""

    id: str
    units: dict[str, str | None]  # from the source config, where known
    values: dict[str, Any] = field(default_factory=dict)  # the last value of every sensor (carried forward)
    generation: int = -1
    rule: Rule | None = None
    model: LoadedModel | None = None
    previous: LoadedModel | None = None
    pinned: bool = False  # rolled back: holds while the device's rule stays ``pinned_to``
    pinned_to: tuple[str, int] | None = None
    state: str | None = None  # "serving", "rejected", "failed"
    message: str = ""
    waiting: Rule | None = None  # rejected for want of sensors: checked again when new ones arrive
    checked_sensors: int = 0
    failures: int = 0
    stream: InputStream | None = None
    alerts: AlertPolicy | None = None
    drift: DriftStats | None = None
    last_score: float | None = None
    last_scored_at: float | None = None
    rows_scored: int = 0
    input_errors: int = 0

    @property
    def serving(self) -> bool:
        return self.state == "serving" and self.model is not None

    def report(self) -> ModelReport | None:
        """What the cloud's health report carries for this device; None with nothing assigned (or a local file
        that could not even be read: `model status` shows it)."""
        model, rule = self.model, self.rule
        if model is not None:
            name, version, sha256 = model.name, model.version, model.sha256
        elif rule is not None and rule.sha256 is not None and rule.origin == "cloud":
            name, version, sha256 = rule.model, rule.version, rule.sha256
        else:
            return None
        summary = self.drift.summary() if self.drift is not None and self.serving else None
        return ModelReport(
            model=name, version=version, sha256=sha256, state=self.state or "rejected",
            message=self.message[:512] or None, last_score=self.last_score, last_scored_at=self.last_scored_at,
            drift=summary.level if summary else "unknown",
            psi=summary.psi if summary else {}, rows=summary.rows if summary else 0,
        )

    def status(self) -> dict[str, Any]:
        """This device in `twinedge model status` (JSON)."""
        model, rule, stream = self.model, self.rule, self.stream
        summary = self.drift.summary() if self.drift is not None else None
        return {
            "device_id": self.id,
            "model": model.name if model else None,
            "version": model.version if model else None,
            "sha256": model.sha256 if model else None,
            "kind": model.kind if model else None,
            "state": self.state,
            "message": self.message,
            "assigned": {"model": rule.model, "version": rule.version, "scope": rule.scope, "origin": rule.origin}
            if rule else None,
            "pinned": self.pinned,
            "previous": {"model": self.previous.name, "version": self.previous.version} if self.previous else None,
            "last_score": self.last_score,
            "last_scored_at": self.last_scored_at,
            "rows_scored": self.rows_scored,
            "failures_in_a_row": self.failures,
            "frames_incomplete": stream.incomplete if stream else 0,
            "window_gaps": stream.gaps if stream else 0,
            "input_errors": self.input_errors,
            "alert_active": bool(self.alerts and self.alerts.active),
            "drift": summary.level if summary else "unknown",
            "psi": summary.psi if summary else {},
            "drift_rows": summary.rows if summary else 0,
        }
