"""The MTConnect source's config: where the agent is, how to stream from it, and how devices are named."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, HttpUrl, field_validator

from shared.configbase import Duration, StrictModel
from shared.frame import DEVICE_ID_PATTERN

__all__ = ["MTConnectSourceConfig"]


class MTConnectSourceConfig(StrictModel):
    """One MTConnect agent (every device it serves, or one device under ``url``'s path)."""

    kind: Literal["mtconnect"]
    name: str = Field(pattern=DEVICE_ID_PATTERN, description="source name; keys its position in the queue file")
    url: HttpUrl = Field(description="the agent's base URL, e.g. http://10.0.0.9:5000 (or .../OKUMA for one device)")
    device_ids: dict[str, str] = Field(
        default_factory=dict, max_length=1000,
        description="MTConnect device name or uuid -> device id in frames (default: the device's name)")
    mode: Literal["stream", "poll"] = Field(
        "stream", description="stream /sample as multipart (polling when streaming fails), or poll only")
    interval: Duration = Field(0.1, ge=0.0, le=60.0, description="the agent sends at most one part per interval")
    heartbeat: Duration = Field(
        10.0, ge=0.05, le=600.0, description="the agent sends an empty part after this long without data; a stream "
        "silent for two heartbeats is dead (reconnect, check the agent's instance)")
    poll_interval: Duration = Field(1.0, ge=0.01, le=3600.0, description="between /sample requests when polling")
    stream_retry: Duration = Field(60.0, ge=1.0, le=86_400.0,
                                   description="after falling back to polling, try streaming again after this long")
    count: int = Field(1000, ge=1, le=100_000, description="observations asked for per request or part")
    timeout: Duration = Field(10.0, ge=0.1, le=600.0, description="per request (connect, probe, current, assets)")
    fetch_assets: bool = Field(True, description="fetch an asset when ASSET_CHANGED or ASSET_REMOVED names it")

    @field_validator("device_ids")
    @classmethod
    def _ids(cls, ids: dict[str, str]) -> dict[str, str]:
        for name, device_id in ids.items():
            if not re.match(DEVICE_ID_PATTERN, device_id):
                raise ValueError(f"device id {device_id!r} for {name!r} must be letters, digits and . _ : - "
                                 "(at most 64, starting with a letter or digit)")
        return ids

    @property
    def position_key(self) -> str:
        return f"mtconnect:{self.name}"
