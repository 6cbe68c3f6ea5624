"""The fixture TLS CA and the server certificates it issues, so the simulated KMS can serve HTTPS offline.

    from nitrokit.testing.tls import client_context, server_context, tls_ca_file

    context = server_context(["localhost", "127.0.0.1"])     # a fresh leaf from the fixture TLS CA, TLS 1.2+
    client = client_context()                                # trusts that CA (and nothing else)
    boto3.client("kms", endpoint_url="https://127.0.0.1:PORT", verify=str(tls_ca_file()), ...)

The CA ("nitrokit TEST TLS CA", P-256, valid until 2059) and its TEST key are written by
``fixtures/make_pki.py --tls-ca-only`` into ``common/testing/pki/``. The key is published on purpose: trust the
CA in tests only, never in a system trust store. Leaves are issued on demand, short-lived (a day by default),
for the host names and IP addresses given. Where the TEST key is not installed (an enclave image), issuing
raises :class:`~nitrokit.testing.pki.FixtureKeysMissingError`.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import ssl
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from nitrokit.errors import UsageError
from nitrokit.testing.pki import FixtureKeysMissingError
from nitrokit.text import escaped
from nitrokit.wire.address import TcpAddress, parse_address

__all__ = ["DEFAULT_LIFETIME", "TLS_CA_COMMON_NAME", "client_context", "issue_server_certificate",
           "load_server_context", "server_context", "tls_ca_file"]

TLS_CA_COMMON_NAME = "nitrokit TEST TLS CA"
SERVER_COMMON_NAME = "nitrokit TEST TLS server"
TLS_CA_CERT_NAME = "tls-ca.pem"
TLS_CA_KEY_NAME = "tls-ca.key.pem"
DEFAULT_LIFETIME = timedelta(days=1)
MAX_LIFETIME = timedelta(days=90)
MAX_HOSTS = 64
# Backdated a little, so a client whose clock is slightly behind still accepts a certificate issued just now.
_BACKDATE = timedelta(minutes=5)
_MAX_PEM_FILE_BYTES = 1024 * 1024
_PKI_DIR = Path(__file__).resolve().parent / "pki"


def tls_ca_file() -> Path:
    """The fixture TLS CA certificate (PEM): what a client trusts (boto3 ``verify=``, ``curl --cacert``)."""
    path = _PKI_DIR / TLS_CA_CERT_NAME
    if not path.is_file():
        raise UsageError(f"the fixture TLS CA certificate {path} is missing from this nitrokit install")
    return path


@functools.cache
def _tls_ca() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key_file = _PKI_DIR / TLS_CA_KEY_NAME
    if not key_file.is_file():
        raise FixtureKeysMissingError(
            "the fixture TLS CA's TEST key is not installed here (an enclave image leaves it out), so no server "
            "certificate can be issued; give a certificate and key of your own (kms-sim --tls-cert/--tls-key), "
            "or use a full nitrokit install")
    cert = x509.load_pem_x509_certificate(tls_ca_file().read_bytes())
    key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return cert, key


def _subject_alternative_names(hosts: Sequence[str]) -> list[x509.GeneralName]:
    """Each host as the SAN of its kind (an IP address as iPAddress, as RFC 6125 wants), duplicates dropped."""
    if isinstance(hosts, str) or not hosts or len(hosts) > MAX_HOSTS:
        raise UsageError(f"hosts must be a sequence of 1..{MAX_HOSTS} host names or IP addresses")
    names: list[x509.GeneralName] = []
    for host in hosts:
        if not isinstance(host, str):
            raise UsageError(f"hosts must be strings, got {type(host).__name__}")
        name: x509.GeneralName
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            name = x509.DNSName(_host_name(host))
        else:
            if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
                raise UsageError(f"host '{escaped(host, 64)}': a scoped IPv6 address cannot be a certificate name")
            name = x509.IPAddress(address)
        if name not in names:
            names.append(name)
    return names


def _host_name(host: str) -> str:
    try:  # the one host-name grammar nitrokit has: wire.address's
        address = parse_address(f"tcp://{host}:0") if host.isascii() and ":" not in host else None
    except UsageError:
        address = None
    if not isinstance(address, TcpAddress):
        raise UsageError(f"host '{escaped(host, 64)}' is not a host name or IP address")
    return address.host.removesuffix(".").lower()


def issue_server_certificate(hosts: Sequence[str], *, lifetime: timedelta = DEFAULT_LIFETIME) -> tuple[bytes, bytes]:
    """A fresh P-256 server certificate for ``hosts`` from the fixture TLS CA: ``(certificate PEM, key PEM)``.

    serverAuth only, not a CA, valid from a few minutes ago for ``lifetime`` (at most :data:`MAX_LIFETIME`).
    """
    if not timedelta(0) < lifetime <= MAX_LIFETIME:
        raise UsageError(f"lifetime must be more than 0 and at most {MAX_LIFETIME.days} days")
    names = _subject_alternative_names(hosts)
    ca_cert, ca_key = _tls_ca()
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([  # the names are in the SAN, which clients check (RFC 6125); CN only labels it
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "nitrokit TEST"),
            x509.NameAttribute(NameOID.COMMON_NAME, SERVER_COMMON_NAME),
        ]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + lifetime)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
            key_agreement=False, key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False),
            critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _new_server_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def server_context(hosts: Sequence[str], *, lifetime: timedelta = DEFAULT_LIFETIME) -> ssl.SSLContext:
    """A server-side context (TLS 1.2+) holding a fresh certificate for ``hosts`` from the fixture TLS CA."""
    cert_pem, key_pem = issue_server_certificate(hosts, lifetime=lifetime)
    context = _new_server_context()
    # The ssl module loads certificates from files only: a private directory, gone once they are loaded.
    with tempfile.TemporaryDirectory(prefix="nitrokit-tls-") as folder:
        cert_file, key_file = Path(folder) / "cert.pem", Path(folder) / "key.pem"
        cert_file.write_bytes(cert_pem)
        descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as out:
            out.write(key_pem)
        context.load_cert_chain(cert_file, key_file)
    return context


def load_server_context(cert_file: str | Path, key_file: str | Path) -> ssl.SSLContext:
    """A server-side context (TLS 1.2+) from a certificate (chain) PEM file and its private key PEM file.

    A missing, oversized or unreadable file, or a key that does not match the certificate, is a
    :class:`~nitrokit.errors.UsageError` naming the files (never their contents).
    """
    shown = f"{escaped(str(cert_file), 200)} with key {escaped(str(key_file), 200)}"
    for path in (Path(cert_file), Path(key_file)):
        try:
            size = path.stat().st_size
        except (OSError, ValueError) as exc:  # ValueError: a NUL in the name
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not a file name"
            raise UsageError(f"TLS certificate {shown}: cannot read {escaped(str(path), 200)}: {reason}") from None
        if size > _MAX_PEM_FILE_BYTES:
            raise UsageError(f"TLS certificate {shown}: {escaped(str(path), 200)} is over "
                             f"{_MAX_PEM_FILE_BYTES} bytes")
    context = _new_server_context()
    try:
        context.load_cert_chain(cert_file, key_file, password=_no_password)
    except ssl.SSLError as exc:  # OpenSSL's reason, e.g. KEY_VALUES_MISMATCH; PEM parse failures have none
        reason = f" ({escaped(exc.reason, 80)})" if exc.reason else ""
        raise UsageError(f"TLS certificate {shown} cannot be loaded{reason}: give a PEM certificate and its "
                         "unencrypted PEM private key") from None
    except OSError as exc:
        raise UsageError(f"TLS certificate {shown}: {exc.strerror or exc}") from None
    return context


def _no_password() -> bytes:
    # An encrypted key fails to load instead of prompting on the terminal.
    return b""


def client_context() -> ssl.SSLContext:
    """A client-side context (TLS 1.2+, host names checked) that trusts the fixture TLS CA only."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=tls_ca_file())
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context
