"""Opening an OPC-UA session from an OpcUaSourceConfig, and the few services the source uses.

Everything asyncua and cryptography raise while connecting is turned into an
OpcUaConnectError whose ``reason`` is one sentence for the person at the machine
("OPC-UA server opc.tcp://10.0.0.9:4840 refused user 'edge': wrong user name or
password"); the source retries, so no connect failure ever ends the source. The
error says whether the server could be reached at all (``unreachable``): the source
then waits with a cheap TCP probe instead of a full reconnect.
Reads are split to respect the server's operation limits (and our own cap).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from asyncua import Client, ua
from asyncua.crypto import security_policies, uacrypto

from edge.sources.opcua.certs import (
    CertificateInfo,
    check_application_files,
    default_application_uri,
    describe_certificate,
    load_certificate,
)
from edge.sources.opcua.config import OpcUaSourceConfig
from shared.errors import TwinedgeError

__all__ = [
    "CONNECT_ERRORS",
    "TRANSPORT_ERRORS",
    "OpcUaConnectError",
    "OperationLimits",
    "chunks",
    "connect",
    "describe_error",
    "is_unreachable",
    "is_good",
    "read_operation_limits",
    "read_values",
    "resolve_node_ids",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

# What a broken connection or a refusing server raises (TimeoutError is an OSError; ConnectionError too).
TRANSPORT_ERRORS = (ua.UaError, OSError)
# ... and, while a connection is set up, what asyncua 2.1.0 and cryptography raise besides:
# AssertionError: the server answered OpenSecureChannel with a fault instead of a response (asyncua asserts
#   the response type and loses the status); in practice the server refused our certificate.
# TypeError / ValueError: cryptography cannot sign or decrypt with the key (an EC key: "ECPrivateKey.sign()").
CONNECT_ERRORS = (*TRANSPORT_ERRORS, AssertionError, TypeError, ValueError)

# Statuses that mean: the server does not accept our certificate (or will not say why, for security).
_UNTRUSTED_CODES = {
    ua.StatusCodes.BadCertificateUntrusted,
    ua.StatusCodes.BadSecurityChecksFailed,
    ua.StatusCodes.BadCertificateInvalid,
    ua.StatusCodes.BadCertificateIssuerRevocationUnknown,
    ua.StatusCodes.BadCertificateRevocationUnknown,
    ua.StatusCodes.BadCertificateRevoked,
    ua.StatusCodes.BadCertificateChainIncomplete,
}


_UNREACHABLE_ERRNOS = {errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN}


class OpcUaConnectError(TwinedgeError):
    """Connecting failed. ``reason`` is plain words; ``permanent`` means retrying soon will not help;
    ``unreachable`` means no TCP connection could be made (nothing listens, no route, no answer)."""

    def __init__(self, reason: str, *, permanent: bool = False, unreachable: bool = False,
                 certificate: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent
        self.unreachable = unreachable
        self.certificate = certificate  # the server rejected our certificate


_CERTIFICATE_CODES = _UNTRUSTED_CODES | {
    ua.StatusCodes.BadCertificateUriInvalid, ua.StatusCodes.BadCertificateTimeInvalid,
    ua.StatusCodes.BadCertificateUseNotAllowed, ua.StatusCodes.BadCertificateHostNameInvalid,
}


def rejects_certificate(exc: BaseException, config: OpcUaSourceConfig) -> bool:
    """Whether ``exc``, met while connecting, says the server rejected our certificate (see describe_error)."""
    if isinstance(exc, ua.UaStatusCodeError):
        return exc.code in _CERTIFICATE_CODES
    return isinstance(exc, AssertionError) and config.security.policy != "None"


def _status_name(code: int) -> tuple[str, str]:
    name, doc = ua.status_codes.get_name_and_doc(code)
    return name, doc.rstrip(".")


def _certificate_sentence(where: str, config: OpcUaSourceConfig, ours: CertificateInfo | None, why: str) -> str:
    sec = config.security
    who = f"our certificate ({ours})" if ours is not None else "our certificate"
    return (f"{where} rejected {who}{why}; trust {sec.certificate} on the PLC (servers list it among their "
            "rejected certificates), then the gateway reconnects by itself")


def _describe_status(
    exc: ua.UaStatusCodeError, config: OpcUaSourceConfig, where: str, ours: CertificateInfo | None
) -> tuple[str, bool]:
    code = exc.code
    name, doc = _status_name(code)
    if code == ua.StatusCodes.BadUserAccessDenied:
        if config.username:
            return f"{where} refused user {config.username!r}: wrong user name or password ({name})", True
        return f"{where} refused an anonymous login: set 'username' and 'password_file' in the source ({name})", True
    if code in (ua.StatusCodes.BadIdentityTokenRejected, ua.StatusCodes.BadIdentityTokenInvalid):
        if config.username:
            return f"{where} does not accept user name and password logins on this endpoint ({name})", True
        return (f"{where} does not accept anonymous logins: set 'username' and 'password_file' in the source "
                f"for a user the server knows ({name})", True)
    if code in _UNTRUSTED_CODES:
        return _certificate_sentence(where, config, ours, f" ({name})"), True
    if code == ua.StatusCodes.BadCertificateUriInvalid:
        uri = ours.uri if ours is not None else None
        return (f"{where} refused our certificate ({ours}): its application URI {uri!r} does not match the one we "
                f"announce; remove 'application_uri' or make the certificate for it (twinedge cert create) ({name})",
                True)
    if code == ua.StatusCodes.BadCertificateTimeInvalid:
        until = f" (valid until {ours.not_after:%Y-%m-%d})" if ours is not None else ""
        return (f"{where} says our certificate {config.security.certificate}{until} is outside its validity period: "
                f"renew it (twinedge cert create), or check the PLC's clock ({name})", True)
    if code in (ua.StatusCodes.BadCertificateUseNotAllowed, ua.StatusCodes.BadCertificateHostNameInvalid):
        return (f"{where} refused our certificate ({ours}): {doc}; make one with `twinedge cert create` ({name})",
                True)
    if code == ua.StatusCodes.BadSecurityPolicyRejected:
        return f"{where} rejected security policy {config.security.policy} ({name})", True
    return f"{where} answered {name}: {doc}", False


def describe_error(
    exc: BaseException, config: OpcUaSourceConfig, ours: CertificateInfo | None = None
) -> tuple[str, bool]:
    """``(sentence, permanent)`` for an error met while talking to the server.

    ``ours`` describes our certificate, so that a refusal can name it as the server shows it.
    """
    where = f"OPC-UA server {config.url}"
    sec = config.security
    if isinstance(exc, OpcUaConnectError):
        return exc.reason, exc.permanent
    if isinstance(exc, ua.UaStatusCodeError):
        return _describe_status(exc, config, where, ours)
    if isinstance(exc, ua.UaError):
        text = str(exc)
        if text.startswith("No matching endpoints"):
            return f"{where} offers no endpoint with security policy {sec.policy} and mode {sec.mode}", True
        if "certificate mismatch" in text:
            return f"{where} presented a certificate that differs from {sec.server_certificate}", True
        return f"{where} failed: {text or type(exc).__name__}", False
    if isinstance(exc, AssertionError):
        if sec.policy != "None":
            return _certificate_sentence(where, config, ours, ""), True
        return f"{where} refused to open a channel (it answered with a fault)", False
    if isinstance(exc, TypeError | ValueError) and sec.policy != "None":
        return (f"cannot secure the connection with private key {sec.private_key} ({exc}); Basic256Sha256 needs an "
                "RSA key of 2048 bits or more: make one with `twinedge cert create`", True)
    if isinstance(exc, ConnectionRefusedError):
        return f"{where} refused the connection (is the server running, is the port right?)", False
    if isinstance(exc, socket.gaierror):
        return f"{where}: the host name cannot be resolved ({exc.strerror})", False
    if isinstance(exc, TimeoutError):
        return f"{where} did not answer within {config.request_timeout:g} s", False
    if isinstance(exc, ConnectionError):
        return f"{where} closed the connection ({exc or type(exc).__name__})", False
    if isinstance(exc, OSError):
        return f"{where} is unreachable ({exc.strerror or exc})", False
    return f"{where} failed: {exc}", False


def _load_cert_file(path: Path, what: str) -> tuple[bytes, str]:
    """Read a PEM or DER file; the format is told by its content, not its name."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise OpcUaConnectError(f"cannot read the {what} file {path}: {exc.strerror or exc}", permanent=True) from None
    return data, ("pem" if data.lstrip().startswith(b"-----BEGIN") else "der")


