"""Our OPC-UA certificate: `twinedge cert create` makes one servers accept; check-config refuses what they reject.

Every case runs the real CLI (``python -m edge.cli``) on files made in the test.
The interop tests show a node-opcua server accepting a created certificate once
trusted; here the file's content and check-config's verdicts are checked.
"""

from __future__ import annotations

import datetime
import socket
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

USAGES = {"digital_signature": True, "content_commitment": True, "key_encipherment": True,
          "data_encipherment": True, "key_agreement": False, "key_cert_sign": False, "crl_sign": False,
          "encipher_only": False, "decipher_only": False}


def twinedge(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge.cli", *args], capture_output=True, text=True, check=False)


def config_with(tmp_path: Path, cert: Path, key: Path, extra: str = "") -> Path:
    path = tmp_path / "edge.toml"
    path.write_text(
        f'[edge]\nid = "e1"\nstate_dir = "{tmp_path / "state"}"\n'
        f'[[sources]]\nkind = "opcua"\nname = "plc"\nurl = "opc.tcp://127.0.0.1:4840"\n'
        f'nodes = [{{ name = "t", node_id = "ns=2;s=T" }}]\n'
        f'[sources.security]\npolicy = "Basic256Sha256"\ncertificate = "{cert}"\nprivate_key = "{key}"\n{extra}'
    )
    return path


def test_cert_create_makes_a_certificate_that_check_config_accepts(tmp_path: Path) -> None:
    cert, key = tmp_path / "pki" / "edge-cert.der", tmp_path / "pki" / "edge-key.pem"
    proc = twinedge("cert", "create", "--source", "plc", "--cert", str(cert), "--key", str(key))
    assert proc.returncode == 0, proc.stderr
    uri = f"urn:twinedge:{socket.gethostname()}:plc"  # what the source announces by default
    made = x509.load_der_x509_certificate(cert.read_bytes())
    thumbprint = made.fingerprint(hashes.SHA1()).hex()
    assert uri in proc.stdout and thumbprint in proc.stdout
    public = made.public_key()
    assert isinstance(public, rsa.RSAPublicKey) and public.key_size >= 2048
    san = made.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [uri]
    assert socket.gethostname() in san.get_values_for_type(x509.DNSName)
    usage = made.extensions.get_extension_for_class(x509.KeyUsage).value
    assert all(getattr(usage, name) for name in ("digital_signature", "content_commitment", "key_encipherment",
                                                 "data_encipherment"))
    assert ExtendedKeyUsageOID.CLIENT_AUTH in made.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert made.signature_hash_algorithm is not None and made.signature_hash_algorithm.name == "sha256"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600, "the private key is readable by its owner only"
    checked = twinedge("check-config", str(config_with(tmp_path, cert, key)))
    assert checked.returncode == 0, checked.stderr

    again = twinedge("cert", "create", "--source", "plc", "--cert", str(cert), "--key", str(key))
    assert again.returncode == 1 and "--force" in again.stderr, "an existing certificate is not overwritten"
    assert x509.load_der_x509_certificate(cert.read_bytes()) == made


def _make(tmp_path: Path, *, key: object, uri: str | None = "urn:twinedge:test:plc",
          usage: bool = True) -> tuple[Path, Path]:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "edge")])
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
               .public_key(key.public_key())  # type: ignore[attr-defined]
               .serial_number(x509.random_serial_number())
               .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=30)))
    alt: list[x509.GeneralName] = [x509.DNSName("edge")]
    if uri is not None:
        alt.append(x509.UniformResourceIdentifier(uri))
    builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
    if usage:
        builder = builder.add_extension(x509.KeyUsage(**USAGES), critical=True)
    cert = builder.sign(key, hashes.SHA256())  # type: ignore[arg-type]
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cert_path, key_path


def _rsa(bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


REFUSED: dict[str, tuple[Callable[[Path], tuple[Path, Path]], str, str]] = {
    "EC key": (lambda d: _make(d, key=ec.generate_private_key(ec.SECP256R1())), "",
               "the private key is an EC key (secp256r1); OPC-UA's Basic256Sha256 needs an RSA key"),
    "no application URI": (lambda d: _make(d, key=_rsa(), uri=None), "",
                           "the certificate has no application URI (a URI in subjectAltName)"),
    "no keyUsage": (lambda d: _make(d, key=_rsa(), usage=False), "",
                    "the certificate lacks keyUsage digitalSignature, nonRepudiation, keyEncipherment, "
                    "dataEncipherment"),
    "small key": (lambda d: _make(d, key=_rsa(1024)), "", "the RSA key has 1024 bits; servers require 2048"),
    "other URI": (lambda d: _make(d, key=_rsa()), 'application_uri = "urn:elsewhere"',
                  "application_uri 'urn:elsewhere' is not the URI in the certificate ('urn:twinedge:test:plc')"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_check_config_refuses_a_certificate_opcua_servers_reject(tmp_path: Path, case: str) -> None:
    make, extra, expected = REFUSED[case]
    cert, key = make(tmp_path)
    proc = twinedge("check-config", str(config_with(tmp_path, cert, key, extra)))
    assert proc.returncode == 78, proc.stdout
    assert expected in proc.stderr, proc.stderr
    assert f"certificate {cert} / private_key {key}" in proc.stderr
    assert "twinedge cert create" in proc.stderr or "make the certificate for it" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(("args", "code", "words"), [
    (["--cert", "/proc/no-such-dir/c.pem", "--key", "KEY"], 1, "cannot write /proc/no-such-dir"),
    (["--cert", "CERT", "--key", "KEY", "--days", "99999999"], 2, "must be 1 to 36500 days"),
    (["--cert", "CERT", "--key", "KEY", "--days", "soon"], 2, "must be 1 to 36500 days (got 'soon')"),
])
def test_cert_create_refuses_what_it_cannot_do_in_one_line(tmp_path: Path, args: list[str], code: int,
                                                           words: str) -> None:
    args = [{"CERT": str(tmp_path / "c.pem"), "KEY": str(tmp_path / "k.pem")}.get(a, a) for a in args]
    proc = twinedge("cert", "create", "--source", "plc", *args)
    assert proc.returncode == code
    assert words in proc.stderr and "Traceback" not in proc.stderr
