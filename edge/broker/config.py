"""Config models of the MQTT side: the embedded broker and the external-broker client."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, model_validator

from shared.configbase import ByteSize, Duration, StrictModel

__all__ = ["AclRule", "BrokerConfig", "ListenerConfig", "MqttClientConfig", "valid_filter"]

Port = Annotated[int, Field(ge=1, le=65535)]
PACKET_HEADROOM = 1024  # bytes of a PUBLISH besides the payload: topic, packet id (max_packet_size check)


def valid_filter(topic_filter: str) -> bool:
    """True for a well-formed filter: '#' only as the whole last level, '+' only as a whole level."""
    if not topic_filter:
        return False
    levels = topic_filter.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            return False
        if "+" in level and level != "+":
            return False
    return True


class ListenerConfig(StrictModel):
    name: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$")
    host: str = "127.0.0.1"
    port: Port = 1883
    tls: bool = False
    certfile: Path | None = None
    keyfile: Path | None = None
    max_connections: int | None = Field(
        default=None,
        ge=1,
        le=100_000,
        description="connections at once; unset: 1000, less when the process's file limit requires",
    )

    @model_validator(mode="after")
    def _tls_needs_files(self) -> ListenerConfig:
        if self.tls and (self.certfile is None or self.keyfile is None):
            raise ValueError("a TLS listener needs certfile and keyfile")
        return self


class AclRule(StrictModel):
    """Topics one user may publish and subscribe to (MQTT wildcards, %u = the username).

    ``deny_publish`` and ``deny_subscribe`` are checked before the allows: a user
    granted ``#`` can be kept out of a few topics. A denied subscription filter is
    refused (SUBACK 0x80) when it lies inside a denied one; messages on denied topics
    are not delivered through a wider subscription either.
    """

    username: str = Field(min_length=1, max_length=128)
    publish: list[str] = Field(default_factory=list)
    subscribe: list[str] = Field(default_factory=list)
    deny_publish: list[str] = Field(default_factory=list)
    deny_subscribe: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _filters_are_valid(self) -> AclRule:
        for key in ("publish", "subscribe", "deny_publish", "deny_subscribe"):
            for index, topic_filter in enumerate(getattr(self, key)):
                if not valid_filter(topic_filter):
                    raise ValueError(
                        f"{key}[{index}]: {topic_filter!r} is not an MQTT topic filter "
                        "('#' only as the whole last level, '+' only as a whole level)"
                    )
        return self


class BrokerConfig(StrictModel):
    """The embedded MQTT broker (amqtt). Bound to 127.0.0.1 and closed to anonymous clients by default."""

    enabled: bool = True
    listeners: list[ListenerConfig] = Field(
        default_factory=lambda: [ListenerConfig(name="default")], min_length=1, max_length=8
    )
    allow_anonymous: bool = False
    password_file: Path | None = Field(
        default=None, description="lines of user:hash (twinedge passwd, mosquitto_passwd)"
    )
    acl: list[AclRule] | None = Field(
        default=None, description="per-user topic rules; unset: any user may publish twin/<id>/telemetry"
    )
    max_payload: ByteSize = Field(default=256 * 1024, ge=64, le=16 * 1024 * 1024)
    max_packet_size: ByteSize | None = Field(
        default=None,
        ge=1024,
        le=32 * 1024 * 1024,
        description="any larger MQTT packet closes the connection before it is read; "
        "unset: 512 KiB, or max_payload + 64 KiB when that is more",
    )
    connect_timeout: Duration = Field(
        default=10.0, ge=0.1, le=300, description="a connection that has not sent CONNECT by then is closed"
    )
    max_frames_per_message: int = Field(default=1000, ge=1, le=10_000)
    max_queued_messages: int = Field(
        default=1000,
        ge=1,
        le=1_000_000,
        description="QoS 1/2 messages kept per offline persistent session (oldest dropped)",
    )
    session_expiry: Duration | None = Field(
        default=None,
        ge=60,
        le=366 * 86400,
        description="forget an offline persistent session after this long; unset: never",
    )
    republish: bool = Field(default=True, description="republish stored frames on twinedge/<edge>/frames/<device>")

    @model_validator(mode="after")
    def _someone_can_connect(self) -> BrokerConfig:
        if self.enabled and not self.allow_anonymous and self.password_file is None:
            raise ValueError("set password_file, or allow_anonymous = true (not recommended)")
        names = [listener.name for listener in self.listeners]
        if len(set(names)) != len(names):
            raise ValueError("two listeners share a name; names must be unique")
        if self.max_packet_size is not None and self.max_packet_size < self.max_payload + PACKET_HEADROOM:
            raise ValueError(
                f"max_packet_size ({self.max_packet_size} bytes) must leave room for a max_payload message "
                f"and its topic: at least {self.max_payload + PACKET_HEADROOM} bytes"
            )
        return self

    @property
    def packet_limit(self) -> int:
        """The largest MQTT packet (remaining length) a client may send."""
        if self.max_packet_size is not None:
            return self.max_packet_size
        return max(512 * 1024, self.max_payload + 64 * 1024)


class MqttClientConfig(StrictModel):
    """Consume device telemetry from an external broker (e.g. Mosquitto) instead of the embedded one."""

    host: str = "127.0.0.1"
    port: Port = 1883
    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = None
    tls: bool = False
    cafile: Path | None = None
    client_id: str = Field(default="twinedge", min_length=1, max_length=64)
    topics: list[str] = Field(default_factory=lambda: ["twin/+/telemetry"], min_length=1, max_length=64)
    qos: Literal[0, 1] = Field(
        default=1, description="1: persistent session, each message acknowledged after it is stored; 0: no redelivery"
    )
    keepalive: Duration = Field(default=30.0, ge=5, le=3600)
    max_payload: ByteSize = Field(default=256 * 1024, ge=64, le=16 * 1024 * 1024)
    max_frames_per_message: int = Field(default=1000, ge=1, le=10_000)
    republish: bool = Field(default=False, description="publish stored frames back on twinedge/<edge>/frames/<device>")

    @model_validator(mode="after")
    def _one_password_source(self) -> MqttClientConfig:
        if self.password is not None and self.password_file is not None:
            raise ValueError("set password or password_file, not both")
        if (self.password is not None or self.password_file is not None) and self.username is None:
            raise ValueError("a password needs a username")
        if self.cafile is not None and not self.tls:
            raise ValueError("cafile is only used with tls = true")
        return self
