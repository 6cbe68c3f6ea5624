"""The Verifier: real AWS documents, and a tampering matrix over fixture documents, one rule per case."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import cbor2
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from nitrokit.attestation import (
    AWS_NITRO_ROOT_G1_SHA256,
    AttestationError,
    CertificateValidityError,
    ChainError,
    DocumentTimeError,
    Policy,
    PolicyError,
    SignatureError,
    TrustRootError,
    Verifier,
    _chain,
    aws_nitro_root,
    parse_document,
    roots,
)
from nitrokit.attestation._cose import encode_sign1
from nitrokit.errors import UsageError
from nitrokit.testing import build_document, fixture_pki
from tests.conftest import FIXTURES, vector_files, vector_path
from tests.pki_helpers import (
    CA_USAGE,
    LEAF_USAGE,
    NO_SIGN_USAGE,
    T0,
    default_specs,
    der,
    document_from_chain,
    make_chain,
    with_change,
)

# Most cases here are about the document, not the image: they pin no PCR, explicitly.
ANY_IMAGE = Policy.any_enclave_image()


@pytest.fixture(scope="module")
def fixture_verifier() -> Verifier:
    return Verifier(root=FIXTURES / "pki" / "root.pem")


@pytest.fixture(scope="module")
def document() -> bytes:
    return build_document(at=T0, nonce=b"nonce-1", user_data=b"user-1", public_key=b"key-1")


# --- real AWS documents -----------------------------------------------------------------------------------

@pytest.mark.parametrize("vector", vector_files("nitro-attestation", "*.cbor"))
def test_real_documents_verify_against_the_aws_root_at_their_own_time(vector: Path) -> None:
    data = vector.read_bytes()
    doc = parse_document(data)
    result = Verifier().verify(data, at=doc.issued_at, policy=Policy(allow_debug=True))
    assert result.chain[0] == aws_nitro_root()
    assert len(result.chain) == 5
    assert result.checks[:4] == ("parse", "time", "chain", "signature")
    assert result.verified_at == doc.issued_at


@pytest.mark.parametrize("vector", vector_files("nitro-attestation", "*.cbor"))
def test_real_documents_are_expired_now(vector: Path) -> None:
    with pytest.raises(CertificateValidityError, match="expired"):
        Verifier().verify(vector.read_bytes(), policy=Policy(allow_debug=True))


@pytest.mark.parametrize("vector", vector_files("nitro-attestation", "*debug*.cbor"))
def test_real_debug_documents_are_refused_by_default(vector: Path) -> None:
    doc = parse_document(vector.read_bytes())
    with pytest.raises(PolicyError, match="debug mode") as info:
        Verifier().verify(doc, at=doc.issued_at, policy=ANY_IMAGE)
    assert info.value.field == "pcrs[0]"


@pytest.mark.parametrize("vector", vector_files("nitro-attestation", "*.cbor"))
def test_a_flipped_signature_bit_in_a_real_document_is_caught(vector: Path) -> None:
    doc = parse_document(vector.read_bytes())
    signature = bytearray(doc.signature)
    signature[10] ^= 0x01
    forged = encode_sign1(protected=doc.protected, payload=doc.payload, signature=bytes(signature))
    with pytest.raises(SignatureError):
        Verifier().verify(forged, at=doc.issued_at, policy=Policy(allow_debug=True))


def test_real_document_under_a_pcr_policy() -> None:
    data = vector_path("nitro-attestation", "base-org-2024-11-30.cbor").read_bytes()
    doc = parse_document(data)
    Verifier().verify(data, at=doc.issued_at, policy=Policy(pcrs={0: doc.pcrs[0].hex(), 4: doc.pcrs[4]}))
    with pytest.raises(PolicyError, match=r"pcrs\[1\]"):
        Verifier().verify(data, at=doc.issued_at, policy=Policy(pcrs={1: b"\x00" * 48}))


def test_the_packaged_aws_root_is_the_published_one() -> None:
    # The pin against evidence from outside the package (not against a copy of itself): AWS's published
    # root file and the root that every real document's cabundle starts with.
    sample_path = vector_path("nitro-attestation", "aws-nitro-enclaves-root-g1.pem")
    sample = sample_path.read_bytes()
    assert roots.load_root(sample) == aws_nitro_root()
    published = der(roots.load_root(sample))
    vectors = sample_path.parent.glob("*.cbor")
    carried = {parse_document(vector.read_bytes()).cabundle[0] for vector in vectors}
    assert carried == {published}
    assert hashlib.sha256(published).hexdigest() == AWS_NITRO_ROOT_G1_SHA256
    assert hashlib.sha256(der(aws_nitro_root())).hexdigest() == AWS_NITRO_ROOT_G1_SHA256


def test_a_modified_packaged_root_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "roots").mkdir()
    (tmp_path / "roots" / "aws-nitro-enclaves-root-g1.pem").write_bytes((FIXTURES / "pki" / "root.pem").read_bytes())
    monkeypatch.setattr(roots, "resources", SimpleNamespace(files=lambda _package: tmp_path))
    roots.aws_nitro_root.cache_clear()
    try:
        with pytest.raises(TrustRootError, match="does not match the pinned"):
            Verifier()
    finally:
        monkeypatch.undo()
        roots.aws_nitro_root.cache_clear()


# --- a good fixture document ----------------------------------------------------------------------------

def test_a_fixture_document_verifies(fixture_verifier: Verifier, document: bytes) -> None:
    result = fixture_verifier.verify(document, at=T0 + timedelta(minutes=1), policy=ANY_IMAGE)
    assert result.document.nonce == b"nonce-1"
    assert result.checks == ("parse", "time", "chain", "signature", "policy: not debug mode")
    assert [c.subject for c in result.chain[:4]] == [c.subject for c in fixture_pki().cas]


def test_fixture_documents_are_refused_by_the_default_aws_root(document: bytes) -> None:
    with pytest.raises(ChainError, match="is not the trusted root"):
        Verifier().verify(document, at=T0, policy=ANY_IMAGE)


def test_root_may_be_given_as_pem_der_path_or_certificate(document: bytes) -> None:
    root = fixture_pki().root
    pem = (FIXTURES / "pki" / "root.pem").read_bytes()
    for source in (root, pem, der(root), FIXTURES / "pki" / "root.pem", str(FIXTURES / "pki" / "root.pem")):
        assert Verifier(root=source).verify(document, at=T0, policy=ANY_IMAGE).chain[0] == root


@pytest.mark.parametrize("source", [b"not a certificate", "/nonexistent/root.pem", 42])
def test_bad_roots_are_refused(source: Any) -> None:
    with pytest.raises(TrustRootError):
        Verifier(root=source)


# --- time -------------------------------------------------------------------------------------------------

def test_verification_time_must_be_timezone_aware(fixture_verifier: Verifier, document: bytes) -> None:
    with pytest.raises(UsageError, match="timezone-aware"):
        fixture_verifier.verify(document, at=datetime(2025, 6, 1, 12, 0), policy=ANY_IMAGE)


def test_a_document_from_the_future_is_refused(fixture_verifier: Verifier, document: bytes) -> None:
    with pytest.raises(DocumentTimeError, match="later than the verification time") as info:
        fixture_verifier.verify(document, at=T0 - timedelta(minutes=6), policy=ANY_IMAGE)
    assert info.value.field == "timestamp"


def test_a_small_future_skew_is_tolerated(document: bytes) -> None:
    leaf_time = T0 - timedelta(minutes=10)
    early = build_document(at=T0, signer=fixture_pki().issue_leaf(not_before=leaf_time))
    Verifier(root=fixture_pki().root).verify(early, at=T0 - timedelta(minutes=4), policy=ANY_IMAGE)
    with pytest.raises(DocumentTimeError):
        Verifier(root=fixture_pki().root, future_skew=timedelta(0)).verify(early, at=T0 - timedelta(minutes=4),
                                                                                 policy=ANY_IMAGE)


def test_extreme_verification_times_are_typed_errors_not_overflows(fixture_verifier: Verifier,
                                                                   document: bytes) -> None:
    with pytest.raises(CertificateValidityError, match="expired"):
        fixture_verifier.verify(document, at=datetime.max.replace(tzinfo=UTC), policy=ANY_IMAGE)
    with pytest.raises(DocumentTimeError, match="later than the verification time"):
        fixture_verifier.verify(document, at=datetime.min.replace(tzinfo=UTC), policy=ANY_IMAGE)
    with pytest.raises(DocumentTimeError, match="older than the maximum age"):
        fixture_verifier.verify(document, at=datetime.max.replace(tzinfo=UTC), max_age=timedelta(days=1),
                                policy=ANY_IMAGE)


def test_documents_do_not_show_user_data_in_repr(document: bytes) -> None:
    text = repr(parse_document(document))
    assert "user-1" not in text and "nonce-1" not in text and "key-1" not in text


def test_max_age(fixture_verifier: Verifier, document: bytes) -> None:
    fixture_verifier.verify(document, at=T0 + timedelta(minutes=5), max_age=timedelta(minutes=5), policy=ANY_IMAGE)
    with pytest.raises(DocumentTimeError, match="older than the maximum age"):
        fixture_verifier.verify(document, at=T0 + timedelta(minutes=5, seconds=1), max_age=timedelta(minutes=5),
                                policy=ANY_IMAGE)


def test_the_leaf_expires_after_three_hours(fixture_verifier: Verifier, document: bytes) -> None:
    fixture_verifier.verify(document, at=T0 + timedelta(hours=2, minutes=59), policy=ANY_IMAGE)
    with pytest.raises(CertificateValidityError, match="expired") as info:
        fixture_verifier.verify(document, at=T0 + timedelta(hours=3, seconds=1), policy=ANY_IMAGE)
    assert info.value.field == "certificate"


def test_a_leaf_not_yet_valid_is_refused(fixture_verifier: Verifier) -> None:
    later_leaf = fixture_pki().issue_leaf(not_before=T0 + timedelta(hours=1))
    data = build_document(at=T0, signer=later_leaf)
    with pytest.raises(CertificateValidityError, match="not valid before"):
        fixture_verifier.verify(data, at=T0, policy=ANY_IMAGE)


# --- signature --------------------------------------------------------------------------------------------

def test_a_changed_payload_breaks_the_signature(fixture_verifier: Verifier, document: bytes) -> None:
    doc = parse_document(document)
    fields = cbor2.loads(doc.payload)
    fields["pcrs"][0] = b"\xee" * 48
    forged = encode_sign1(protected=doc.protected, payload=cbor2.dumps(fields), signature=doc.signature)
    with pytest.raises(SignatureError) as info:
        fixture_verifier.verify(forged, at=T0, policy=ANY_IMAGE)
    assert info.value.field == "COSE signature"


def test_a_document_signed_by_another_key_is_refused(fixture_verifier: Verifier) -> None:
    leaf, _ = fixture_pki().issue_leaf(not_before=T0)
    other_key = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(SignatureError):
        fixture_verifier.verify(build_document(at=T0, signer=(leaf, other_key)), at=T0, policy=ANY_IMAGE)


def test_the_tagged_form_verifies_too(fixture_verifier: Verifier) -> None:
    assert fixture_verifier.verify(build_document(at=T0, tagged=True), at=T0, policy=ANY_IMAGE).document.tagged


# --- the chain ------------------------------------------------------------------------------------------

def _verify_chain_variant(specs: list[Any], **kwargs: Any) -> None:
    chain = make_chain(specs)
    Verifier(root=chain[0][0]).verify(document_from_chain(chain, **kwargs), at=T0, policy=ANY_IMAGE)


def test_a_well_formed_test_chain_verifies() -> None:
    _verify_chain_variant(default_specs())


CHAIN_CASES: list[tuple[str, int, dict[str, Any], str]] = [
    ("intermediate without basicConstraints", 2, {"ca": None}, "is not a CA"),
    ("intermediate with non-critical basicConstraints", 2, {"bc_critical": False}, "is not a CA"),
    ("intermediate that is not a CA", 2, {"ca": False}, "is not a CA"),
    ("intermediate without keyCertSign", 3, {"key_usage": LEAF_USAGE}, "keyCertSign"),
    ("intermediate without key usage", 1, {"key_usage": None}, "keyCertSign"),
    ("path length too short", 1, {"path_length": 1}, "path length 1 but 2"),
    ("instance CA path length exceeded", 2, {"path_length": 0}, "path length 0 but 1"),
    ("leaf that is a CA", 4, {"ca": True, "key_usage": CA_USAGE}, "is a CA certificate"),
    ("leaf without digitalSignature", 4, {"key_usage": NO_SIGN_USAGE}, "digitalSignature"),
    ("leaf without key usage", 4, {"key_usage": None}, "digitalSignature"),
    ("P-256 intermediate", 2, {"key": "p256"}, "expected EC P-384"),
    ("RSA intermediate", 3, {"key": "rsa"}, "expected EC P-384"),
    ("P-256 leaf", 4, {"key": "p256"}, "expected EC P-384"),
    ("ecdsa-with-SHA256 signature", 2, {"hash": hashes.SHA256()}, "expected ecdsa-with-SHA384"),
    ("expired intermediate", 2, {"not_after": T0 - timedelta(days=1)}, "expired"),
    ("intermediate not yet valid", 1, {"not_before": T0 + timedelta(days=1)}, "not valid before"),
    ("expired root", 0, {"not_after": T0 - timedelta(days=1)}, "expired"),
]


@pytest.mark.parametrize(("what", "index", "change", "message"), CHAIN_CASES, ids=[c[0] for c in CHAIN_CASES])
def test_chain_rules(what: str, index: int, change: dict[str, Any], message: str) -> None:
    specs = with_change(default_specs(), index, **change)
    chain = make_chain(specs)
    signing_key = chain[-1][1] if index != 4 or "key" not in change else ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(ChainError, match=message):
        Verifier(root=chain[0][0]).verify(document_from_chain(chain, signing_key=signing_key), at=T0, policy=ANY_IMAGE)


def test_validity_failures_are_their_own_class() -> None:
    specs = with_change(default_specs(), 2, not_after=T0 - timedelta(days=1))
    with pytest.raises(CertificateValidityError):
        _verify_chain_variant(specs)


def test_a_missing_intermediate_breaks_the_chain() -> None:
    chain = make_chain(default_specs())
    bundle = [der(chain[0][0]), der(chain[1][0]), der(chain[3][0])]  # zonal left out
    with pytest.raises(ChainError, match="issuer name does not match") as info:
        Verifier(root=chain[0][0]).verify(document_from_chain(chain, cabundle=bundle), at=T0, policy=ANY_IMAGE)
    assert info.value.field == "cabundle[2]"


def test_intermediates_in_the_wrong_order_break_the_chain() -> None:
    chain = make_chain(default_specs())
    bundle = [der(chain[0][0]), der(chain[2][0]), der(chain[1][0]), der(chain[3][0])]
    with pytest.raises(ChainError):
        Verifier(root=chain[0][0]).verify(document_from_chain(chain, cabundle=bundle), at=T0, policy=ANY_IMAGE)


def test_a_cabundle_root_is_never_trusted() -> None:
    """A self-signed chain that brings its own root in cabundle must not verify against ours."""
    attacker = make_chain(default_specs())
    with pytest.raises(ChainError, match="is not the trusted root") as info:
        Verifier(root=fixture_pki().root).verify(document_from_chain(attacker), at=T0, policy=ANY_IMAGE)
    assert info.value.field == "cabundle[0]"


def test_a_foreign_root_with_our_roots_name_is_refused() -> None:
    ours = make_chain(default_specs())
    impostor = make_chain(default_specs())  # same names, other keys
    with pytest.raises(ChainError, match="foreign root"):
        Verifier(root=ours[0][0]).verify(document_from_chain(impostor), at=T0, policy=ANY_IMAGE)


def test_a_foreign_intermediate_signature_is_caught() -> None:
    ours = make_chain(default_specs())
    impostor = make_chain(default_specs())
    bundle = [der(ours[0][0]), der(impostor[1][0]), der(impostor[2][0]), der(impostor[3][0])]
    with pytest.raises(ChainError, match="signature by the next certificate") as info:
        Verifier(root=ours[0][0]).verify(document_from_chain(impostor, cabundle=bundle), at=T0, policy=ANY_IMAGE)
    assert info.value.field == "cabundle[1]"


def test_a_cabundle_without_the_root_is_accepted_when_it_chains_to_it() -> None:
    chain = make_chain(default_specs())
    bundle = [der(cert) for cert, _ in chain[1:-1]]
    result = Verifier(root=chain[0][0]).verify(document_from_chain(chain, cabundle=bundle), at=T0, policy=ANY_IMAGE)
    assert len(result.chain) == 5


def test_garbage_certificates_are_chain_errors(fixture_verifier: Verifier) -> None:
    pki = fixture_pki()
    leaf, key = pki.issue_leaf(not_before=T0)
    bundle = list(pki.cabundle)
    bundle[2] = b"\x30\x03\x02\x01\x00"
    from nitrokit.testing.documents import build_payload, sign_payload

    data = sign_payload(build_payload(timestamp=T0, certificate=der(leaf), cabundle=bundle), key)
    with pytest.raises(ChainError, match=r"not a DER X\.509 certificate"):
        fixture_verifier.verify(data, at=T0, policy=ANY_IMAGE)


# --- policy ---------------------------------------------------------------------------------------------

def test_pcr_policy_by_bytes_or_hex(fixture_verifier: Verifier, document: bytes) -> None:
    fixture_verifier.verify(document, at=T0, policy=Policy(pcrs={0: b"\x01" * 48, 2: "03" * 48, 15: "10" * 48}))


def test_pcr_policy_mismatch_names_the_pcr(fixture_verifier: Verifier, document: bytes) -> None:
    with pytest.raises(PolicyError, match=r"pcrs\[2\]: is 0303") as info:
        fixture_verifier.verify(document, at=T0, policy=Policy(pcrs={0: b"\x01" * 48, 2: b"\x09" * 48}))
    assert info.value.field == "pcrs[2]"


def test_a_pcr_the_document_lacks_fails(fixture_verifier: Verifier, document: bytes) -> None:
    with pytest.raises(PolicyError, match="absent"):
        fixture_verifier.verify(document, at=T0, policy=Policy(pcrs={20: b"\x00" * 48}))


@pytest.mark.parametrize(
    ("pcrs", "message"),
    [({}, "empty"), ({32: b"\x00" * 48}, "0..31"), ({-1: b"\x00" * 48}, "0..31"), ({"0": b"\x00" * 48}, "0..31"),
     ({0: "zz"}, "not valid hex"), ({0: b"\x00" * 47}, "47 bytes"), ({0: 5}, "bytes or hex")],
)
def test_bad_pcr_policies_are_usage_errors(pcrs: Any, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        Policy(pcrs=pcrs)


def test_debug_documents_need_allow_debug(fixture_verifier: Verifier) -> None:
    debug = build_document(at=T0, pcrs={i: b"\x00" * 48 for i in range(16)})
    with pytest.raises(PolicyError, match="debug mode"):
        fixture_verifier.verify(debug, at=T0, policy=ANY_IMAGE)
    assert "policy: not debug mode" not in fixture_verifier.verify(debug, at=T0, policy=Policy(allow_debug=True)).checks


@pytest.mark.parametrize("name", ["nonce", "user_data", "public_key"])
def test_field_policies(name: str, fixture_verifier: Verifier, document: bytes) -> None:
    good = {"nonce": b"nonce-1", "user_data": b"user-1", "public_key": b"key-1"}[name]
    expect: dict[str, Any] = {name: good}
    wrong: dict[str, Any] = {name: good + b"!"}
    result = fixture_verifier.verify(document, at=T0, policy=Policy(**expect))
    assert f"policy: {name}" in result.checks
    with pytest.raises(PolicyError, match="does not match") as info:
        fixture_verifier.verify(document, at=T0, policy=Policy(**wrong))
    assert info.value.field == name
    assert good.decode() not in str(info.value)  # values are not echoed
    bare = build_document(at=T0)
    with pytest.raises(PolicyError, match="null in the document"):
        fixture_verifier.verify(bare, at=T0, policy=Policy(**expect))


def test_policy_and_option_misuse_are_usage_errors(fixture_verifier: Verifier, document: bytes) -> None:
    with pytest.raises(UsageError):
        fixture_verifier.verify(document, at=T0, policy={"pcrs": {}})  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        fixture_verifier.verify(document, at=T0, max_age=timedelta(seconds=-1), policy=ANY_IMAGE)
    with pytest.raises(UsageError):
        Policy(nonce="text")  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        Verifier(cache_size=-1)


# --- the link cache -------------------------------------------------------------------------------------

def _count_link_checks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls = [0]
    original = _chain.check_issued_by

    def counting(*args: Any, **kwargs: Any) -> None:
        calls[0] += 1
        original(*args, **kwargs)

    monkeypatch.setattr(_chain, "check_issued_by", counting)
    return calls


def test_a_warm_verifier_skips_verified_links(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _count_link_checks(monkeypatch)
    verifier = Verifier(root=fixture_pki().root)
    signer = fixture_pki().issue_leaf(not_before=T0)
    verifier.verify(build_document(at=T0, signer=signer), at=T0, policy=ANY_IMAGE)
    assert calls[0] == 4
    verifier.verify(build_document(at=T0, signer=signer, nonce=b"2"), at=T0, policy=ANY_IMAGE)
    assert calls[0] == 4  # same host, same leaf: only the COSE signature is checked
    verifier.verify(build_document(at=T0), at=T0, policy=ANY_IMAGE)
    assert calls[0] == 5  # a new leaf: one more link


def test_cached_links_do_not_outlive_certificate_validity() -> None:
    specs = with_change(default_specs(), 2, not_after=T0 + timedelta(hours=1))
    chain = make_chain(specs)
    verifier = Verifier(root=chain[0][0])
    data = document_from_chain(chain)
    verifier.verify(data, at=T0, policy=ANY_IMAGE)
    with pytest.raises(CertificateValidityError):
        verifier.verify(data, at=T0 + timedelta(hours=2), policy=ANY_IMAGE)


def test_the_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    verifier = Verifier(root=fixture_pki().root, cache_size=3)
    for _ in range(3):
        verifier.verify(build_document(at=T0), at=T0, policy=ANY_IMAGE)
    assert len(verifier._links) == 3
    uncached = Verifier(root=fixture_pki().root, cache_size=0)
    calls = _count_link_checks(monkeypatch)
    data = build_document(at=T0)
    uncached.verify(data, at=T0, policy=ANY_IMAGE)
    uncached.verify(data, at=T0, policy=ANY_IMAGE)
    assert calls[0] == 8


def test_every_error_is_an_attestation_error() -> None:
    for cls in (ChainError, CertificateValidityError, DocumentTimeError, SignatureError, PolicyError, TrustRootError):
        assert issubclass(cls, AttestationError)


def test_now_is_the_default_time() -> None:
    fresh = build_document()
    result = Verifier(root=fixture_pki().root).verify(fresh, policy=ANY_IMAGE)
    assert abs(result.verified_at - datetime.now(UTC)) < timedelta(minutes=1)
