"""An independent COSE implementation (pycose) agrees with ours on ES384 signatures, both ways.

pycose 1.1.0 cannot decode with cbor2 6.x, so messages are handed to it as parts (protected header,
payload, signature) rather than as encoded bytes; its signature maths is its own (the `ecdsa` package).
"""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from nitrokit.attestation import Policy, SignatureError, Verifier, parse_document
from nitrokit.attestation._cose import PROTECTED_ES384
from nitrokit.testing import build_document, fixture_pki
from nitrokit.testing.documents import build_payload
from tests.pki_helpers import T0, der

cose_messages = pytest.importorskip("pycose.messages")
cose_keys = pytest.importorskip("pycose.keys")
cose_headers = pytest.importorskip("pycose.headers")
cose_algorithms = pytest.importorskip("pycose.algorithms")
cose_curves = pytest.importorskip("pycose.keys.curves")

import cbor2  # noqa: E402


def _cose_key(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> Any:
    public = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    numbers = public.public_numbers()
    d = key.private_numbers().private_value.to_bytes(48, "big") if isinstance(key, ec.EllipticCurvePrivateKey) else b""
    return cose_keys.EC2Key(crv=cose_curves.P384, x=numbers.x.to_bytes(48, "big"), y=numbers.y.to_bytes(48, "big"),
                            d=d)


def _pycose_verifies(protected: bytes, payload: bytes, signature: bytes, key: ec.EllipticCurvePublicKey) -> bool:
    message = cose_messages.Sign1Message(phdr={cose_headers.Algorithm: cose_algorithms.Es384}, payload=payload)
    assert message.phdr_encoded == protected  # the same protected bytes: {1: -35}
    message._signature = signature
    message.key = _cose_key(key)
    return bool(message.verify_signature())


@pytest.mark.parametrize("tamper", [False, True])
def test_pycose_verifies_what_we_sign(tamper: bool) -> None:
    leaf, key = fixture_pki().issue_leaf(not_before=T0)
    doc = parse_document(build_document(at=T0, signer=(leaf, key), nonce=b"interop"))
    signature = bytearray(doc.signature)
    if tamper:
        signature[-1] ^= 0x80
    public = leaf.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert _pycose_verifies(doc.protected, doc.payload, bytes(signature), public) is not tamper


@pytest.mark.parametrize("tamper", [False, True])
def test_we_verify_what_pycose_signs(tamper: bool) -> None:
    leaf, key = fixture_pki().issue_leaf(not_before=T0)
    payload = cbor2.dumps(build_payload(timestamp=T0, certificate=der(leaf), cabundle=fixture_pki().cabundle))
    message = cose_messages.Sign1Message(phdr={cose_headers.Algorithm: cose_algorithms.Es384}, payload=payload)
    message.key = _cose_key(key)
    encoded = message.encode()  # tagged COSE_Sign1, signed by pycose
    assert message.phdr_encoded == PROTECTED_ES384
    if tamper:
        encoded = encoded[:-1] + bytes([encoded[-1] ^ 0x01])
    verifier = Verifier(root=fixture_pki().root)
    if tamper:
        with pytest.raises(SignatureError):
            verifier.verify(encoded, at=T0, policy=Policy.any_enclave_image())
    else:
        assert verifier.verify(encoded, at=T0, policy=Policy.any_enclave_image()).document.tagged
