"""The one COSE_Sign1 implementation: strict decoding and ECDSA (ES256/ES384/ES512) signature checks.

Both users of COSE go through here: attestation documents (always ES384, :mod:`nitrokit.attestation._parse`
and the verifier) and the PCR0 signature of a signed EIF (the algorithm follows the signing key's curve,
:mod:`nitrokit.eif._signature`). A fix to the framing rules lands once and holds for both.

The rules (RFC 9052 section 4.2, narrowed to what the NSM and nitro-cli write):

- one CBOR item spanning all the bytes, no duplicate map keys anywhere, nesting bounded by the caller;
- untagged, or tag 18 (COSE_Sign1) and no other tag;
- an array of exactly four: protected (byte string), unprotected (map, contents ignored), payload (byte
  string), signature (byte string);
- no CBOR tags but that one (cbor2's bignums, dates, value sharing... are refused: :mod:`nitrokit.cbor`);
- the protected header is exactly the canonical bytes of ``{1: alg}`` for one of the caller's algorithms
  (``a1 01 38 22`` for ES384), as the NSM and nitro-cli write it; anything else (other labels, kid, critical
  parameters, but also ``{true: -35}``, ``{1.0: -35}``, a bignum or a long-form integer that other COSE
  libraries would read differently) is refused;
- the signature is raw r||s of the algorithm's size.

Failures raise :class:`CoseError`, which callers re-raise as their own typed error (``field`` says which part
of the structure was wrong). Public-key work is done by ``cryptography`` (OpenSSL); this module only frames
bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from nitrokit.cbor import CborError, decode_exactly, kind, shown
from nitrokit.errors import NitrokitError

COSE_SIGN1_TAG = 18
_SIGN1_TAGS = frozenset({COSE_SIGN1_TAG})
_ALG_LABEL = 1
_CRIT_LABEL = 2


@dataclass(frozen=True)
class Algorithm:
    """A COSE ECDSA algorithm: its name and label, the curve it goes with, and its hash."""

    name: str
    label: int
    curve: str
    coordinate_bytes: int
    hash: hashes.HashAlgorithm = field(repr=False)
    # One ECDSA object per algorithm, made once: verification is on the attestation hot path.
    ecdsa: ec.ECDSA = field(init=False, repr=False, compare=False)
    #: The one protected header accepted for this algorithm: the canonical CBOR of ``{1: label}``.
    protected_header: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ecdsa", ec.ECDSA(self.hash))
        object.__setattr__(self, "protected_header", cbor2.dumps({_ALG_LABEL: self.label}))

    @property
    def signature_bytes(self) -> int:
        return 2 * self.coordinate_bytes


# The pairs aws-nitro-enclaves-cose accepts (CoseSign1::curve_to_parameters); P-521 coordinates are 66 bytes.
ES256 = Algorithm("ES256", -7, "secp256r1", 32, hashes.SHA256())
ES384 = Algorithm("ES384", -35, "secp384r1", 48, hashes.SHA384())
ES512 = Algorithm("ES512", -36, "secp521r1", 66, hashes.SHA512())
ALGORITHMS_BY_CURVE: Mapping[str, Algorithm] = {alg.curve: alg for alg in (ES256, ES384, ES512)}

P384_COORDINATE_BYTES = ES384.coordinate_bytes
PROTECTED_ES384 = ES384.protected_header


class CoseError(NitrokitError):
    """A COSE_Sign1 broke a rule; callers re-raise it as their own typed error (never shown as is)."""

    def __init__(self, message: str, *, field: str) -> None:
        self.message = message
        self.field = field
        super().__init__(f"{field}: {message}")


class Sign1(NamedTuple):
    """A decoded COSE_Sign1 whose framing passed every rule (its signature is not checked yet)."""

    # A NamedTuple, not a frozen dataclass: it is built once per attestation document, on the hot path.

    protected: bytes
    payload: bytes
    signature: bytes
    algorithm: Algorithm
    tagged: bool


def decode_item(data: bytes, *, field: str, max_depth: int, tags: frozenset[int] = frozenset()) -> Any:
    """One strict CBOR item spanning ``data`` (:func:`nitrokit.cbor.decode_exactly`), or :class:`CoseError`."""
    try:
        return decode_exactly(data, max_depth=max_depth, tags=tags)
    except CborError as exc:
        raise CoseError(str(exc), field=field) from None


_SIGN1_TAG_BYTES = cbor2.dumps(cbor2.CBORTag(COSE_SIGN1_TAG, None))[:1]  # d2: tag 18 in its one-byte form


def decode_sign1(data: bytes, *, algorithms: tuple[Algorithm, ...], max_depth: int) -> Sign1:
    """Decode a tagged or untagged COSE_Sign1 whose algorithm is one of ``algorithms``; check its framing."""
    top = decode_item(data, field="COSE_Sign1", max_depth=max_depth, tags=_SIGN1_TAGS)
    tagged = False
    if isinstance(top, cbor2.CBORTag):
        if top.tag != COSE_SIGN1_TAG:
            raise CoseError(f"CBOR tag {top.tag}, expected {COSE_SIGN1_TAG} (COSE_Sign1)", field="COSE_Sign1")
        top, tagged = top.value, True
    if not isinstance(top, list | tuple):
        raise CoseError(f"expected a 4-element array, got {kind(top)}", field="COSE_Sign1")
    if len(top) != 4:
        raise CoseError(f"expected a 4-element array, got {len(top)} elements", field="COSE_Sign1")
    protected, unprotected, payload, signature = top

    algorithm = check_protected_header(protected, algorithms=algorithms, max_depth=max_depth)
    if not isinstance(unprotected, Mapping):
        raise CoseError(f"expected a map, got {kind(unprotected)}", field="unprotected header")
    if not isinstance(payload, bytes):
        raise CoseError(f"expected a byte string, got {kind(payload)}", field="payload")
    if not isinstance(signature, bytes):
        raise CoseError(f"expected a byte string, got {kind(signature)}", field="signature")
    if len(signature) != algorithm.signature_bytes:
        raise CoseError(f"{len(signature)} bytes, expected {algorithm.signature_bytes} (raw r||s for "
                        f"{algorithm.name})", field="signature")
    # One way to write a document: the shortest, definite-length encoding (as the NSM and nitro-cli write it).
    # Else the same signed content comes in many byte strings, and a replay cache keyed on them is sidestepped.
    if data != (_SIGN1_TAG_BYTES if tagged else b"") + cbor2.dumps([protected, unprotected, payload, signature]):
        raise CoseError("not in the shortest, definite-length CBOR encoding (a long-form tag, length or "
                        "indefinite-length item)", field="COSE_Sign1")
    return Sign1(protected=protected, payload=payload, signature=signature, algorithm=algorithm, tagged=tagged)


def check_protected_header(protected: object, *, algorithms: tuple[Algorithm, ...], max_depth: int) -> Algorithm:
    """The algorithm whose canonical ``{1: alg}`` header ``protected`` is, byte for byte; else :class:`CoseError`.

    Exact bytes, not a decoded comparison: a map that only decodes to the same value (``{true: -35}``,
    ``{1.0: -35}``, non-minimal integers, a bignum) is read differently by other COSE implementations.
    """
    if not isinstance(protected, bytes):
        raise CoseError(f"expected a byte string, got {kind(protected)}", field="protected header")
    for candidate in algorithms:
        if protected == candidate.protected_header:
            return candidate
    # Refused; decode only to say why, in bounded words.
    wanted = " or ".join(f"{candidate.name} ({candidate.protected_header.hex()})" for candidate in algorithms)
    try:
        header = decode_item(protected, field="protected header", max_depth=max_depth)
    except CoseError as exc:
        raise CoseError(f"{exc.message}, expected exactly {wanted}", field="protected header") from None
    if not isinstance(header, Mapping):
        raise CoseError(f"expected a map, got {kind(header)}", field="protected header")
    # type() checks: true and 1.0 compare equal to 1 in Python, but are not label 1.
    extra = [label for label in header if not (type(label) is int and label == _ALG_LABEL)]
    if len(extra) == len(header):
        raise CoseError(f"no algorithm (label 1) among {len(header)} labels, expected exactly {wanted}",
                        field="protected header")
    if extra:
        note = " (critical parameters, label 2, that nitrokit does not know)" if _CRIT_LABEL in extra else ""
        shown_labels = ", ".join(shown(label) for label in extra[:4]) + (", ..." if len(extra) > 4 else "")
        raise CoseError(f"unexpected labels {shown_labels}{note}, expected exactly {wanted}", field="protected header")
    alg = header[_ALG_LABEL]
    known = type(alg) is int and any(alg == candidate.label for candidate in algorithms)
    what = "not in canonical form" if known else f"algorithm {shown(alg)}"
    raise CoseError(f"{what}, expected exactly {wanted}", field="protected header")


def sig_structure(protected: bytes, payload: bytes) -> bytes:
    """The bytes that a COSE_Sign1 signature covers (RFC 9052 section 4.4), with empty external AAD."""
    return cbor2.dumps(["Signature1", protected, b"", payload])


def verify_signature(public_key: ec.EllipticCurvePublicKey, *, algorithm: Algorithm, protected: bytes,
                     payload: bytes, signature: bytes) -> bool:
    """True if ``signature`` (raw r||s) is a valid ``algorithm`` signature over the Sig_structure."""
    if len(signature) != algorithm.signature_bytes or public_key.curve.name != algorithm.curve:
        return False
    size = algorithm.coordinate_bytes
    der = encode_dss_signature(int.from_bytes(signature[:size], "big"), int.from_bytes(signature[size:], "big"))
    try:
        public_key.verify(der, sig_structure(protected, payload), algorithm.ecdsa)
    except InvalidSignature:
        return False
    return True


def sign_es384(private_key: ec.EllipticCurvePrivateKey, *, protected: bytes, payload: bytes) -> bytes:
    """Sign the Sig_structure and return the raw r||s signature (96 bytes)."""
    der = private_key.sign(sig_structure(protected, payload), ES384.ecdsa)
    r, s = decode_dss_signature(der)
    return r.to_bytes(P384_COORDINATE_BYTES, "big") + s.to_bytes(P384_COORDINATE_BYTES, "big")


def encode_sign1(*, protected: bytes, payload: bytes, signature: bytes, tagged: bool = False,
                 unprotected: dict[object, object] | None = None) -> bytes:
    """Encode a COSE_Sign1 array; untagged by default, as the NSM emits it."""
    message = [protected, unprotected if unprotected is not None else {}, payload, signature]
    return cbor2.dumps(cbor2.CBORTag(COSE_SIGN1_TAG, message) if tagged else message)
