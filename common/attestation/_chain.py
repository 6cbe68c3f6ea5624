"""Certificate checks for the Nitro chain: root -> cabundle intermediates -> signing certificate.

Each check is a small function raising :class:`ChainError` (or :class:`CertificateValidityError`) with the
position of the certificate it refers to. :class:`LinkCache` remembers which issuer->subject signatures
already verified, so a warm verifier spends its public-key work on the document itself.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import SignatureAlgorithmOID

from nitrokit.attestation.errors import CertificateValidityError, ChainError

_Ext = TypeVar("_Ext", bound=x509.ExtensionType)


def load_der(der: bytes, *, position: str) -> x509.Certificate:
    try:
        cert = x509.load_der_x509_certificate(der)
        _ = (cert.subject, cert.issuer)  # parsed lazily by cryptography: a bad name must fail here, as a ChainError
    except (ValueError, TypeError, x509.InvalidVersion):  # TypeError: a name attribute of the wrong ASN.1 type
        raise ChainError("not a DER X.509 certificate", field=position) from None
    return cert


def check_algorithms(cert: x509.Certificate, *, position: str) -> ec.EllipticCurvePublicKey:
    """P-384 key and ecdsa-with-SHA384 signature, as on every certificate of the AWS chain; returns the key."""
    try:
        key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm):
        raise ChainError("public key cannot be parsed", field=position) from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP384R1):
        raise ChainError(f"public key is {_key_name(key)}, expected EC P-384", field=position)
    if cert.signature_algorithm_oid != SignatureAlgorithmOID.ECDSA_WITH_SHA384:
        raise ChainError(f"signed with {cert.signature_algorithm_oid.dotted_string}, expected "
                         "ecdsa-with-SHA384", field=position)
    return key


def check_ca_profile(cert: x509.Certificate, *, position: str, cas_below: int) -> None:
    """A CA: critical basicConstraints cA=true, keyCertSign, and a path length that allows ``cas_below``."""
    constraints = _extension(cert, x509.BasicConstraints, position=position)
    if constraints is None or not constraints.critical or not constraints.value.ca:
        raise ChainError("is not a CA (needs critical basicConstraints with cA=true)", field=position)
    path_length = constraints.value.path_length
    if path_length is not None and path_length < cas_below:
        raise ChainError(f"path length {path_length} but {cas_below} CA certificates follow it", field=position)
    usage = _extension(cert, x509.KeyUsage, position=position)
    if usage is None or not usage.value.key_cert_sign:
        raise ChainError("key usage lacks keyCertSign", field=position)


def check_leaf_profile(cert: x509.Certificate, *, position: str) -> None:
    """The signing certificate: not a CA, and allowed to make digital signatures."""
    constraints = _extension(cert, x509.BasicConstraints, position=position)
    if constraints is not None and constraints.value.ca:
        raise ChainError("is a CA certificate, expected an end-entity signing certificate", field=position)
    usage = _extension(cert, x509.KeyUsage, position=position)
    if usage is None or not usage.value.digital_signature:
        raise ChainError("key usage lacks digitalSignature", field=position)


def check_validity(cert: x509.Certificate, at: datetime, *, position: str) -> None:
    not_before, not_after = cert.not_valid_before_utc, cert.not_valid_after_utc
    if at < not_before:
        raise CertificateValidityError(f"not valid before {not_before.isoformat()} (checked at {at.isoformat()})",
                                       field=position)
    if at > not_after:
        raise CertificateValidityError(f"expired at {not_after.isoformat()} (checked at {at.isoformat()})",
                                       field=position)


def check_issued_by(cert: x509.Certificate, issuer: x509.Certificate, *, position: str) -> None:
    """``issuer``'s name and key issued ``cert`` (one P-384 verification)."""
    try:
        cert.verify_directly_issued_by(issuer)
    except ValueError:
        raise ChainError("issuer name does not match the next certificate up the chain", field=position) from None
    except (InvalidSignature, TypeError):
        raise ChainError("signature by the next certificate up the chain does not verify", field=position) from None


@dataclass(frozen=True)
class CheckedCertificate:
    """A certificate whose profile and issuer signature verified, with its parsed public key."""

    certificate: x509.Certificate
    public_key: ec.EllipticCurvePublicKey


# (certificate DER, issuer DER, number of CA certificates below it; -1 for the signing certificate)
LinkKey = tuple[bytes, bytes, int]


class LinkCache:
    """A bounded, thread-safe LRU map of chain links already verified, to the checked certificate.

    A link's signature and profile do not depend on time, so they are cached; validity at the verification
    time is checked by the caller on every use.
    """

    def __init__(self, max_entries: int) -> None:
        self._max_entries = max_entries
        self._links: OrderedDict[LinkKey, CheckedCertificate] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, link: LinkKey) -> CheckedCertificate | None:
        with self._lock:
            checked = self._links.get(link)
            if checked is not None:
                self._links.move_to_end(link)
            return checked

    def add(self, link: LinkKey, checked: CheckedCertificate) -> None:
        if self._max_entries <= 0:
            return
        with self._lock:
            self._links[link] = checked
            self._links.move_to_end(link)
            while len(self._links) > self._max_entries:
                self._links.popitem(last=False)

    def __len__(self) -> int:
        with self._lock:
            return len(self._links)


def _extension(cert: x509.Certificate, kind: type[_Ext], *, position: str) -> x509.Extension[_Ext] | None:
    try:
        return cert.extensions.get_extension_for_class(kind)
    except x509.ExtensionNotFound:
        return None
    except (ValueError, x509.DuplicateExtension):
        raise ChainError("has malformed or duplicate extensions", field=position) from None


def _key_name(key: object) -> str:
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"EC {key.curve.name}"
    return type(key).__name__.removeprefix("_").replace("PublicKey", "")