@dataclass
class _Files:
    """What the session needs from disk, read in a thread."""

    password: str | None = None
    certificate: tuple[bytes, str] | None = None
    private_key: tuple[bytes, str] | None = None
    server_certificate: tuple[bytes, str] | None = None
    ours: CertificateInfo | None = None  # our certificate, as servers show it


def _read_files(config: OpcUaSourceConfig) -> _Files:
    """Blocking file reads, run in a thread: password and certificate files."""
    out = _Files()
    if config.password_file is not None:
        try:
            out.password = config.password_file.read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            reason = f"cannot read password_file {config.password_file}: {exc}"
            raise OpcUaConnectError(reason, permanent=True) from None
    sec = config.security
    if sec.policy != "None" and sec.certificate is not None and sec.private_key is not None:
        out.certificate = _load_cert_file(sec.certificate, "certificate")
        out.private_key = _load_cert_file(sec.private_key, "private key")
        problems = check_application_files(out.certificate[0], out.private_key[0], sec.application_uri)
        if problems:  # check-config refuses these too; the files may have changed since the daemon started
            raise OpcUaConnectError(f"certificate {sec.certificate} / private_key {sec.private_key}: "
                                    + "; ".join(problems), permanent=True)
        out.ours = describe_certificate(load_certificate(out.certificate[0]))
        if sec.server_certificate is not None:
            out.server_certificate = _load_cert_file(sec.server_certificate, "server certificate")
    return out


