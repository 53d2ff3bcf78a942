"""Our OPC-UA application certificate: what servers require of it, how to make one, how to name it.

Servers refuse a client certificate for reasons a person cannot see in the file name, and
asyncua only notices some of them deep inside the handshake (an EC key raises ``TypeError``
there). So the files are checked before they are used, by ``check-config`` and again when
the source connects, against what OPC-UA servers require of an application instance
certificate for Basic256Sha256 (OPC 10000-6 §6.2.2):

- an RSA key of 2048 bits or more (asyncua 2.1.0 has no ECC security policies), matching
  the certificate, not encrypted;
- the application URI as a URI in subjectAltName (the server compares it with the
  ApplicationUri of the session: BadCertificateUriInvalid otherwise);
- keyUsage digitalSignature, nonRepudiation, keyEncipherment and dataEncipherment;
  an extendedKeyUsage, when present, that includes clientAuth;
- a SHA-256 (or stronger) signature.

``create_application_certificate`` writes such a pair (``twinedge cert create``). The
thumbprint shown to people is the SHA-1 of the DER certificate in hex, as OPC-UA servers
show it (node-opcua names its files ``<CN>[<thumbprint>].pem``).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "CertificateInfo",
    "check_application_files",
    "create_application_certificate",
    "default_application_uri",
    "describe_certificate",
    "load_certificate",
]

MIN_RSA_BITS = 2048
_USAGES = {
    "digitalSignature": "digital_signature",
    "nonRepudiation": "content_commitment",
    "keyEncipherment": "key_encipherment",
    "dataEncipherment": "data_encipherment",
}
_WEAK_HASHES = {"md5", "sha1", "sha224"}
_HOW_TO_MAKE = "make a suitable one with `twinedge cert create`"


def default_application_uri(source: str, hostname: str | None = None) -> str:
    """The application URI a source uses when neither the config nor the certificate names one."""
    return f"urn:twinedge:{hostname or socket.gethostname()}:{source}"


@dataclass(frozen=True)
class CertificateInfo:
    """What a person needs to find a certificate on a server: subject, thumbprint, URI, validity."""

    subject: str
    thumbprint: str  # SHA-1 of the DER form, lowercase hex
    uri: str | None
    not_after: datetime.datetime

    def __str__(self) -> str:
        return f"subject {self.subject}, SHA-1 thumbprint {self.thumbprint}"


def load_certificate(data: bytes) -> x509.Certificate:
    """A certificate from PEM or DER bytes (told by content, not by file name); ValueError if neither."""
    if data.lstrip().startswith(b"-----BEGIN"):
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)


def _uris(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return list(san.value.get_values_for_type(x509.UniformResourceIdentifier))


def describe_certificate(cert: x509.Certificate) -> CertificateInfo:
    return CertificateInfo(
        subject=cert.subject.rfc4514_string() or "(empty)",
        thumbprint=cert.fingerprint(hashes.SHA1()).hex(),  # the OPC-UA thumbprint is SHA-1
        uri=next(iter(_uris(cert)), None),
        not_after=cert.not_valid_after_utc,
    )


def _load_key(data: bytes) -> object:
    if data.lstrip().startswith(b"-----BEGIN"):
        return serialization.load_pem_private_key(data, password=None)
    return serialization.load_der_private_key(data, password=None)


def _key_problems(key: object, cert: x509.Certificate) -> list[str]:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return [f"the private key is an EC key ({key.curve.name}); OPC-UA's Basic256Sha256 needs an RSA key of "
                f"{MIN_RSA_BITS} bits or more: {_HOW_TO_MAKE}"]
    if not isinstance(key, rsa.RSAPrivateKey):
        return [f"the private key is a {type(key).__name__.removeprefix('_')}; Basic256Sha256 needs an RSA key: "
                f"{_HOW_TO_MAKE}"]
    problems = []
    if key.key_size < MIN_RSA_BITS:
        problems.append(f"the RSA key has {key.key_size} bits; servers require {MIN_RSA_BITS} or more: {_HOW_TO_MAKE}")
    public = cert.public_key()
    if not isinstance(public, rsa.RSAPublicKey) or public.public_numbers() != key.public_key().public_numbers():
        problems.append("the private key does not belong to the certificate")
    return problems


def _certificate_problems(cert: x509.Certificate, application_uri: str | None) -> list[str]:
    problems = []
    uris = _uris(cert)
    if not uris:
        problems.append("the certificate has no application URI (a URI in subjectAltName), which OPC-UA servers "
                        f"require: {_HOW_TO_MAKE}")
    elif application_uri is not None and application_uri not in uris:
        problems.append(f"application_uri {application_uri!r} is not the URI in the certificate ({uris[0]!r}); "
                        "servers refuse the session: drop application_uri or make the certificate for it")
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        missing = [name for name, attr in _USAGES.items() if not getattr(usage, attr)]
    except x509.ExtensionNotFound:
        missing = list(_USAGES)
    if missing:
        problems.append(f"the certificate lacks keyUsage {', '.join(missing)}, which OPC-UA servers require: "
                        f"{_HOW_TO_MAKE}")
    try:
        extended = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        if ExtendedKeyUsageOID.CLIENT_AUTH not in extended:
            problems.append(f"the certificate's extendedKeyUsage lacks clientAuth: {_HOW_TO_MAKE}")
    except x509.ExtensionNotFound:
        pass
    algorithm = cert.signature_hash_algorithm
    if algorithm is not None and algorithm.name in _WEAK_HASHES:
        problems.append(f"the certificate is signed with {algorithm.name.upper()}; Basic256Sha256 needs SHA-256: "
                        f"{_HOW_TO_MAKE}")
    return problems


def check_application_files(cert_data: bytes, key_data: bytes, application_uri: str | None) -> list[str]:
    """Why these files cannot work as our OPC-UA application certificate (empty: they can)."""
    try:
        cert = load_certificate(cert_data)
    except ValueError:
        return ["the certificate file holds no X.509 certificate (PEM or DER)"]
    try:
        key = _load_key(key_data)
    except TypeError:
        return ["the private key is encrypted with a passphrase; store it unencrypted (readable by twinedge only)"]
    except (ValueError, UnsupportedAlgorithm):
        return ["the private key file holds no private key (PEM or DER)"]
    return _key_problems(key, cert) + _certificate_problems(cert, application_uri)


def create_application_certificate(
    cert_path: Path,
    key_path: Path,
    *,
    application_uri: str,
    common_name: str,
    hostnames: list[str],
    days: int = 1825,
    key_size: int = 2048,
) -> CertificateInfo:
    """Write a self-signed OPC-UA client certificate and its key (mode 0600) and describe it.

    The certificate is DER when ``cert_path`` ends in ``.der``, else PEM; the key is PEM (PKCS#8).
    """
    key = rsa.generate_private_key(public_exponent=65537, key_size=key_size)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "twinedge")])
    alt_names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(application_uri)]
    for host in hostnames:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            alt_names.append(x509.DNSName(host))
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))  # tolerate a PLC whose clock runs behind
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, content_commitment=True, key_encipherment=True,
                          data_encipherment=True, key_agreement=False, key_cert_sign=False, crl_sign=False,
                          encipher_only=False, decipher_only=False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]),
                       critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    encoding = serialization.Encoding.DER if cert_path.suffix.lower() == ".der" else serialization.Encoding.PEM
    key_bytes = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())
    key_path.parent.mkdir(parents=True, exist_ok=True)
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        os.fchmod(out.fileno(), 0o600)
        out.write(key_bytes)
    cert_path.write_bytes(cert.public_bytes(encoding))
    return describe_certificate(cert)
