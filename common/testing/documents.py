"""Build attestation documents signed through the fixture PKI, with the exact shape of real NSM output.

Real documents are an untagged COSE_Sign1 with protected header {1: -35}, an empty unprotected map, and a
payload map holding 16 or more PCRs of 48 bytes and a cabundle of root + 3 intermediates. ``build_document``
reproduces that, and lets tests change any part of it (``extra``/``drop`` payload keys, the raw header).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import cbor2
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from nitrokit.attestation._cose import PROTECTED_ES384, encode_sign1, sign_es384
from nitrokit.testing.pki import DEFAULT_MODULE_ID, FixturePki, fixture_pki

__all__ = ["DEFAULT_MODULE_ID", "build_document", "build_payload", "default_pcrs", "sign_payload"]


def default_pcrs(count: int = 16) -> dict[int, bytes]:
    """Distinct, recognisable 48-byte PCR values (not all zero, so not debug mode)."""
    return {index: bytes([index + 1]) * 48 for index in range(count)}


def build_payload(
    *,
    timestamp: datetime,
    certificate: bytes,
    cabundle: Iterable[bytes],
    module_id: str = DEFAULT_MODULE_ID,
    pcrs: Mapping[int, bytes] | None = None,
    public_key: bytes | None = None,
    user_data: bytes | None = None,
    nonce: bytes | None = None,
) -> dict[str, Any]:
    return {
        "module_id": module_id,
        "digest": "SHA384",
        "timestamp": int(timestamp.timestamp() * 1000),
        "pcrs": dict(pcrs) if pcrs is not None else default_pcrs(),
        "certificate": certificate,
        "cabundle": list(cabundle),
        "public_key": public_key,
        "user_data": user_data,
        "nonce": nonce,
    }


def sign_payload(
    payload: Mapping[str, Any] | bytes,
    key: ec.EllipticCurvePrivateKey,
    *,
    protected: bytes = PROTECTED_ES384,
    tagged: bool = False,
) -> bytes:
    """COSE_Sign1-sign a payload map (or already encoded payload bytes) with ``key``."""
    payload_bytes = payload if isinstance(payload, bytes) else cbor2.dumps(dict(payload))
    signature = sign_es384(key, protected=protected, payload=payload_bytes)
    return encode_sign1(protected=protected, payload=payload_bytes, signature=signature, tagged=tagged)


def build_document(
    *,
    at: datetime | None = None,
    pki: FixturePki | None = None,
    module_id: str = DEFAULT_MODULE_ID,
    pcrs: Mapping[int, bytes] | None = None,
    public_key: bytes | None = None,
    user_data: bytes | None = None,
    nonce: bytes | None = None,
    extra: Mapping[str, Any] | None = None,
    drop: Iterable[str] = (),
    tagged: bool = False,
    signer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None,
) -> bytes:
    """A fixture attestation document issued at ``at`` (default now).

    It is signed by ``signer`` (a leaf certificate and its key) or, by default, a fresh 3-hour leaf.
    """
    at = at or datetime.now(UTC)
    pki = pki or fixture_pki()
    leaf, key = signer or pki.issue_leaf(not_before=at.replace(microsecond=0), module_id=module_id)
    payload = build_payload(
        timestamp=at, certificate=leaf.public_bytes(serialization.Encoding.DER), cabundle=pki.cabundle,
        module_id=module_id, pcrs=pcrs, public_key=public_key, user_data=user_data, nonce=nonce,
    )
    payload.update(extra or {})
    for name in drop:
        payload.pop(name, None)
    return sign_payload(payload, key, tagged=tagged)
