"""The data nitrokit returns for attestation documents: the parsed document and a verification result."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any

from cryptography import x509

DEBUG_PCR_INDEX = 0


@dataclass(frozen=True, kw_only=True)
class AttestationDocument:
    """A parsed (not necessarily verified) Nitro attestation document.

    ``protected``, ``payload`` and ``signature`` are the exact COSE_Sign1 byte strings, kept so the signature
    can be checked over what was actually signed. ``unknown_fields`` holds payload keys this version does not
    know: shown to users, never trusted or used by verification.
    """

    module_id: str
    digest: str
    timestamp: int
    pcrs: Mapping[int, bytes]
    certificate: bytes
    cabundle: tuple[bytes, ...]
    # Kept out of repr(): user data and nonces may be sensitive, and documents end up in logs.
    public_key: bytes | None = field(repr=False)
    user_data: bytes | None = field(repr=False)
    nonce: bytes | None = field(repr=False)
    unknown_fields: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    tagged: bool = False
    protected: bytes = field(repr=False)
    payload: bytes = field(repr=False)
    signature: bytes = field(repr=False)

    @property
    def issued_at(self) -> datetime:
        """The document's timestamp as an aware UTC datetime (millisecond precision)."""
        return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=self.timestamp)

    @property
    def is_debug(self) -> bool:
        """True for a debug-mode enclave, whose NSM reports PCR0 as all zero bytes."""
        pcr0 = self.pcrs.get(DEBUG_PCR_INDEX)
        return pcr0 is not None and not any(pcr0)


@dataclass(frozen=True, kw_only=True)
class VerificationResult:
    """What :meth:`Verifier.verify` established about a document.

    ``chain`` runs from the trusted root to the signing certificate. ``checks`` names every check that
    passed, in order, so a caller can log exactly what was verified.
    """

    document: AttestationDocument
    chain: tuple[x509.Certificate, ...]
    verified_at: datetime
    checks: tuple[str, ...]
