"""The chain step: critical extensions (RFC 5280 4.2) and the process-wide parse cache behind cold verification."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, ObjectIdentifier

from nitrokit.attestation import (
    CertificateValidityError,
    ChainError,
    Policy,
    TrustRootError,
    Verifier,
    _chain,
    parse_document,
)
from nitrokit.testing import build_document, fixture_pki
from tests.conftest import vector_files
from tests.pki_helpers import T0, default_specs, document_from_chain, make_chain, with_change

PRIVATE_OID = ObjectIdentifier("1.3.6.1.4.1.55555.1")
UNKNOWN = x509.UnrecognizedExtension(PRIVATE_OID, b"\x05\x00")
NAME_CONSTRAINTS = x509.NameConstraints(permitted_subtrees=[x509.DNSName("example.com")], excluded_subtrees=None)
CODE_SIGNING = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING])
ANY_IMAGE = Policy.any_enclave_image()


def _verify(chain: list[tuple[x509.Certificate, Any]]) -> None:
    Verifier(root=chain[0][0]).verify(document_from_chain(chain), at=T0, policy=ANY_IMAGE)


CRITICAL_CASES = [
    ("unknown critical extension on an intermediate", 2, UNKNOWN, "cabundle[2]", PRIVATE_OID.dotted_string),
    ("unknown critical extension on the signing certificate", 4, UNKNOWN, "certificate", PRIVATE_OID.dotted_string),
    ("critical nameConstraints on the instance CA", 3, NAME_CONSTRAINTS, "cabundle[3]", "NameConstraints"),
    ("critical extendedKeyUsage on the signing certificate", 4, CODE_SIGNING, "certificate", "ExtendedKeyUsage"),
]


@pytest.mark.parametrize(("what", "index", "extension", "field", "named"), CRITICAL_CASES,
                         ids=[case[0] for case in CRITICAL_CASES])
def test_a_critical_extension_the_aws_chain_does_not_use_is_refused(what: str, index: int, extension: Any,
                                                                    field: str, named: str) -> None:
    chain = make_chain(with_change(default_specs(), index, extensions=((extension, True),)))
    with pytest.raises(ChainError, match="critical extension") as info:
        _verify(chain)
    assert info.value.field == field
    assert named in str(info.value)


@pytest.mark.parametrize("extension", [UNKNOWN, NAME_CONSTRAINTS, CODE_SIGNING], ids=lambda e: type(e).__name__)
def test_the_same_extensions_not_critical_are_accepted(extension: Any) -> None:
    specs = with_change(with_change(default_specs(), 2, extensions=((extension, False),)), 4,
                        extensions=((extension, False),))
    _verify(make_chain(specs))


def test_a_root_with_an_unknown_critical_extension_is_not_a_trust_root() -> None:
    chain = make_chain(with_change(default_specs(), 0, extensions=((UNKNOWN, True),)))
    with pytest.raises(TrustRootError, match="critical extension"):
        Verifier(root=chain[0][0])


@pytest.mark.parametrize("vector", vector_files("nitro-attestation", "*.cbor"))
def test_the_allowed_set_is_what_the_real_aws_chain_marks_critical(vector: Any) -> None:
    doc = parse_document(vector.read_bytes())
    critical = {ext.oid for der in (doc.certificate, *doc.cabundle)
                for ext in x509.load_der_x509_certificate(der).extensions if ext.critical}
    assert critical == _chain.ALLOWED_CRITICAL_EXTENSIONS
    Verifier().verify(doc, at=doc.issued_at, policy=Policy(allow_debug=True))


def test_the_fixture_pki_marks_critical_only_what_aws_does() -> None:
    signer, _key = fixture_pki().issue_leaf(not_before=T0)
    for cert in (*fixture_pki().cas, signer):
        assert {ext.oid for ext in cert.extensions if ext.critical} <= _chain.ALLOWED_CRITICAL_EXTENSIONS


# --- cold verification: parse once per process, verify every signature per Verifier ----------------------

def _count(monkeypatch: pytest.MonkeyPatch, name: str) -> list[int]:
    calls = [0]
    original = getattr(_chain, name)

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(_chain, name, counting)
    return calls


def test_a_cold_verifier_verifies_every_signature_but_parses_no_known_certificate_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    data = build_document(at=T0)
    Verifier(root=fixture_pki().root).verify(data, at=T0, policy=ANY_IMAGE)  # the process has seen this chain
    parses = _count(monkeypatch, "load_der")
    links = _count(monkeypatch, "check_issued_by")
    for _ in range(3):
        Verifier(root=fixture_pki().root).verify(data, at=T0, policy=ANY_IMAGE)
    assert parses[0] == 0
    assert links[0] == 3 * 4  # a new Verifier checks all four links again: cold means the five signatures


def test_a_cached_parse_is_checked_for_validity_every_time() -> None:
    chain = make_chain(with_change(default_specs(), 2, not_after=T0 + timedelta(hours=1)))
    data = document_from_chain(chain)
    Verifier(root=chain[0][0]).verify(data, at=T0, policy=ANY_IMAGE)
    with pytest.raises(CertificateValidityError) as info:
        Verifier(root=chain[0][0]).verify(data, at=T0 + timedelta(hours=2), policy=ANY_IMAGE)
    assert info.value.field == "cabundle[2]"


def test_a_certificate_that_fails_to_parse_is_not_cached() -> None:
    before = len(_chain._PARSED)
    with pytest.raises(ChainError, match="not a DER"):
        _chain.parse_certificate(b"\x30\x03\x02\x01\x00", position="cabundle[1]")
    assert len(_chain._PARSED) <= max(before, _chain.PARSED_CACHE_SIZE)
    assert _chain._PARSED.get(b"\x30\x03\x02\x01\x00") is None


def test_the_caches_are_bounded() -> None:
    cache: _chain.BoundedCache[int, str] = _chain.BoundedCache(3)
    for key in range(10):
        cache.add(key, str(key))
    assert len(cache) == 3 and cache.get(0) is None and cache.get(9) == "9"
    cache.get(7)
    cache.add(10, "10")
    assert cache.get(7) == "7" and cache.get(8) is None  # least recently used goes first
    nothing: _chain.BoundedCache[int, str] = _chain.BoundedCache(0)
    nothing.add(1, "1")
    assert len(nothing) == 0



def test_an_untrusted_name_in_a_chain_message_is_escaped_and_clipped() -> None:
    from tests.pki_helpers import Spec

    chain = make_chain([Spec("\x1b[2J" + "x" * 60), *default_specs()[1:]])
    with pytest.raises(ChainError, match="is not the trusted root") as info:
        Verifier(root=fixture_pki().root).verify(document_from_chain(chain), at=T0, policy=ANY_IMAGE)
    assert "\x1b" not in str(info.value) and "\\x1b[2J" in str(info.value)
    assert len(str(info.value)) < 200
