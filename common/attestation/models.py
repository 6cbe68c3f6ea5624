"""The data nitrokit returns for attestation documents: unverified parses, verified documents and results.

Two document types share one set of read-only fields, and neither can be built by hand:

- :class:`UnverifiedDocument` comes from :func:`~nitrokit.attestation.parse_document`. Nothing in it is
  trustworthy; it is for inspection.
- :class:`VerifiedDocument` comes only from :meth:`~nitrokit.attestation.Verifier.verify`, inside a
  :class:`VerifiedAttestation`, after the signature, chain, time and policy checks passed.

Every field is decoded from the signed payload by the parser; there is no constructor, no setter and no
``dataclasses.replace``, so a document whose fields differ from its signed bytes cannot exist. ``verify``
given an :class:`UnverifiedDocument` parses :attr:`~AttestationDocument.encoded` again rather than trusting
the object.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn, TypeVar

from cryptography import x509

from nitrokit.errors import UsageError

DEBUG_PCR_INDEX = 0

# Only the parser (and the verifier, from a fresh parse) hold this: it makes documents unforgeable by hand.
_BUILD_TOKEN = object()

_FIELDS = ("module_id", "digest", "timestamp", "pcrs", "certificate", "cabundle", "public_key", "user_data",
           "nonce", "unknown_fields", "tagged", "protected", "payload", "signature", "encoded")
# Kept out of repr(): user data and nonces may be sensitive, and documents end up in logs.
_REPR_FIELDS = ("module_id", "digest", "timestamp", "pcrs", "tagged")


class AttestationDocument:
    """The fields of a Nitro attestation document, all decoded from its signed payload (read-only).

    ``protected``, ``payload`` and ``signature`` are the exact COSE_Sign1 byte strings, and ``encoded`` the
    exact bytes the document was parsed from. ``unknown_fields`` holds payload keys this version does not
    know: shown to users, never trusted or used by verification. Use the subclasses: an
    :class:`UnverifiedDocument` from ``parse_document``, a :class:`VerifiedDocument` from ``Verifier.verify``.
    """

    __slots__ = _FIELDS

    module_id: str
    digest: str
    timestamp: int
    pcrs: Mapping[int, bytes]
    certificate: bytes
    cabundle: tuple[bytes, ...]
    public_key: bytes | None
    user_data: bytes | None
    nonce: bytes | None
    unknown_fields: Mapping[str, Any]
    tagged: bool
    protected: bytes
    payload: bytes
    signature: bytes
    encoded: bytes

    def __init__(self, token: object = None, /, **fields: Any) -> None:
        if token is not _BUILD_TOKEN or type(self) is AttestationDocument:
            raise UsageError(f"{type(self).__name__} objects are made by nitrokit.attestation.parse_document "
                            "(unverified) or Verifier.verify (verified), not by hand")
        if set(fields) != set(_FIELDS):
            raise UsageError("internal: document fields do not match")
        for name, value in fields.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError(f"{type(self).__name__} is read-only: its fields come from the signed payload")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError(f"{type(self).__name__} is read-only: its fields come from the signed payload")

    def __reduce__(self) -> NoReturn:
        # copy/pickle would go around the constructor; the encoded bytes are what to store and send.
        raise TypeError(f"{type(self).__name__} is not copied or pickled: keep .encoded and parse it again")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AttestationDocument) or type(other) is not type(self):
            return NotImplemented
        return self.encoded == other.encoded

    def __hash__(self) -> int:
        return hash((type(self), self.encoded))

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in _REPR_FIELDS)
        return f"{type(self).__name__}({shown})"

    @property
    def issued_at(self) -> datetime:
        """The document's timestamp as an aware UTC datetime (millisecond precision)."""
        return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=self.timestamp)

    @property
    def is_debug(self) -> bool:
        """True for a debug-mode enclave, whose NSM reports PCR0 as all zero bytes."""
        pcr0 = self.pcrs.get(DEBUG_PCR_INDEX)
        return pcr0 is not None and not any(pcr0)


class UnverifiedDocument(AttestationDocument):
    """A strictly parsed but NOT verified document (:func:`~nitrokit.attestation.parse_document`).

    Its fields say what the bytes claim, not what is true: show them, never act on them. Pass the object (or
    its ``encoded`` bytes) to :meth:`~nitrokit.attestation.Verifier.verify` to get a :class:`VerifiedDocument`.
    """

    __slots__ = ()


class VerifiedDocument(AttestationDocument):
    """A document whose signature, certificate chain, time and policy checks all passed.

    Made only by :meth:`~nitrokit.attestation.Verifier.verify`, from the bytes it verified.
    """

    __slots__ = ()


_Document = TypeVar("_Document", bound=AttestationDocument)


def build(cls: type[_Document], fields: Mapping[str, Any]) -> _Document:
    """A ``cls`` document from parsed fields: for :mod:`~nitrokit.attestation._parse` only."""
    return cls(_BUILD_TOKEN, **fields)


def verified_copy(parsed: UnverifiedDocument) -> VerifiedDocument:
    """The verifier's result document: the same fields as ``parsed``, which it parsed itself and verified."""
    return build(VerifiedDocument, {name: getattr(parsed, name) for name in _FIELDS})


@dataclass(frozen=True, kw_only=True)
class VerifiedAttestation:
    """What :meth:`Verifier.verify` established about a document.

    ``document`` holds the verified fields. ``chain`` runs from the trusted root to the signing certificate.
    ``checks`` names every check that passed, in order, so a caller can log exactly what was verified.
    """

    document: VerifiedDocument
    chain: tuple[x509.Certificate, ...]
    verified_at: datetime
    checks: tuple[str, ...]
