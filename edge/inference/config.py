"""The ``[inference]`` section of the edge config: how models are served, alerts raised and drift judged."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from shared.configbase import Duration, StrictModel
from shared.frame import DEVICE_ID_PATTERN

__all__ = ["AlertPolicyConfig", "DriftConfig", "InferenceConfig", "LocalModelConfig"]


class AlertPolicyConfig(StrictModel):
    """When an anomaly model's scores raise and clear an alert (timestamps are the frames', not the clock)."""

    min_duration: Duration = Field(
        0.0, ge=0.0, le=86_400.0, description="the score stays at or above the threshold this long before an alert "
        "is raised; 0 raises on the first such row"
    )
    clear_ratio: float = Field(
        0.8, gt=0.0, le=1.0, description="the alert clears below threshold x clear_ratio (hysteresis)"
    )
    clear_duration: Duration = Field(
        0.0, ge=0.0, le=86_400.0, description="the score stays below the clearing level this long before it clears"
    )


class DriftConfig(StrictModel):
    """Population stability per input column, against the model card's training statistics."""

    window_rows: int = Field(1000, ge=10, le=1_000_000, description="the last N scored rows are compared")
    min_rows: int = Field(200, ge=1, le=1_000_000, description="below this many rows drift is 'unknown'")

    @model_validator(mode="after")
    def _min_within_window(self) -> DriftConfig:
        if self.min_rows > self.window_rows:
            raise ValueError(f"min_rows ({self.min_rows}) must be at most window_rows ({self.window_rows}): "
                             "drift would never be judged")
        return self


class LocalModelConfig(StrictModel):
    """A model package on this box, served without a cloud: for one device, or for every device of this edge."""

    package: Path = Field(description="a .twinmodel file")
    device: str | None = Field(None, pattern=DEVICE_ID_PATTERN, description="the device it scores")
    edge: bool = Field(False, description="true: every device of this edge without a device rule")
    version: int = Field(1, ge=1, le=2**31 - 1, description="the version shown in status and alerts")

    @model_validator(mode="after")
    def _one_target(self) -> LocalModelConfig:
        if (self.device is None) == (not self.edge):
            raise ValueError("set exactly one of device = \"...\" or edge = true")
        return self


class InferenceConfig(StrictModel):
    """Scoring frames with the assigned models on the edge."""

    threads: int = Field(1, ge=1, le=64, description="onnxruntime intra-op threads per model")
    failures_before_disable: int = Field(
        3, ge=1, le=1000, description="a model that fails this many runs in a row is taken out of the path"
    )
    alerts: AlertPolicyConfig = Field(default_factory=AlertPolicyConfig)
    drift: DriftConfig = Field(default_factory=DriftConfig)
    models_dir: Path | None = Field(None, description="downloaded packages; default: <state_dir>/models")
    poll_interval: Duration = Field(60.0, ge=1.0, le=86_400.0, description="how often the cloud is asked for "
                                    "this edge's model assignments")
    local: list[LocalModelConfig] = Field(default_factory=list, max_length=1000)

    @model_validator(mode="after")
    def _one_local_rule_per_target(self) -> InferenceConfig:
        seen: set[str] = set()
        for rule in self.local:
            target = f"device {rule.device!r}" if rule.device is not None else "the edge"
            if target in seen:
                raise ValueError(f"two local models for {target}; a target takes one model")
            seen.add(target)
        return self