async def _apply_security(client: Client, config: OpcUaSourceConfig, files: _Files) -> None:
    sec = config.security
    assert files.certificate is not None and files.private_key is not None  # the config requires both
    cert, cert_ext = files.certificate
    key, key_ext = files.private_key
    client.application_uri = sec.application_uri or (files.ours and files.ours.uri) or client.application_uri
    server_cert = None
    mode = getattr(ua.MessageSecurityMode, sec.mode)
    if files.server_certificate is not None:
        data, ext = files.server_certificate
        server_cert = uacrypto.CertProperties(data, ext)
        await _check_pinned_certificate(client, config, data, ext, mode)
    try:
        await client.set_security(
            security_policies.SecurityPolicyBasic256Sha256,
            certificate=uacrypto.CertProperties(cert, cert_ext),
            private_key=uacrypto.CertProperties(key, key_ext),
            server_certificate=server_cert,
            mode=mode,
        )
    except (ValueError, TypeError) as exc:  # cryptography: not a certificate / not a key / encrypted key
        raise OpcUaConnectError(
            f"cannot load certificate {sec.certificate} or private key {sec.private_key}: {exc}", permanent=True
        ) from None


async def _check_pinned_certificate(
    client: Client, config: OpcUaSourceConfig, data: bytes, ext: str, mode: ua.MessageSecurityMode
) -> None:
    """Compare the pinned certificate with the one the server's endpoint presents (an unsecured GetEndpoints).

    Without this, a server whose certificate changed cannot decrypt our requests and just goes silent.
    """
    sec = config.security
    try:
        pinned = uacrypto.der_from_x509(await uacrypto.load_certificate(data, ext))
    except ValueError as exc:
        raise OpcUaConnectError(f"cannot load server_certificate {sec.server_certificate}: {exc}", permanent=True) \
            from None
    endpoints = await client.connect_and_get_server_endpoints()
    endpoint = Client.find_endpoint(endpoints, mode, security_policies.SecurityPolicyBasic256Sha256.URI)
    presented = uacrypto.der_from_x509(uacrypto.x509_from_der(endpoint.ServerCertificate))
    if presented != pinned:
        raise OpcUaConnectError(
            f"OPC-UA server {config.url} presents a different certificate than server_certificate "
            f"{sec.server_certificate}; if the server's certificate was renewed, update that file",
            permanent=True,
        )


async def connect(config: OpcUaSourceConfig) -> Client:
    """A connected, activated asyncua Client; raises OpcUaConnectError with the reason in plain words."""
    client = Client(config.url, timeout=config.request_timeout, watchdog_intervall=config.watchdog_interval)
    client.session_timeout = int(config.session_timeout * 1000)
    client.name = client.description = f"twinedge {config.name}"
    client.application_uri = default_application_uri(config.name)
    files = _Files()
    try:
        files = await asyncio.to_thread(_read_files, config)
        if config.username:
            client.set_user(config.username)
            client.set_password(config.password.get_secret_value() if config.password else files.password or "")
        if config.security.policy != "None":
            await _apply_security(client, config, files)
        await client.connect()
    except OpcUaConnectError:
        raise
    except CONNECT_ERRORS as exc:
        reason, permanent = describe_error(exc, config, files.ours)
        log.debug("connecting to %s failed", config.url, exc_info=True)
        raise OpcUaConnectError(reason, permanent=permanent, unreachable=is_unreachable(exc),
                                certificate=rejects_certificate(exc, config)) from exc
    except asyncio.CancelledError:
        client.disconnect_socket()  # asyncua cleans up after an Exception only
        raise
    return client


