"""Certificate checks for the Nitro chain: root -> cabundle intermediates -> signing certificate.

:func:`verify_chain` is the chain step of :class:`~nitrokit.attestation.Verifier`. Each check raises
:class:`ChainError` (or :class:`CertificateValidityError`) with the position of the certificate it refers to.

Two caches keep a cold verification (a new Verifier per document) down to the five signature checks:

- parsing: a process-wide, bounded map from certificate DER bytes to the parsed certificate with its key and
  the facts the profile checks read (extensions parsed once, critical extensions refused once). Nothing in
  it depends on time or on the certificate's position, and a DER string always parses the same way, so it
  is shared by every Verifier; a certificate that fails to parse is not kept.
- links: a per-Verifier :class:`LinkCache` of issuer->subject signatures that verified, so a warm verifier
  spends its public-key work on the document itself. It lives with the Verifier, so a new Verifier verifies
  every link again.

Validity at the verification time is checked on every use, cached or not.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtensionOID, SignatureAlgorithmOID

from nitrokit.attestation.errors import CertificateValidityError, ChainError, TrustRootError
from nitrokit.text import clip, escaped

#: The only extensions a certificate may mark critical: the ones every certificate of the AWS chain marks
#: critical (basicConstraints everywhere, keyUsage on the CAs). RFC 5280 4.2: a critical extension the
#: verifier does not process must be refused; so is a known one that nothing here checks.
ALLOWED_CRITICAL_EXTENSIONS = frozenset({ExtensionOID.BASIC_CONSTRAINTS, ExtensionOID.KEY_USAGE})
#: Parsed certificates kept process-wide: a few chains' worth of CAs and many hosts' leaves.
PARSED_CACHE_SIZE = 512
_ECDSA_SHA384 = ec.ECDSA(hashes.SHA384())
# Untrusted names and OIDs quoted in messages are escaped and clipped to this many characters.
_MAX_NAME_CHARS = 120
_MAX_OID_CHARS = 64

_Key = TypeVar("_Key")
_Value = TypeVar("_Value")


class BoundedCache(Generic[_Key, _Value]):
    """A bounded, thread-safe LRU map; ``max_entries`` 0 keeps nothing."""

    def __init__(self, max_entries: int) -> None:
        self._max_entries = max_entries
        self._entries: OrderedDict[_Key, _Value] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: _Key) -> _Value | None:
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            return value

    def add(self, key: _Key, value: _Value) -> None:
        if self._max_entries <= 0:
            return
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


@dataclass(frozen=True, kw_only=True)
class ParsedCertificate:
    """A certificate that parsed, with a P-384 key, ecdsa-with-SHA384 and no unknown critical extension.

    The fields after ``public_key`` are what the link and profile checks read, taken from the certificate
    once: the names' and the to-be-signed part's DER and the signature; ``ca`` is None without
    basicConstraints, ``key_cert_sign``/``digital_signature`` None without keyUsage.
    """

    certificate: x509.Certificate
    public_key: ec.EllipticCurvePublicKey
    der: bytes
    subject_der: bytes
    issuer_der: bytes
    tbs: bytes
    signature: bytes
    self_issued: bool
    ca: bool | None
    basic_constraints_critical: bool
    path_length: int | None
    key_cert_sign: bool | None
    digital_signature: bool | None


# (certificate DER, issuer DER, number of CA certificates below it; -1 for the signing certificate)
LinkKey = tuple[bytes, bytes, int]


class LinkCache(BoundedCache[LinkKey, ParsedCertificate]):
    """Chain links already verified, to the checked certificate (one Verifier's).

    A link's signature and profile do not depend on time, so they are cached; validity at the verification
    time is checked by the caller on every use.
    """


_PARSED: BoundedCache[bytes, ParsedCertificate] = BoundedCache(PARSED_CACHE_SIZE)


def parse_certificate(der: bytes, *, position: str) -> ParsedCertificate:
    """``der`` parsed and checked for everything that does not depend on time or place in the chain."""
    parsed = _PARSED.get(der)
    if parsed is None:
        parsed = _parse(der, position=position)
        _PARSED.add(der, parsed)
    return parsed


@functools.lru_cache(maxsize=16)
def trusted_root(root: x509.Certificate) -> ParsedCertificate:
    """The trust root parsed and checked like any chain certificate (cached per root certificate)."""
    try:
        return parse_certificate(root.public_bytes(serialization.Encoding.DER), position="root")
    except ChainError as exc:
        raise TrustRootError(str(exc), field="root") from None


def verify_chain(certificate: bytes, cabundle: Sequence[bytes], *, root: ParsedCertificate, at: datetime,
                 links: LinkCache) -> tuple[ParsedCertificate, ...]:
    """The verified chain for a document's signing ``certificate`` and ``cabundle``: root first, signer last.

    Every certificate must be valid at ``at``.
    """
    intermediates = list(cabundle)
    # AWS puts the root first in cabundle. It is never trusted from there: it must be our root, or we
    # treat it as one more intermediate below our root.
    if intermediates[0] == root.der:
        intermediates = intermediates[1:]
    else:
        first = parse_certificate(intermediates[0], position="cabundle[0]")
        if first.self_issued and first.subject_der == root.subject_der:
            raise ChainError("a root with the trusted root's name but different bytes (foreign root)",
                             field="cabundle[0]")
        if first.self_issued:
            name = escaped(first.certificate.subject.rfc4514_string(), _MAX_NAME_CHARS)
            raise ChainError(f"self-signed certificate '{name}' is not the trusted root", field="cabundle[0]")

    offset = len(cabundle) - len(intermediates)
    positions = [f"cabundle[{offset + i}]" for i in range(len(intermediates))] + ["certificate"]
    ders = [*intermediates, certificate]
    last = len(ders) - 1

    check_validity(root.certificate, at, position="root")
    check_ca_profile(root, position="root", cas_below=last)
    chain = [root]
    for index, (der, position) in enumerate(zip(ders, positions, strict=True)):
        cas_below = last - index - 1  # -1 marks the signing certificate
        link = (der, chain[-1].der, cas_below)
        checked = links.get(link)
        if checked is None:
            checked = _check_link(der, chain[-1], position=position, cas_below=cas_below, at=at)
            links.add(link, checked)
        else:
            check_validity(checked.certificate, at, position=position)
        chain.append(checked)
    return tuple(chain)


def _check_link(der: bytes, issuer: ParsedCertificate, *, position: str, cas_below: int,
                at: datetime) -> ParsedCertificate:
    parsed = parse_certificate(der, position=position)
    check_validity(parsed.certificate, at, position=position)
    if cas_below < 0:
        check_leaf_profile(parsed, position=position)
    else:
        check_ca_profile(parsed, position=position, cas_below=cas_below)
    check_issued_by(parsed, issuer, position=position)
    return parsed


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


def check_ca_profile(cert: ParsedCertificate, *, position: str, cas_below: int) -> None:
    """A CA: critical basicConstraints cA=true, keyCertSign, and a path length that allows ``cas_below``."""
    if not cert.ca or not cert.basic_constraints_critical:
        raise ChainError("is not a CA (needs critical basicConstraints with cA=true)", field=position)
    if cert.path_length is not None and cert.path_length < cas_below:
        raise ChainError(f"path length {cert.path_length} but {cas_below} CA certificates follow it",
                         field=position)
    if not cert.key_cert_sign:
        raise ChainError("key usage lacks keyCertSign", field=position)


def check_leaf_profile(cert: ParsedCertificate, *, position: str) -> None:
    """The signing certificate: not a CA, and allowed to make digital signatures."""
    if cert.ca:
        raise ChainError("is a CA certificate, expected an end-entity signing certificate", field=position)
    if not cert.digital_signature:
        raise ChainError("key usage lacks digitalSignature", field=position)


def check_validity(cert: x509.Certificate, at: datetime, *, position: str) -> None:
    not_before, not_after = cert.not_valid_before_utc, cert.not_valid_after_utc
    if at < not_before:
        raise CertificateValidityError(f"not valid before {not_before.isoformat()} (checked at {at.isoformat()})",
                                       field=position)
    if at > not_after:
        raise CertificateValidityError(f"expired at {not_after.isoformat()} (checked at {at.isoformat()})",
                                       field=position)


def check_issued_by(cert: ParsedCertificate, issuer: ParsedCertificate, *, position: str) -> None:
    """``issuer``'s name and key issued ``cert`` (one P-384 verification).

    What ``Certificate.verify_directly_issued_by`` does, with the names' DER and the issuer's key parsed once
    (it parses both again on every call, about a tenth of a P-384 verification). Names compare as DER, which
    is stricter than RFC 5280's matching and what a chain issued by one CA has. Both certificates passed
    :func:`check_algorithms`, so the signature is ecdsa-with-SHA384 by a P-384 key.
    """
    if cert.issuer_der != issuer.subject_der:
        raise ChainError("issuer name does not match the next certificate up the chain", field=position)
    try:
        issuer.public_key.verify(cert.signature, cert.tbs, _ECDSA_SHA384)
    except InvalidSignature:
        raise ChainError("signature by the next certificate up the chain does not verify", field=position) from None


def check_critical_extensions(extensions: x509.Extensions, *, position: str) -> None:
    """Refuse a critical extension outside :data:`ALLOWED_CRITICAL_EXTENSIONS`, as RFC 5280 requires."""
    for extension in extensions:
        if extension.critical and extension.oid not in ALLOWED_CRITICAL_EXTENSIONS:
            kind = ("unrecognized" if isinstance(extension.value, x509.UnrecognizedExtension)
                    else type(extension.value).__name__)
            oid = clip(extension.oid.dotted_string, _MAX_OID_CHARS)  # digits and dots, but of any length
            raise ChainError(f"critical extension {oid} ({kind}) is not one the Nitro chain uses (only "
                             "basicConstraints and keyUsage may be critical)", field=position)


def _parse(der: bytes, *, position: str) -> ParsedCertificate:
    cert = load_der(der, position=position)
    key = check_algorithms(cert, position=position)
    try:
        extensions = cert.extensions
    except (ValueError, x509.DuplicateExtension):
        raise ChainError("has malformed or duplicate extensions", field=position) from None
    check_critical_extensions(extensions, position=position)
    constraints = _extension(extensions, x509.BasicConstraints)
    usage = _extension(extensions, x509.KeyUsage)
    subject_der, issuer_der = cert.subject.public_bytes(), cert.issuer.public_bytes()
    return ParsedCertificate(
        certificate=cert,
        public_key=key,
        der=der,
        subject_der=subject_der,
        issuer_der=issuer_der,
        tbs=cert.tbs_certificate_bytes,
        signature=cert.signature,
        self_issued=subject_der == issuer_der,
        ca=None if constraints is None else constraints.value.ca,
        basic_constraints_critical=constraints is not None and constraints.critical,
        path_length=None if constraints is None else constraints.value.path_length,
        key_cert_sign=None if usage is None else usage.value.key_cert_sign,
        digital_signature=None if usage is None else usage.value.digital_signature,
    )


_Ext = TypeVar("_Ext", bound=x509.ExtensionType)


def _extension(extensions: x509.Extensions, kind: type[_Ext]) -> x509.Extension[_Ext] | None:
    try:
        return extensions.get_extension_for_class(kind)
    except x509.ExtensionNotFound:
        return None


def _key_name(key: object) -> str:
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"EC {key.curve.name}"
    return type(key).__name__.removeprefix("_").replace("PublicKey", "")
