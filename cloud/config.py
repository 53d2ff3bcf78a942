"""The cloud service's configuration: one TOML file, validated strictly, secrets kept out of logs.

The database URL may come from the environment (``TWINCLOUD_DATABASE_URL``) or
from a file it names (``TWINCLOUD_DATABASE_URL_FILE``, e.g. a systemd
credential), which win over the config file, so the PostgreSQL password need
not be written into the config.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, ValidationError, field_validator

from shared.configbase import (
    ByteSize,
    ConfigFileError,
    Duration,
    StrictModel,
    format_validation_error,
    load_config,
)

__all__ = [
    "DATABASE_URL_ENV",
    "DATABASE_URL_FILE_ENV",
    "CloudConfig",
    "ConfigFileError",
    "ConsoleConfig",
    "DatabaseConfig",
    "ProcessConfig",
    "QueryConfig",
    "RetentionConfig",
    "ServerConfig",
    "SyncConfig",
    "load_cloud_config",
    "redact_url",
]

DATABASE_URL_ENV = "TWINCLOUD_DATABASE_URL"
DATABASE_URL_FILE_ENV = "TWINCLOUD_DATABASE_URL_FILE"
CONFIG_ENV = "TWINCLOUD_CONFIG"
REPLICA_ENV = "TWINCLOUD_REPLICA"  # set by `twincloud serve` for its worker processes
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # set by `twincloud serve` for its workers' shared metrics
REPLICA_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$"


def redact_url(url: str) -> str:
    """The URL with its password replaced by ``***``, fit for a log line."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[1]}"))


class ServerConfig(StrictModel):
    host: str = Field(default="127.0.0.1", min_length=1, max_length=255)
    port: int = Field(default=8080, ge=0, le=65535)
    workers: int = Field(default=1, ge=1, le=64, description="uvicorn worker processes")
    metrics_public: bool = Field(default=False, description="serve /metrics without a token")
    live_poll: Duration = Field(
        default=0.5, ge=0.05, le=60, description="how often the live feed looks for frames other processes stored")
    auth_cache_ttl: Duration = Field(
        default=5.0, ge=0, le=300, description="how long a checked token is trusted before it is looked up again")
    header_timeout: Duration = Field(
        default=10.0, ge=0.1, le=3600,
        description="a request line and headers must arrive within this time, else the connection is closed")
    body_timeout: Duration = Field(
        default=10.0, ge=0.1, le=3600,
        description="the whole request body must arrive within this time after the headers, else 408")
    max_json_bytes: ByteSize = Field(
        default=1024**2, ge=1024, le=64 * 1024**2,
        description="largest body of the JSON routes (admin, devices, physics checks)")
    api_docs: Literal["public", "token", "off"] = Field(
        default="token", description="/docs and /openapi.json: public, the API map behind a viewer token, or off")
    replica: str | None = Field(
        default=None, min_length=1, max_length=100, pattern=REPLICA_PATTERN,
        description="this replica's name in the replica label of /metrics (default: host name:port)")


class DatabaseConfig(StrictModel):
    url: SecretStr = Field(
        default=SecretStr("sqlite:///twincloud.db"),
        description="sqlite:///path/to/file.db or postgresql://user:pass@host:5432/db")
    pool_size: int = Field(default=8, ge=1, le=200, description="connections per process (readers for SQLite)")
    busy_timeout: Duration = Field(default=10.0, ge=0.1, le=600, description="wait for a locked database")
    sqlite_synchronous: Literal["full", "normal"] = Field(
        default="full", description="full: an acked batch survives a power cut (one fsync per batch); "
                                    "normal: it survives a crash of the process only")
    timescaledb: Literal["auto", "off"] = Field(
        default="auto", description="use TimescaleDB hypertables when the extension is installed "
                                    "(otherwise samples are partitioned by week)")

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: SecretStr) -> SecretStr:
        url = value.get_secret_value()
        if not url.startswith(("sqlite://", "postgresql://", "postgres://")):
            raise ValueError("expected sqlite:///path/file.db or postgresql://user@host/db")
        return value

    @property
    def backend(self) -> Literal["sqlite", "postgres"]:
        return "sqlite" if self.url.get_secret_value().startswith("sqlite") else "postgres"

    @property
    def sqlite_path(self) -> Path:
        """The file of a ``sqlite:///relative.db`` or ``sqlite:////absolute.db`` URL."""
        return Path(self.url.get_secret_value().removeprefix("sqlite:///") or "twincloud.db")


class SyncConfig(StrictModel):
    max_body_bytes: ByteSize = Field(default=8 * 1024**2, ge=1024, le=1024**3,
                                     description="largest compressed request body")
    max_decoded_bytes: ByteSize = Field(default=64 * 1024**2, ge=1024, le=4 * 1024**3,
                                        description="largest body after decompression")
    max_frames: int = Field(default=20_000, ge=1, le=50_000, description="frames per batch")
    max_concurrent: int = Field(default=8, ge=1, le=1024, description="sync requests handled at once per process")
    retry_after: Duration = Field(default=2.0, ge=1, le=3600, description="Retry-After sent with 503")
    max_future_skew: Duration = Field(
        default=300.0, ge=1, le=366 * 86400,
        description="frames dated further ahead of the cloud's clock are refused (their state would freeze)")