def is_unreachable(exc: BaseException) -> bool:
    """True when no TCP connection could be made because nothing listens or there is no route.

    (A name that does not resolve is not: probing it often would mean a DNS query every time.)
    """
    if isinstance(exc, ConnectionRefusedError):
        return True
    return isinstance(exc, OSError) and not isinstance(exc, socket.gaierror) and exc.errno in _UNREACHABLE_ERRNOS


async def close(client: Client, limit: float) -> None:
    """Close session and channel within ``limit`` seconds; a dead connection is not an error here."""
    try:
        async with asyncio.timeout(limit):
            await client.disconnect()
    except (*TRANSPORT_ERRORS, TimeoutError):
        log.debug("closing the OPC-UA session failed", exc_info=True)


@dataclass(frozen=True)
class OperationLimits:
    """Per-call limits the server announced (None: it did not say)."""

    monitored_items_per_call: int | None
    nodes_per_read: int | None

    def items_per_call(self, cap: int) -> int:
        return min(cap, self.monitored_items_per_call or cap)

    def reads_per_call(self, cap: int) -> int:
        return min(cap, self.nodes_per_read or cap)


async def read_operation_limits(client: Client) -> OperationLimits:
    """Server_ServerCapabilities_OperationLimits: MaxMonitoredItemsPerCall and MaxNodesPerRead (0 = none)."""
    ids = (
        ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxMonitoredItemsPerCall,
        ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerRead,
    )
    params = ua.ReadParameters(
        NodesToRead=[ua.ReadValueId(NodeId=ua.NodeId(ua.Int32(i)), AttributeId=ua.AttributeIds.Value) for i in ids]
    )
    results = await client.uaclient.read(params)
    limits: list[int | None] = []
    for dv in results:
        value = dv.Value.Value if dv.Value is not None and is_good(dv) else None
        limits.append(value if isinstance(value, int) and value > 0 else None)
    return OperationLimits(monitored_items_per_call=limits[0], nodes_per_read=limits[1])


def is_good(dv: ua.DataValue) -> bool:
    return dv.StatusCode is None or dv.StatusCode.is_good()


def chunks(items: Sequence[T], size: int) -> list[Sequence[T]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


async def read_values(
    client: Client, node_ids: Sequence[ua.NodeId], per_call: int, attribute: int = ua.AttributeIds.Value
) -> list[ua.DataValue]:
    """Read one attribute of many nodes, ``per_call`` at a time, with both timestamps."""
    out: list[ua.DataValue] = []
    for part in chunks(node_ids, per_call):
        params = ua.ReadParameters(
            TimestampsToReturn=ua.TimestampsToReturn.Both,
            NodesToRead=[ua.ReadValueId(NodeId=nid, AttributeId=attribute) for nid in part],
        )
        out.extend(await client.uaclient.read(params))
    return out


async def resolve_node_ids(client: Client, texts: Sequence[str]) -> list[ua.NodeId | str]:
    """NodeIds for config strings; a string reason where a namespace URI ('nsu=') is unknown."""
    namespaces: list[str] | None = None
    out: list[ua.NodeId | str] = []
    for text in texts:
        try:
            parsed = ua.NodeId.from_string(text)
        except ua.UaStringParsingError as exc:  # the config check should have caught it
            out.append(f"node id {text!r} cannot be parsed ({exc})")
            continue
        uri = getattr(parsed, "NamespaceUri", None)
        if uri:
            if namespaces is None:
                namespaces = await client.get_namespace_array()
            if uri not in namespaces:
                out.append(f"namespace {uri!r} of node {text!r} is not on the server")
                continue
            parsed = ua.NodeId(parsed.Identifier, ua.Int16(namespaces.index(uri)), parsed.NodeIdType)
        out.append(parsed)
    return out
