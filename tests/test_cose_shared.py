"""Attestation documents and EIF PCR0 signatures refuse the same COSE_Sign1 framing, in the same part.

Both go through nitrokit.attestation._cose. Each malformed COSE_Sign1 below is fed to the attestation parser
(MalformedDocumentError) and to the EIF signature check with a P-384 signing certificate (EifSignatureError);
both must refuse it and name the same part of the structure. A copy of the rules drifting on either side
makes one of the pair pass.
"""

from __future__ import annotations

import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from nitrokit.attestation import MalformedDocumentError, parse_document
from nitrokit.attestation._cose import ES384, PROTECTED_ES384, decode_sign1, sign_es384, verify_signature
from nitrokit.eif._signature import check_pcr0_signature
from nitrokit.eif.errors import EifSignatureError
from tests import eif_builder as b

PCR0 = bytes(range(48))
PAYLOAD = b.pcr_payload(PCR0)
SIG = b"\x01" * 96
Signer = tuple[ec.EllipticCurvePrivateKey, x509.Certificate]


def _array(*items: bytes) -> bytes:
    """A definite-length array of already-encoded items (for encodings cbor2 will not write)."""
    return bytes([0x80 + len(items)]) + b"".join(items)


_D = cbor2.dumps
# (id, COSE_Sign1 bytes, the part both sides must name)
CASES: list[tuple[str, bytes, str]] = [
    ("other-tag", _D(cbor2.CBORTag(17, [PROTECTED_ES384, {}, PAYLOAD, SIG])), "COSE_Sign1"),
    ("nested-tag-18", _D(cbor2.CBORTag(18, cbor2.CBORTag(18, [PROTECTED_ES384, {}, PAYLOAD, SIG]))), "COSE_Sign1"),
    ("three-elements", _D([PROTECTED_ES384, {}, PAYLOAD]), "COSE_Sign1"),
    ("five-elements", _D([PROTECTED_ES384, {}, PAYLOAD, SIG, b""]), "COSE_Sign1"),
    ("a-map", _D({"protected": PROTECTED_ES384}), "COSE_Sign1"),
    ("trailing-bytes", _D([PROTECTED_ES384, {}, PAYLOAD, SIG]) + b"\x00", "COSE_Sign1"),
    ("not-cbor", b"\xff", "COSE_Sign1"),
    ("protected-as-map", _D([{1: -35}, {}, PAYLOAD, SIG]), "protected header"),
    ("protected-empty", _D([b"", {}, PAYLOAD, SIG]), "protected header"),
    ("protected-duplicate-alg", _D([b"\xa2\x01\x38\x22\x01\x38\x22", {}, PAYLOAD, SIG]), "protected header"),
    ("protected-trailing", _D([PROTECTED_ES384 + b"\x00", {}, PAYLOAD, SIG]), "protected header"),
    ("protected-kid", _D([_D({1: -35, 4: b"kid"}), {}, PAYLOAD, SIG]), "protected header"),
    ("protected-crit", _D([_D({1: -35, 2: [1]}), {}, PAYLOAD, SIG]), "protected header"),
    ("protected-no-alg", _D([_D({}), {}, PAYLOAD, SIG]), "protected header"),
    ("alg-as-text", _D([_D({1: "ES384"}), {}, PAYLOAD, SIG]), "protected header"),
    ("alg-as-bool", _D([_D({1: True}), {}, PAYLOAD, SIG]), "protected header"),
    ("alg-es256", _D([_D({1: -7}), {}, PAYLOAD, SIG]), "protected header"),
    ("alg-es512", _D([_D({1: -36}), {}, PAYLOAD, SIG]), "protected header"),
    ("protected-an-array", _D([_D([1, -35]), {}, PAYLOAD, SIG]), "protected header"),
    ("unprotected-array", _D([PROTECTED_ES384, [], PAYLOAD, SIG]), "unprotected header"),
    ("unprotected-duplicate-keys",
     _array(_D(PROTECTED_ES384), b"\xa2\x04\x41x\x04\x41y", _D(PAYLOAD), _D(SIG)), "COSE_Sign1"),
    ("payload-text", _D([PROTECTED_ES384, {}, "payload", SIG]), "payload"),
    ("payload-null", _D([PROTECTED_ES384, {}, None, SIG]), "payload"),
    ("signature-text", _D([PROTECTED_ES384, {}, PAYLOAD, "sig"]), "signature"),
    ("signature-short", _D([PROTECTED_ES384, {}, PAYLOAD, SIG[:-1]]), "signature"),
    ("signature-long", _D([PROTECTED_ES384, {}, PAYLOAD, SIG + b"\x01"]), "signature"),
    ("signature-empty", _D([PROTECTED_ES384, {}, PAYLOAD, b""]), "signature"),
]


@pytest.fixture(scope="module")
def p384_signer() -> Signer:
    return b.signing_identity()


@pytest.mark.parametrize(("cose", "part"), [pytest.param(c, p, id=i) for i, c, p in CASES])
def test_both_paths_refuse_the_same_framing_in_the_same_part(cose: bytes, part: str, p384_signer: Signer) -> None:
    with pytest.raises(MalformedDocumentError) as attestation:
        parse_document(cose)
    assert attestation.value.field == part

    _, certificate = p384_signer
    with pytest.raises(EifSignatureError) as eif:
        check_pcr0_signature(certificate, cose, pcr0=PCR0, verify=True)
    assert str(eif.value).startswith(f"PCR0 signature: {part}: ")


def test_a_well_formed_es384_sign1_passes_the_framing_on_both_paths(p384_signer: Signer) -> None:
    key, certificate = p384_signer
    signature = sign_es384(key, protected=PROTECTED_ES384, payload=PAYLOAD)
    for tagged in (False, True):
        cose = b.cose_sign1(key, PAYLOAD, tagged=tagged)  # built without nitrokit
        assert check_pcr0_signature(certificate, cose, pcr0=PCR0, verify=True).verified
        # The attestation parser gets past the framing and stops at the payload, which is no document.
        with pytest.raises(MalformedDocumentError) as attestation:
            parse_document(cose)
        assert attestation.value.field not in {"COSE_Sign1", "protected header", "unprotected header", "signature"}
        message = decode_sign1(cose, algorithms=(ES384,), max_depth=8)
        assert message.tagged is tagged and message.algorithm is ES384
    public_key = certificate.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    assert verify_signature(public_key, algorithm=ES384, protected=PROTECTED_ES384, payload=PAYLOAD,
                            signature=signature)


def test_a_signature_for_another_curve_never_verifies(p384_signer: Signer) -> None:
    """The algorithm must match the key: ES384 with a P-256 key is refused before OpenSSL is asked."""
    key, _ = p384_signer
    p256, _ = b.signing_identity(ec.SECP256R1())
    signature = sign_es384(key, protected=PROTECTED_ES384, payload=PAYLOAD)
    assert not verify_signature(p256.public_key(), algorithm=ES384, protected=PROTECTED_ES384, payload=PAYLOAD,
                                signature=signature)
    assert not verify_signature(key.public_key(), algorithm=ES384, protected=PROTECTED_ES384,
                                payload=PAYLOAD + b"x", signature=signature)
