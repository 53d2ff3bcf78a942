"""OPC-UA source over Basic256Sha256 (Sign, SignAndEncrypt) with user name and password.

Server and client certificates are generated in the test; the server offers
only Basic256Sha256 endpoints and accepts one user. A wrong password must be
reported in plain words, never as a stack trace.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from edge.sources import SourceState
from edge.sources.opcua import OpcUaSourceConfig
from tests.edge.sources.test_opcua_support import (
    Certs,
    PasswordUsers,
    TestServer,
    client_certs,
    make_certs,
    running,
    wait_for_state,
    wait_for_value,
    wait_until,
)
from tests.support import free_port

pytestmark = pytest.mark.asyncio(loop_scope="module")

USER, PASSWORD = "edge", "s3cret-Pa55"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[Certs, Certs]:
    base = tmp_path_factory.mktemp("pki")
    server = make_certs(base / "server", "plc", "urn:twinedge:test:plc",
                        [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH])
    return server, client_certs(base / "client")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def secure_server(pki: tuple[Certs, Certs]) -> AsyncIterator[TestServer]:
    srv = await TestServer(free_port(), secure=pki[0], users=PasswordUsers(USER, PASSWORD)).start()
    yield srv
    await srv.stop()


def secure_config(srv: TestServer, pki: tuple[Certs, Certs], tmp_path: Path, *, password: str = PASSWORD,
                  **security: Any) -> OpcUaSourceConfig:
    password_file = tmp_path / "opcua.password"
    password_file.write_text(password + "\n", encoding="utf-8")
    return OpcUaSourceConfig.model_validate({
        "kind": "opcua", "name": "press-9", "url": srv.url, "publishing_interval": "50ms",
        "reconnect_max_delay": "1s", "request_timeout": "3s",
        "nodes": [{"name": "temp", "node_id": "ns=2;s=Press.Temp"}],
        "security": {"policy": "Basic256Sha256", "mode": "SignAndEncrypt",
                     "certificate": str(pki[1].certificate), "private_key": str(pki[1].private_key), **security},
        "username": USER, "password_file": str(password_file),
    })




@pytest.mark.parametrize("mode", ["SignAndEncrypt", "Sign"])
async def test_basic256sha256_with_user_and_password_delivers_frames(
    secure_server: TestServer, pki: tuple[Certs, Certs], tmp_path: Path, mode: str
) -> None:
    config = secure_config(secure_server, pki, tmp_path, mode=mode)
    async with running(config) as (source, sink):
        await sink.wait_for(1)
        assert sink.frames[0].sensors == {"temp": 21.5}
        assert source.health.state is SourceState.CONNECTED
        await secure_server.write("Press.Temp", 30.0)
        await wait_for_value(sink, "temp", 30.0)
        await secure_server.write("Press.Temp", 21.5)


async def test_pinned_server_certificate_is_accepted(
    secure_server: TestServer, pki: tuple[Certs, Certs], tmp_path: Path
) -> None:
    config = secure_config(secure_server, pki, tmp_path, server_certificate=str(pki[0].certificate))
    async with running(config) as (_source, sink):
        await sink.wait_for(1)


async def test_wrong_password_is_reported_in_plain_words(
    secure_server: TestServer, pki: tuple[Certs, Certs], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = secure_config(secure_server, pki, tmp_path, password="wrong")
    async with running(config) as (source, sink):
        await wait_for_state(source, SourceState.DISCONNECTED)
        reason = source.health.reason or ""
        assert reason.startswith(f"OPC-UA server {secure_server.url} refused user 'edge': wrong user name or password")
        assert "Traceback" not in reason and "wrong" not in reason.split("password")[-1]
        assert sink.frames == []
    ours = [r for r in caplog.records if r.name.startswith("edge.")]
    assert ours and all(r.exc_info is None for r in ours), "our log lines carry no stack trace"
    assert all("wrong" not in r.getMessage().split("password")[-1] for r in ours), "the password is never logged"


async def test_pinned_certificate_that_does_not_match_is_refused(
    secure_server: TestServer, pki: tuple[Certs, Certs], tmp_path: Path
) -> None:
    other = make_certs(tmp_path / "other", "other", "urn:other", [ExtendedKeyUsageOID.SERVER_AUTH])
    config = secure_config(secure_server, pki, tmp_path, server_certificate=str(other.certificate))
    async with running(config) as (source, _sink):
        await wait_for_state(source, SourceState.DISCONNECTED)
        assert (source.health.reason or "").startswith(
            f"OPC-UA server {secure_server.url} presents a different certificate than server_certificate "
            f"{other.certificate}"
        )


async def test_missing_certificate_file_is_reported(
    secure_server: TestServer, pki: tuple[Certs, Certs], tmp_path: Path
) -> None:
    config = secure_config(secure_server, pki, tmp_path, certificate=str(tmp_path / "absent.pem"))
    async with running(config) as (source, _sink):
        await wait_until(lambda: source.health.state is SourceState.DISCONNECTED)
        assert f"cannot read the certificate file {tmp_path / 'absent.pem'}" in (source.health.reason or "")


async def test_anonymous_login_on_a_user_only_server_is_explained(secure_server: TestServer,
                                                                 pki: tuple[Certs, Certs]) -> None:
    config = OpcUaSourceConfig.model_validate({
        "kind": "opcua", "name": "press-9", "url": secure_server.url, "reconnect_max_delay": "1s",
        "nodes": [{"name": "temp", "node_id": "ns=2;s=Press.Temp"}],
        "security": {"policy": "Basic256Sha256", "certificate": str(pki[1].certificate),
                     "private_key": str(pki[1].private_key)},
    })
    async with running(config) as (source, _sink):
        await wait_for_state(source, SourceState.DISCONNECTED)
        assert "anonymous" in (source.health.reason or "")


async def test_an_ec_key_met_at_connect_time_is_explained_and_retried_not_a_crash(
    secure_server: TestServer, pki: tuple[Certs, Certs], tmp_path: Path
) -> None:
    # check-config refuses an EC key; here the files are swapped after the config was loaded
    cert, key = tmp_path / "edge-cert.pem", tmp_path / "edge-key.pem"
    cert.write_bytes(pki[1].certificate.read_bytes())
    key.write_bytes(pki[1].private_key.read_bytes())
    config = secure_config(secure_server, pki, tmp_path, certificate=str(cert), private_key=str(key))
    ec_key = ec.generate_private_key(ec.SECP256R1())
    key.write_bytes(ec_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()))
    async with running(config) as (source, sink):
        await wait_until(lambda: source.health.errors >= 2)  # retried, still running
        assert source.health.state is SourceState.DISCONNECTED
        assert "the private key is an EC key" in (source.health.reason or "")
        assert "twinedge cert create" in (source.health.reason or "")
        assert sink.frames == []
