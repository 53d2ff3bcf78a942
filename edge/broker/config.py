"""Config models of the MQTT side: the embedded broker and the external-broker client."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, model_validator

from shared.configbase import ByteSize, Duration, StrictModel

__all__ = ["AclRule", "BrokerConfig", "ListenerConfig", "MqttClientConfig"]

Port = Annotated[int, Field(ge=1, le=65535)]


class ListenerConfig(StrictModel):
    name: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$")
    host: str = "127.0.0.1"
    port: Port = 1883
    tls: bool = False
    certfile: Path | None = None
    keyfile: Path | None = None

    @model_validator(mode="after")
    def _tls_needs_files(self) -> ListenerConfig:
        if self.tls and (self.certfile is None or self.keyfile is None):
            raise ValueError("a TLS listener needs certfile and keyfile")
        return self


class AclRule(StrictModel):
    """Topics one user may publish and subscribe to (MQTT wildcards, %u = the username)."""

    username: str = Field(min_length=1, max_length=128)
    publish: list[str] = Field(default_factory=list)
    subscribe: list[str] = Field(default_factory=list)


class BrokerConfig(StrictModel):
    """The embedded MQTT broker (amqtt). Bound to 127.0.0.1 and closed to anonymous clients by default."""

    enabled: bool = True
    listeners: list[ListenerConfig] = Field(
        default_factory=lambda: [ListenerConfig(name="default")], min_length=1, max_length=8
    )
    allow_anonymous: bool = False
    password_file: Path | None = Field(None, description="lines of user:sha512-crypt-hash")
    acl: list[AclRule] | None = Field(
        None, description="per-user topic rules; unset: any user may publish twin/<id>/telemetry"
    )
    max_payload: ByteSize = Field(256 * 1024, ge=64, le=16 * 1024 * 1024)
    republish: bool = Field(True, description="republish stored frames on twinedge/<edge>/frames/<device>")

    @model_validator(mode="after")
    def _someone_can_connect(self) -> BrokerConfig:
        if self.enabled and not self.allow_anonymous and self.password_file is None:
            raise ValueError("set password_file, or allow_anonymous = true (not recommended)")
        return self


class MqttClientConfig(StrictModel):
    """Consume device telemetry from an external broker (e.g. Mosquitto) instead of the embedded one."""

    host: str = "127.0.0.1"
    port: Port = 1883
    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = None
    tls: bool = False
    cafile: Path | None = None
    client_id: str = Field("twinedge", min_length=1, max_length=64)
    topics: list[str] = Field(default_factory=lambda: ["twin/+/telemetry"], min_length=1)
    qos: Literal[0, 1, 2] = 1
    keepalive: Duration = Field(30.0, ge=5, le=3600)
