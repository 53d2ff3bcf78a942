"""The edge's one config file: a TOML document validated by these pydantic models.

Each component gets its own section model; sources are a discriminated union on
``kind`` whose members live beside their code in ``edge/sources/``.
"""

from __future__ import annotations

import re
import urllib.parse
from pathlib import Path
from typing import Literal

from pydantic import Field, HttpUrl, SecretStr, field_serializer, model_validator

from edge.broker.config import AclRule, BrokerConfig, ListenerConfig, MqttClientConfig
from edge.inference.config import InferenceConfig
from edge.sources import SourceConfig
from edge.sources.modbus.config import check_serial_ports
from shared.configbase import ByteSize, ConfigFileError, Duration, StrictModel, load_config
from shared.frame import DEVICE_ID_PATTERN

__all__ = [
    "AclRule",
    "BrokerConfig",
    "ConfigFileError",
    "ControlConfig",
    "EdgeSection",
    "GatewayConfig",
    "InferenceConfig",
    "ListenerConfig",
    "LogConfig",
    "MqttClientConfig",
    "StoreConfig",
    "UplinkConfig",
    "load_gateway_config",
    "mask_url",
]

_SECRET_QUERY = re.compile(r"(?i)(^|&)((?:[^=&]*)(?:token|password|passwd|secret|key|auth)[^=&]*=)[^&]*")


def mask_url(url: str) -> str:
    """The URL fit to print or log: a password in it, and query values named like secrets, become ``***``."""
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user, has_password, _ = userinfo.partition(":")
        netloc = f"{user}:***@{host}" if has_password else netloc
    query = _SECRET_QUERY.sub(r"\1\2***", parts.query)
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))

class EdgeSection(StrictModel):
    id: str = Field(pattern=DEVICE_ID_PATTERN, description="this edge's id, unique in the fleet")
    state_dir: Path = Field(Path("/var/lib/twinedge"), description="queue and other state")


class StoreConfig(StrictModel):
    """The durable store-and-forward queue (SQLite, WAL)."""

    path: Path | None = Field(None, description="default: <state_dir>/queue.db")
    batch_max_frames: int = Field(1000, ge=1, le=100_000)
    batch_max_delay: Duration = Field(
        0.02, ge=0.001, le=10.0, description="longest wait to gather a transaction (fewer fsyncs vs latency)"
    )
    ingest_queue_frames: int = Field(20_000, ge=100, le=1_000_000)
    disk_budget: ByteSize = Field(1024**3, ge=1024**2, le=2**44)
    when_full: Literal["drop_oldest", "drop_newest"] = "drop_oldest"
    synchronous: Literal["full", "normal"] = Field(
        "full", description="full survives power cuts; normal only process crashes"
    )
    alerts_max: int = Field(
        100_000, ge=100, le=10_000_000,
        description="model alerts kept while the cloud is away; past it the oldest go (counted)",
    )
    events_max: int = Field(
        10_000, ge=100, le=1_000_000,
        description="edge events kept (synced or not, for `twinedge events`); past it the oldest the cloud has "
                    "go, and those it lacks only once no frame waits (counted)",
    )
    documents_max: int = Field(
        10_000, ge=10, le=1_000_000,
        description="documents (programs, tool assets, device models) waiting for the cloud; past it the oldest "
                    "go (counted); the disk budget never drops them",
    )
    documents_max_bytes: ByteSize = Field(
        64 * 1024**2, ge=1024**2, le=64 * 1024**3,
        description="bytes of documents waiting for the cloud; past it the oldest go (counted), so a flood of "
                    "asset changes cannot crowd out the frames",
    )


class UplinkConfig(StrictModel):
    """Sync to the cloud aggregator over HTTPS."""

    url: HttpUrl = Field(description="the cloud's base URL, e.g. https://cloud.example.com")
    token: SecretStr | None = Field(None, description="this edge's bearer token (prefer token_file)")
    token_file: Path | None = Field(None, description="a file holding the edge's bearer token")
    ca_file: Path | None = Field(None, description="CA certificate(s) to trust for the cloud's TLS certificate")
    batch_max_frames: int = Field(2000, ge=1, le=50_000)
    batch_max_bytes: ByteSize = Field(1_000_000, ge=1024, le=64 * 1024**2, description="before compression")
    compression: Literal["gzip", "zstd", "none"] = "gzip"
    interval: Duration = Field(
        1.0, ge=0.0, le=3600.0, description="while the queue is short, at most one batch per interval"
    )
    timeout: Duration = Field(30.0, ge=1.0, le=600.0, description="per request")
    retry_initial: Duration = Field(1.0, ge=0.001, le=60.0)
    retry_max: Duration = Field(60.0, ge=0.01, le=3600.0)
    backlog_bandwidth: ByteSize = Field(
        0, ge=0, le=10**10, description="bytes/s (compressed) for the backlog after an outage; 0 = no cap"
    )
    documents_max: int = Field(100, ge=1, le=1000, description="documents (CNC programs, assets) per batch")
    documents_max_bytes: ByteSize = Field(
        2_000_000, ge=300 * 1024, le=64 * 1024**2,
        description="documents' bytes per batch before compression (a single larger document goes alone)"
    )

    @property
    def shown_url(self) -> str:
        """The URL for status lines and logs: without a password it may carry."""
        return mask_url(str(self.url))

    @field_serializer("url", when_used="json")
    def _mask_url(self, url: HttpUrl) -> str:
        return mask_url(str(url))

    @model_validator(mode="after")
    def _one_token(self) -> UplinkConfig:
        if (self.token is None) == (self.token_file is None):
            raise ValueError("set exactly one of token_file or token")
        return self


class ControlConfig(StrictModel):
    """The local socket that `twinedge status` and `tail` talk to."""

    socket: Path | None = Field(None, description="default: <state_dir>/control.sock")
    mode: int = Field(0o660, ge=0, le=0o777, description="file mode of the socket")


class LogConfig(StrictModel):
    level: Literal["debug", "info", "warning", "error"] = "info"


class GatewayConfig(StrictModel):
    edge: EdgeSection
    broker: BrokerConfig = Field(default_factory=lambda: BrokerConfig(allow_anonymous=False, enabled=False))
    mqtt_client: MqttClientConfig | None = None
    uplink: UplinkConfig | None = None
    store: StoreConfig = Field(default_factory=StoreConfig)
    sources: list[SourceConfig] = Field(default_factory=list, max_length=1000)
    control: ControlConfig = Field(default_factory=ControlConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    inference: InferenceConfig = Field(default_factory=InferenceConfig)

    @model_validator(mode="after")
    def _unique_source_names(self) -> GatewayConfig:
        seen: set[str] = set()
        for src in self.sources:
            if src.name in seen:
                raise ValueError(f"two sources are named {src.name!r}; names must be unique")
            seen.add(src.name)
        return self

    @model_validator(mode="after")
    def _serial_lines_agree(self) -> GatewayConfig:
        check_serial_ports(self.sources)
        return self

    @property
    def store_path(self) -> Path:
        return self.store.path or self.edge.state_dir / "queue.db"

    @property
    def control_socket(self) -> Path:
        return self.control.socket or self.edge.state_dir / "control.sock"

    @property
    def models_dir(self) -> Path:
        return self.inference.models_dir or self.edge.state_dir / "models"


def load_gateway_config(path: str | Path) -> GatewayConfig:
    """Load and validate an edge config; raises ConfigFileError listing every problem."""
    return load_config(path, GatewayConfig)
