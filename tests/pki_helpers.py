"""Build throwaway certificate chains with one property changed, for the verifier's tampering matrix."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from nitrokit.testing.documents import build_payload, sign_payload

T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
LONG_AGO = datetime(2020, 1, 1, tzinfo=UTC)
FAR_AHEAD = datetime(2055, 1, 1, tzinfo=UTC)

CA_USAGE = x509.KeyUsage(True, False, False, False, False, True, True, False, False)
LEAF_USAGE = x509.KeyUsage(True, True, False, False, False, False, False, False, False)
NO_SIGN_USAGE = x509.KeyUsage(False, True, False, False, False, False, False, False, False)


@dataclass(frozen=True)
class Spec:
    """How one certificate of a test chain is made."""

    name: str
    ca: bool | None = True  # None: no basicConstraints extension at all
    bc_critical: bool = True
    path_length: int | None = None
    key_usage: x509.KeyUsage | None = CA_USAGE
    key: str = "p384"  # p384, p256, rsa
    hash: Any = field(default_factory=hashes.SHA384)
    not_before: datetime = LONG_AGO
    not_after: datetime = FAR_AHEAD
    extensions: tuple[tuple[x509.ExtensionType, bool], ...] = ()  # more (extension, critical) pairs


def default_specs(leaf_from: datetime = T0) -> list[Spec]:
    return [
        Spec("test-root"),
        Spec("test-regional", path_length=2),
        Spec("test-zonal", path_length=1),
        Spec("test-instance", path_length=0),
        Spec("test-leaf", ca=False, key_usage=LEAF_USAGE, not_before=leaf_from,
             not_after=leaf_from + timedelta(hours=3)),
    ]


def with_change(specs: list[Spec], index: int, **changes: Any) -> list[Spec]:
    changed = list(specs)
    changed[index] = replace(specs[index], **changes)
    return changed


def _new_key(kind: str) -> Any:
    if kind == "p384":
        return ec.generate_private_key(ec.SECP384R1())
    if kind == "p256":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raise ValueError(kind)


def make_chain(specs: list[Spec]) -> list[tuple[x509.Certificate, Any]]:
    """Certificates and keys, root first; each is signed by the one before it (the root by itself)."""
    chain: list[tuple[x509.Certificate, Any]] = []
    for spec in specs:
        key = _new_key(spec.key)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, spec.name)])
        issuer_cert, issuer_key = chain[-1] if chain else (None, key)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer_cert.subject if issuer_cert is not None else subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(spec.not_before)
            .not_valid_after(spec.not_after)
        )
        if spec.ca is not None:
            builder = builder.add_extension(
                x509.BasicConstraints(ca=spec.ca, path_length=spec.path_length if spec.ca else None),
                critical=spec.bc_critical)
        if spec.key_usage is not None:
            builder = builder.add_extension(spec.key_usage, critical=True)
        for extension, critical in spec.extensions:
            builder = builder.add_extension(extension, critical=critical)
        chain.append((builder.sign(issuer_key, spec.hash), key))
    return chain


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def document_from_chain(chain: list[tuple[x509.Certificate, Any]], *, at: datetime = T0,
                        signing_key: Any = None, cabundle: list[bytes] | None = None, **fields: Any) -> bytes:
    """A document whose cabundle is chain[:-1] (root first) and whose signer is chain[-1]."""
    leaf, leaf_key = chain[-1]
    payload = build_payload(
        timestamp=at, certificate=der(leaf),
        cabundle=cabundle if cabundle is not None else [der(cert) for cert, _ in chain[:-1]], **fields)
    return sign_payload(payload, signing_key or leaf_key)