class QueryConfig(StrictModel):
    """The bound on the heavy queries (history, aggregates, program search and runs) of each process (see
    cloud.querygate)."""

    max_running: int = Field(default=4, ge=1, le=256, description="heavy queries run at once")
    max_queued: int = Field(default=200, ge=0, le=100_000,
                            description="queries waiting for a slot; past it 503 + Retry-After")
    max_queued_per_client: int = Field(default=32, ge=0, le=100_000,
                                       description="queries waiting per token; past it 503 + Retry-After")
    max_wait: Duration = Field(default=10.0, ge=0.1, le=600,
                               description="a query waiting longer for a slot gets 503 + Retry-After")


class RetentionConfig(StrictModel):
    samples_days: int = Field(default=90, ge=0, le=36_500,
                              description="raw samples (and the frame index) kept this long; 0 keeps them")
    rollups_days: int = Field(default=730, ge=0, le=36_500,
                              description="rollups (10 s, 1 min, 1 h levels), alerts, edge events and the "
                                          "history of documents; 0 keeps them")
    interval: Duration = Field(default=3600.0, ge=1, le=7 * 86400, description="how often old data is removed")


class PhysicsConfig(StrictModel):
    store_dir: Path | None = Field(
        default=None, description="deprecated: uploads are kept in the database; the uploads of this directory "
                                  "are copied there at start")
    max_upload_bytes: ByteSize = Field(default=64 * 1024**2, ge=1024, le=4 * 1024**3)
    time_budget_s: float = Field(default=30.0, gt=0, le=3600, description=
        "longest a physics request may work; past it the request is stopped and answered 422")
    memory_budget_mb: int = Field(default=1024, ge=16, le=1024**2, description=
        "most memory the structures of one physics request may need (estimated from its triangles "
        "before they are built); over it the request is answered 422")


class ConsoleConfig(StrictModel):
    """The web console's sign-in and sessions (see cloud.console)."""

    enabled: bool = Field(default=True, description="serve the console at / and its sign-in at /login")
    session_idle: Duration = Field(default=8 * 3600.0, ge=60, le=30 * 86400,
                                   description="a session unused this long ends")
    session_max: Duration = Field(default=7 * 86400.0, ge=60, le=365 * 86400,
                                  description="a session ends this long after sign-in, used or not")
    secure_cookie: Literal["auto", "always", "never"] = Field(
        default="auto", description="mark the session cookie Secure: auto when the request came over https")
    login_attempts: int = Field(default=10, ge=1, le=10_000,
                                description="failed sign-ins per client address and minute before 429")


class ProcessConfig(StrictModel):
    """Virtual sensors (cloud.process): the models bindings may name, and the limits per device."""

    models: dict[str, str] = Field(default_factory=dict, max_length=64, description=
                                   "more process models: name -> 'package.module:Class'")
    max_bindings_per_device: int = Field(default=16, ge=1, le=1000)
    max_state_points: int = Field(default=20_000, ge=10, le=1_000_000, description=
                                  "points a binding keeps (a window's, or a run's inputs)")
    catch_up_readings: int = Field(default=5_000, ge=10, le=1_000_000, description=
                                   "readings a binding processes per step (and transaction)")
    max_optimizations: int = Field(default=1, ge=1, le=16, description=
                                   "optimizer searches running at once in this process (each keeps a core busy "
                                   "for up to its budget); past it 503 + Retry-After")


class LogConfig(StrictModel):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class CloudConfig(StrictModel):
    server: ServerConfig = ServerConfig()
    database: DatabaseConfig = DatabaseConfig()
    sync: SyncConfig = SyncConfig()
    retention: RetentionConfig = RetentionConfig()
    queries: QueryConfig = QueryConfig()
    physics: PhysicsConfig = PhysicsConfig()
    console: ConsoleConfig = ConsoleConfig()
    process: ProcessConfig = ProcessConfig()
    log: LogConfig = LogConfig()


def load_cloud_config(path: str | Path | None) -> CloudConfig:
    """The config from ``path`` (defaults when None), with the environment's database URL on top."""
    config = CloudConfig() if path is None else load_config(path, CloudConfig)
    env_url = os.environ.get(DATABASE_URL_ENV)
    if not env_url and (url_file := os.environ.get(DATABASE_URL_FILE_ENV)):
        try:
            env_url = Path(url_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigFileError(DATABASE_URL_FILE_ENV, [f"cannot read {url_file}: {exc.strerror}"]) from None
    if env_url:
        try:
            DatabaseConfig.model_validate({"url": env_url})  # the URL checks alone
            database = config.database.model_copy(update={"url": SecretStr(env_url)})
        except ValidationError as exc:
            lines = [f"{DATABASE_URL_ENV}: " + line.split(": ", 1)[-1].split(" (got ")[0]
                     for line in format_validation_error(exc, DatabaseConfig)]
            raise ConfigFileError(DATABASE_URL_ENV, lines) from None
        config = config.model_copy(update={"database": database})
    return config
