"""Config of an OPC-UA source: server, nodes, security and timing, checked at load time.

Node ids use the OPC-UA string form (``ns=2;s=Press.Temp``, ``ns=3;i=1001``,
``nsu=urn:acme:plc;s=Line1.Speed``, ``g=<guid>``, ``b=<base64>``). The syntax is
checked when the file is loaded, so a typo is a config error naming the key;
whether the node exists is only known once connected, and a node the server
refuses is set aside and reported in the source's health while the others flow.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from shared.configbase import Duration, StrictModel
from shared.frame import DEVICE_ID_PATTERN, KEY_PATTERN, MAX_SENSORS

__all__ = [
    "OpcUaNodeConfig",
    "OpcUaSecurityConfig",
    "OpcUaSourceConfig",
    "check_node_id",
]

_NODE_ID_RE = re.compile(
    r"^(?:(?P<ns>ns=\d{1,5});|(?P<nsu>nsu=[^;]+);)?"
    r"(?:i=(?P<i>\d{1,10})|s=(?P<s>.+)|g=(?P<g>[0-9A-Fa-f]{8}(?:-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12})"
    r"|b=(?P<b>[A-Za-z0-9+/]+={0,2}))$",
    re.DOTALL,
)
NODE_ID_EXAMPLES = "'ns=2;s=Press.Temp', 'ns=3;i=1001' or 'nsu=urn:acme:plc;s=Line1.Speed'"


def check_node_id(text: str) -> str:
    """Return ``text`` if it is a well-formed OPC-UA node id string, else raise ValueError in plain words."""
    match = _NODE_ID_RE.match(text)
    if not match:
        raise ValueError(f"not an OPC-UA node id; write it like {NODE_ID_EXAMPLES}")
    if match.group("ns") and int(match.group("ns")[3:]) > 65535:
        raise ValueError("namespace index must be 0..65535")
    if match.group("i") is not None and int(match.group("i")) > 2**32 - 1:
        raise ValueError("numeric identifier must be 0..4294967295")
    if match.group("s") is not None and len(match.group("s")) > 4096:
        raise ValueError("string identifier longer than 4096 characters")
    return text


class OpcUaNodeConfig(StrictModel):
    """One variable to read: its sensor name in frames and its node id on the server."""

    name: str = Field(pattern=KEY_PATTERN, description="sensor key in the frame, e.g. 'temp'")
    node_id: str = Field(description="e.g. 'ns=2;s=Press.Temp'")
    device_id: str | None = Field(
        None, pattern=DEVICE_ID_PATTERN, description="frames for this node go to this device (default: the source's)"
    )
    deadband: float | None = Field(
        None, ge=0.0, le=1e12, description="subscribe mode: report a change only when it exceeds this"
    )
    deadband_type: Literal["absolute", "percent"] = "absolute"

    @field_validator("node_id")
    @classmethod
    def _node_id_syntax(cls, value: str) -> str:
        return check_node_id(value)

    @model_validator(mode="after")
    def _percent_range(self) -> OpcUaNodeConfig:
        if self.deadband_type == "percent" and self.deadband is not None and self.deadband > 100.0:
            raise ValueError(f"a percent deadband must be 0..100 (got {self.deadband})")
        return self


class OpcUaSecurityConfig(StrictModel):
    """Secure channel: 'None', or Basic256Sha256 with our application certificate and key."""

    policy: Literal["None", "Basic256Sha256"] = "None"
    mode: Literal["Sign", "SignAndEncrypt"] = "SignAndEncrypt"
    certificate: Path | None = Field(None, description="our application certificate (PEM or DER)")
    private_key: Path | None = Field(None, description="its private key (PEM or DER, not encrypted)")
    server_certificate: Path | None = Field(
        None, description="pin the server's certificate; without it the one the server presents is used"
    )
    application_uri: str | None = Field(
        None, max_length=512, description="default: the URI in our certificate's subjectAltName"
    )

    @model_validator(mode="after")
    def _files_for_policy(self) -> OpcUaSecurityConfig:
        if self.policy == "Basic256Sha256" and (self.certificate is None or self.private_key is None):
            raise ValueError("policy 'Basic256Sha256' needs 'certificate' and 'private_key' files")
        if self.policy == "None" and (self.certificate or self.private_key or self.server_certificate):
            raise ValueError("certificate files are only used with policy 'Basic256Sha256'")
        return self

    @model_validator(mode="after")
    def _usable_certificate(self) -> OpcUaSecurityConfig:
        """Refuse a certificate or key that OPC-UA servers (or asyncua) cannot use, when the files are readable.

        An unreadable file is left to the source, which reports it and retries (it may be provisioned later).
        """
        if self.policy == "None" or self.certificate is None or self.private_key is None:
            return self
        try:
            cert, key = self.certificate.read_bytes(), self.private_key.read_bytes()
        except OSError:
            return self
        from edge.sources.opcua.certs import check_application_files  # cryptography: only when needed

        problems = check_application_files(cert, key, self.application_uri)
        if problems:
            raise ValueError(f"certificate {self.certificate} / private_key {self.private_key}: " + "; ".join(problems))
        return self


class OpcUaSourceConfig(StrictModel):
    """An OPC-UA server and the variables to read from it (subscriptions, or polling as a fallback)."""

    kind: Literal["opcua"]
    name: str = Field(pattern=DEVICE_ID_PATTERN, description="source name; the default device id of its frames")
    url: str = Field(max_length=512, description="e.g. 'opc.tcp://10.0.0.9:4840'")
    mode: Literal["subscribe", "poll"] = "subscribe"
    publishing_interval: Duration = Field(1.0, ge=0.01, le=3600.0, description="subscribe: one frame per cycle")
    sampling_interval: Duration = Field(
        0.0, ge=0.0, le=3600.0,
        description="subscribe: how often the server samples; 0 = every change, as fast as the server can",
    )
    queue_size: int = Field(
        20, ge=1, le=100_000,
        description="subscribe: changes the server keeps per node between two publishes (the oldest is "
        "discarded beyond that)",
    )
    poll_interval: Duration = Field(1.0, ge=0.01, le=86400.0, description="poll mode: one read of every node")
    device_id: str | None = Field(None, pattern=DEVICE_ID_PATTERN, description="default: the source name")
    nodes: list[OpcUaNodeConfig] = Field(min_length=1, max_length=100_000)
    security: OpcUaSecurityConfig = Field(default_factory=OpcUaSecurityConfig)
    username: str | None = Field(None, min_length=1, max_length=256)
    password: SecretStr | None = Field(None, description="prefer password_file")
    password_file: Path | None = Field(None, description="file holding the password (one line)")
    request_timeout: Duration = Field(5.0, ge=0.1, le=300.0)
    session_timeout: Duration = Field(60.0, ge=1.0, le=86400.0, description="server keeps our session this long")
    watchdog_interval: Duration = Field(5.0, ge=0.2, le=600.0, description="how often the session is probed")
    reconnect_max_delay: Duration = Field(30.0, ge=0.5, le=3600.0)
    retry_bad_nodes: Duration = Field(60.0, ge=1.0, le=86400.0, description="retry nodes the server refused")
    max_items_per_call: int = Field(
        1000, ge=1, le=100_000, description="cap on nodes per Read and monitored items per call"
    )

    @field_validator("url")
    @classmethod
    def _url_shape(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme != "opc.tcp" or not parts.hostname:
            raise ValueError("expected 'opc.tcp://host:port', e.g. 'opc.tcp://10.0.0.9:4840'")
        if parts.username or parts.password:
            raise ValueError("put the user name and password in 'username' and 'password_file', not in the url")
        try:
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError:
            raise ValueError("the port must be a number 1..65535") from None
        return value

    @model_validator(mode="after")
    def _consistent(self) -> OpcUaSourceConfig:
        if self.password is not None and self.password_file is not None:
            raise ValueError("give either 'password' or 'password_file', not both")
        has_password = self.password is not None or self.password_file is not None
        if self.username is None and has_password:
            raise ValueError("a password was given without 'username'")
        if self.username is not None and not has_password:
            raise ValueError(f"user {self.username!r} needs 'password_file' (or 'password')")
        per_device: dict[str, set[str]] = {}
        for node in self.nodes:
            names = per_device.setdefault(node.device_id or self.frame_device, set())
            if node.name in names:
                raise ValueError(f"two nodes are named {node.name!r} for one device; sensor names must be unique")
            names.add(node.name)
        for device, names in per_device.items():
            if len(names) > MAX_SENSORS:
                raise ValueError(
                    f"device {device!r} has {len(names)} nodes; a frame holds at most {MAX_SENSORS} "
                    "(spread nodes over devices with their 'device_id')"
                )
        return self

    @property
    def frame_device(self) -> str:
        return self.device_id or self.name
