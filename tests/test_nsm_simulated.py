"""The simulated NSM: its documents (checked by our Verifier AND independently), its protocol, PCR rules, limits.

Documents are made at fixed times (an injected clock) and verified at those times, so nothing depends on the
calendar.
"""

from __future__ import annotations

import hashlib
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nitrokit.attestation import Policy, PolicyError, Verifier, parse_document
from nitrokit.enclave.nsm import ErrorCode, NsmError, NsmInputTooLargeError, SimulatedNsm, _codec, open_nsm
from nitrokit.enclave.nsm.simulated import LEAF_REUSE_MARGIN, default_pcrs
from nitrokit.errors import UsageError
from tests.conftest import FIXTURES

T0 = datetime(2025, 6, 1, 12, 0, 0, 123000, tzinfo=UTC)
ROOT_PEM = FIXTURES / "pki" / "root.pem"
ZERO = bytes(48)


class Clock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(scope="module")
def verifier() -> Verifier:
    return Verifier(root=str(ROOT_PEM))


def simulated(**options: Any) -> SimulatedNsm:
    return SimulatedNsm(clock=Clock(), **options)


def error_code(response: bytes) -> str:
    decoded = cbor2.loads(response)
    assert isinstance(decoded, dict) and list(decoded) == ["Error"], decoded
    code: str = decoded["Error"]
    return code


# --- documents ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fields", [
    {},
    {"nonce": b"\x01\x02"},
    {"user_data": b"user", "nonce": b"n" * 1024, "public_key": b"k" * 1024},
    {"user_data": b"", "public_key": b"\x04" + bytes(64)},
], ids=["none", "nonce", "all at the limit", "empty user_data"])
def test_documents_verify_against_the_fixture_root_with_exactly_the_requested_fields(
        verifier: Verifier, fields: dict[str, bytes]) -> None:
    document = simulated().attestation(**fields)
    result = verifier.verify(document, at=T0, policy=Policy(**fields))  # type: ignore[arg-type]
    parsed = result.document
    for name in ("user_data", "nonce", "public_key"):
        assert getattr(parsed, name) == fields.get(name)  # absent stays null; b"" stays b""
    assert parsed.timestamp == int(T0.timestamp() * 1000)
    assert parsed.module_id == "i-00000000000000000-enc0000000000000000"
    assert dict(parsed.pcrs) == default_pcrs()
    assert not parsed.is_debug
    assert dict(parsed.unknown_fields) == {}
    assert result.chain[0].public_bytes(serialization.Encoding.PEM) == ROOT_PEM.read_bytes()


def test_documents_do_not_verify_against_the_aws_root() -> None:
    from nitrokit.attestation import ChainError

    with pytest.raises(ChainError):
        Verifier().verify(simulated().attestation(), at=T0, policy=Policy.any_enclave_image())


def test_an_independent_check_agrees_on_shape_and_signature() -> None:
    """cbor2 + cryptography only: none of nitrokit's parser, chain or COSE code."""
    nonce = b"independent"
    data = simulated().attestation(nonce=nonce)

    top = cbor2.loads(data)
    assert not isinstance(top, cbor2.CBORTag)  # untagged, like real NSM output
    protected, unprotected, payload, signature = top
    assert protected == bytes.fromhex("a1013822")  # {1: -35}
    assert cbor2.loads(protected) == {1: -35}
    assert unprotected == {}
    assert len(signature) == 96

    fields = cbor2.loads(payload)
    assert list(fields) == ["module_id", "digest", "timestamp", "pcrs", "certificate", "cabundle",
                            "public_key", "user_data", "nonce"]
    assert fields["digest"] == "SHA384"
    assert sorted(fields["pcrs"]) == list(range(16))
    assert all(len(value) == 48 for value in fields["pcrs"].values())
    assert (fields["nonce"], fields["user_data"], fields["public_key"]) == (nonce, None, None)
    assert len(fields["cabundle"]) == 4

    root = x509.load_pem_x509_certificate(ROOT_PEM.read_bytes())
    chain = [x509.load_der_x509_certificate(der) for der in fields["cabundle"]]
    leaf = x509.load_der_x509_certificate(fields["certificate"])
    assert chain[0] == root
    for issuer, subject in zip([*chain], [*chain[1:], leaf], strict=True):
        subject.verify_directly_issued_by(issuer)
        assert isinstance(subject.public_key(), ec.EllipticCurvePublicKey)
    issued = datetime.fromtimestamp(fields["timestamp"] / 1000, tz=UTC)
    assert leaf.not_valid_before_utc <= issued < leaf.not_valid_after_utc
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc == timedelta(hours=3)
    assert leaf.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature

    to_be_signed = cbor2.dumps(["Signature1", protected, b"", payload])
    der_signature = encode_dss_signature(int.from_bytes(signature[:48], "big"), int.from_bytes(signature[48:], "big"))
    key = leaf.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP384R1)
    key.verify(der_signature, to_be_signed, ec.ECDSA(hashes.SHA384()))  # raises if it does not verify

    tampered = cbor2.dumps(["Signature1", protected, b"", payload.replace(nonce, b"INDEPENDENT")])
    from cryptography.exceptions import InvalidSignature

    with pytest.raises(InvalidSignature):
        key.verify(der_signature, tampered, ec.ECDSA(hashes.SHA384()))


def test_configured_pcrs_and_module_id_appear_in_documents(verifier: Verifier) -> None:
    pcrs = {0: b"\xaa" * 48, 8: b"\x08" * 48}
    nsm = simulated(pcrs=pcrs, module_id="i-0123456789abcdef0-enc0123456789abcdef0")
    result = verifier.verify(nsm.attestation(), at=T0, policy=Policy(pcrs=pcrs))
    assert result.document.module_id == "i-0123456789abcdef0-enc0123456789abcdef0"
    assert result.document.pcrs[1] == default_pcrs()[1]  # the others keep their defaults
    assert nsm.describe_nsm().module_id == "i-0123456789abcdef0-enc0123456789abcdef0"
    assert nsm.describe_pcr(8) == (True, b"\x08" * 48)


def test_debug_mode_reports_zero_pcrs_and_is_refused_by_default(verifier: Verifier) -> None:
    nsm = simulated(debug=True)
    document = nsm.attestation()
    assert all(value == ZERO for value in parse_document(document).pcrs.values())
    with pytest.raises(PolicyError, match="debug"):
        verifier.verify(document, at=T0, policy=Policy.any_enclave_image())
    assert verifier.verify(document, at=T0, policy=Policy(allow_debug=True)).document.is_debug
    assert nsm.describe_pcr(0) == (True, ZERO)


def test_documents_carry_every_locked_pcr_with_its_value(verifier: Verifier) -> None:
    nsm = simulated()
    extended = nsm.extend_pcr(16, b"app config")
    nsm.lock_pcr(16)
    nsm.extend_pcr(17, b"not locked")  # unlocked PCRs are not attested
    pcrs = verifier.verify(nsm.attestation(), at=T0, policy=Policy.any_enclave_image()).document.pcrs
    assert sorted(pcrs) == list(range(17))
    assert pcrs[16] == extended
    nsm.lock_pcrs(32)
    assert len(parse_document(nsm.attestation()).pcrs) == 32


@pytest.mark.parametrize("options", [
    {"pcrs": {16: ZERO}}, {"pcrs": {-1: ZERO}}, {"pcrs": {0: bytes(32)}}, {"pcrs": {0: "00" * 48}},
    {"pcrs": {0: ZERO}, "debug": True}, {"module_id": ""}, {"module_id": "x" * 43}, {"module_id": "a\nb"},
])
def test_invalid_configuration_is_a_usage_error(options: dict[str, Any]) -> None:
    with pytest.raises(UsageError):
        SimulatedNsm(**options)


# --- the signing certificate is reused while it has comfortably long left --------------------------------


def test_one_leaf_signs_until_less_than_the_margin_is_left(verifier: Verifier) -> None:
    clock = Clock()
    nsm = SimulatedNsm(clock=clock)

    def leaf_of(document: bytes) -> bytes:
        return parse_document(document).certificate

    first = nsm.attestation()
    clock.now = T0 + timedelta(hours=3) - LEAF_REUSE_MARGIN - timedelta(seconds=1)
    second = nsm.attestation()
    assert leaf_of(second) == leaf_of(first)
    # Every document verifies at its own time, and for at least the margin after it.
    verifier.verify(second, at=clock.now + LEAF_REUSE_MARGIN, policy=Policy.any_enclave_image())

    clock.now += timedelta(seconds=2)
    third = nsm.attestation()
    assert leaf_of(third) != leaf_of(second)
    verifier.verify(third, at=clock.now, policy=Policy.any_enclave_image())

    clock.now = T0 - timedelta(days=1)  # a clock set back: the current leaf is not yet valid
    fourth = nsm.attestation()
    assert leaf_of(fourth) not in (leaf_of(first), leaf_of(third))
    verifier.verify(fourth, at=clock.now, policy=Policy.any_enclave_image())


# --- PCR semantics ---------------------------------------------------------------------------------------


def test_start_state_matches_a_real_nsm() -> None:
    nsm = simulated()
    assert [nsm.describe_pcr(index).locked for index in range(32)] == [True] * 16 + [False] * 16
    assert all(nsm.describe_pcr(index).data == ZERO for index in range(16, 32))
    assert nsm.describe_pcr(3).data == ZERO
    assert all(nsm.describe_pcr(index).data != ZERO for index in (0, 1, 2, 4))
    description = nsm.describe_nsm()
    assert (description.max_pcrs, description.locked_pcrs, description.digest) == (32, tuple(range(16)), "SHA384")
    assert description.version == "1.0.0"


def test_extend_is_sha384_of_old_value_and_data() -> None:
    nsm = simulated()
    expected = ZERO
    for data in (b"", b"one", b"\x00" * 1000):
        expected = hashlib.sha384(expected + data).digest()
        assert nsm.extend_pcr(31, data) == expected
    assert nsm.describe_pcr(31) == (False, expected)
    assert nsm.describe_pcr(30).data == ZERO  # neighbours untouched


def test_locking_one_pcr() -> None:
    nsm = simulated()
    value = nsm.extend_pcr(20, b"x")
    nsm.lock_pcr(20)
    assert nsm.describe_pcr(20) == (True, value)
    for call in (lambda: nsm.extend_pcr(20, b"y"), lambda: nsm.lock_pcr(20), lambda: nsm.lock_pcr(0),
                 lambda: nsm.extend_pcr(0, b"y")):
        with pytest.raises(NsmError) as caught:
            call()
        assert caught.value.code is ErrorCode.READ_ONLY_INDEX
    assert nsm.describe_pcr(20) == (True, value)
    assert 20 in nsm.describe_nsm().locked_pcrs


def test_locking_a_range() -> None:
    nsm = simulated()
    nsm.lock_pcrs(0)  # an empty range is fine and changes nothing
    nsm.lock_pcr(25)
    nsm.lock_pcrs(20)  # includes already locked PCRs: no error
    assert nsm.describe_nsm().locked_pcrs == (*range(20), 25)
    with pytest.raises(NsmError) as caught:
        nsm.lock_pcrs(33)
    assert caught.value.code is ErrorCode.INVALID_INDEX
    assert nsm.describe_nsm().locked_pcrs == (*range(20), 25)  # a refused range locks nothing
    nsm.lock_pcrs(32)
    assert nsm.describe_nsm().locked_pcrs == tuple(range(32))


@pytest.mark.parametrize("index", [32, 100, 65535])
def test_indexes_past_the_last_pcr_are_invalid(index: int) -> None:
    nsm = simulated()
    for call in (nsm.describe_pcr, nsm.lock_pcr, lambda i: nsm.extend_pcr(i, b"x")):
        with pytest.raises(NsmError) as caught:
            call(index)
        assert caught.value.code is ErrorCode.INVALID_INDEX


def test_get_random_gives_256_fresh_bytes() -> None:
    nsm = simulated()
    values = {nsm.get_random() for _ in range(8)}
    assert len(values) == 8
    assert all(len(value) == 256 for value in values)


def test_state_is_per_instance_and_threads_do_not_lose_extends() -> None:
    nsm = simulated()
    threads = [threading.Thread(target=lambda: [nsm.extend_pcr(16, b"x") for _ in range(25)]) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    expected = ZERO
    for _ in range(200):
        expected = hashlib.sha384(expected + b"x").digest()
    assert nsm.describe_pcr(16).data == expected
    assert simulated().describe_pcr(16).data == ZERO


# --- limits ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["user_data", "nonce", "public_key"])
def test_attestation_fields_over_1024_bytes_are_input_too_large(field: str) -> None:
    nsm = simulated()
    nsm.attestation(**{field: bytes(1024)})
    with pytest.raises(NsmInputTooLargeError) as caught:
        nsm.attestation(**{field: bytes(1025)})
    assert caught.value.code is ErrorCode.INPUT_TOO_LARGE


def extend_request_of_size(size: int) -> bytes:
    """An ExtendPCR request for PCR 16 encoding to exactly ``size`` bytes."""
    for data_size in range(size, 0, -1):
        request = _codec.encode("ExtendPCR", {"index": 16, "data": bytes(data_size)})
        if len(request) == size:
            return request
    raise AssertionError(size)


def test_requests_over_4096_bytes_are_input_too_large() -> None:
    nsm = simulated()
    assert "ExtendPCR" in cbor2.loads(nsm.handle(extend_request_of_size(4096)))
    assert error_code(nsm.handle(extend_request_of_size(4097))) == "InputTooLarge"
    with pytest.raises(NsmInputTooLargeError):
        nsm.extend_pcr(16, bytes(4096))


# --- the raw protocol: every request, every error code ---------------------------------------------------


@pytest.mark.parametrize(("request_", "answer"), [
    ("DescribeNSM", "DescribeNSM"),
    ("GetRandom", "GetRandom"),
    ({"DescribePCR": {"index": 0}}, "DescribePCR"),
    ({"ExtendPCR": {"index": 16, "data": b"x"}}, "ExtendPCR"),
    ({"LockPCR": {"index": 16}}, "LockPCR"),
    ({"LockPCRs": {"range": 16}}, "LockPCRs"),
    ({"Attestation": {"user_data": None, "nonce": None, "public_key": None}}, "Attestation"),
    ({"Attestation": {}}, "Attestation"),  # serde: absent Option fields are None
])
def test_every_request_type_gets_its_answer(request_: object, answer: str) -> None:
    response = cbor2.loads(simulated().handle(cbor2.dumps(request_)))
    if isinstance(response, str):
        assert response == answer  # unit variants come back as bare strings
    else:
        assert list(response) == [answer]


@pytest.mark.parametrize(("raw", "code"), [
    (b"", "InvalidArgument"),
    (b"\xff", "InvalidArgument"),
    (cbor2.dumps("GetRandom") + b"\x00", "InvalidArgument"),
    (b"\xa2aa\x01aa\x02", "InvalidArgument"),  # duplicate keys
    (cbor2.dumps({"DescribePCR": {"index": "0"}}), "InvalidArgument"),
    (cbor2.dumps({"DescribePCR": {"index": True}}), "InvalidArgument"),
    (cbor2.dumps({"DescribePCR": {"index": -1}}), "InvalidArgument"),
    (cbor2.dumps({"DescribePCR": {"index": 65536}}), "InvalidArgument"),
    (cbor2.dumps({"DescribePCR": {}}), "InvalidArgument"),
    (cbor2.dumps({"DescribePCR": {"index": 0, "extra": 1}}), "InvalidArgument"),
    (cbor2.dumps({"ExtendPCR": {"index": 16, "data": "text"}}), "InvalidArgument"),
    (cbor2.dumps({"Attestation": {"nonce": 5}}), "InvalidArgument"),
    (cbor2.dumps({"Attestation": None}), "InvalidArgument"),
    (cbor2.dumps({"GetRandom": {}}), "InvalidArgument"),
    (cbor2.dumps("DescribePCR"), "InvalidArgument"),
    (cbor2.dumps("Reboot"), "InvalidOperation"),
    (cbor2.dumps({"Sign": {"data": b"x"}}), "InvalidOperation"),
    (cbor2.dumps(["GetRandom"]), "InvalidOperation"),
    (cbor2.dumps({"GetRandom": None, "DescribeNSM": None}), "InvalidOperation"),
    (cbor2.dumps(7), "InvalidOperation"),
    (cbor2.dumps({"DescribePCR": {"index": 32}}), "InvalidIndex"),
    (cbor2.dumps({"LockPCRs": {"range": 33}}), "InvalidIndex"),
    (cbor2.dumps({"ExtendPCR": {"index": 0, "data": b"x"}}), "ReadOnlyIndex"),
    (cbor2.dumps({"LockPCR": {"index": 15}}), "ReadOnlyIndex"),
    (cbor2.dumps({"Attestation": {"nonce": bytes(1025)}}), "InputTooLarge"),
    (bytes(4097), "InputTooLarge"),
])
def test_error_codes(raw: bytes, code: str) -> None:
    assert error_code(simulated().handle(raw)) == code


@pytest.mark.parametrize("request_", [None, "GetRandom", 42, ["x"]])
def test_non_bytes_requests_get_an_error_response(request_: object) -> None:
    assert error_code(simulated().handle(request_)) == "InvalidArgument"


def test_an_internal_failure_is_an_internal_error_response(monkeypatch: pytest.MonkeyPatch) -> None:
    nsm = simulated()

    def broken(*_args: object) -> tuple[bytes, object]:
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(nsm, "_current_signer", broken)
    assert error_code(nsm.handle(_codec.encode("Attestation", {}))) == "InternalError"
    with pytest.raises(NsmError) as caught:
        nsm.attestation()
    assert caught.value.code is ErrorCode.INTERNAL_ERROR


_KNOWN = ["Attestation", "DescribePCR", "ExtendPCR", "LockPCR", "LockPCRs", "DescribeNSM", "GetRandom", "Error"]
_scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.binary(max_size=64)
            | st.text(max_size=16) | st.sampled_from([*_KNOWN, "index", "data", "range", "nonce"])
            | st.floats(allow_nan=True))
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4)
                       | st.dictionaries(st.sampled_from(["index", "data", "range", "nonce", "user_data",
                                                          "public_key", "x"]) | st.text(max_size=4), inner,
                                         max_size=4), max_leaves=12)
_requests = _values | st.builds(lambda name, body: {name: body}, st.sampled_from(_KNOWN), _values)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(raw=st.binary(max_size=300))
def test_garbage_bytes_get_an_answer_never_an_exception(raw: bytes) -> None:
    response = cbor2.loads(_fuzz_nsm.handle(raw))
    assert isinstance(response, str | dict)


@FUZZ
@given(request=_requests, cut=st.integers(min_value=0, max_value=8))
def test_cbor_shaped_garbage_gets_an_answer_never_an_exception(request: object, cut: int) -> None:
    raw = cbor2.dumps(request)
    for candidate in (raw, raw[: len(raw) - cut]):
        response = cbor2.loads(_fuzz_nsm.handle(candidate))
        if isinstance(response, dict) and "Error" in response:
            assert response["Error"] in {code.value for code in ErrorCode}
        else:
            assert isinstance(response, str | dict)


_fuzz_nsm = SimulatedNsm(clock=Clock())


def test_open_nsm_makes_a_simulated_nsm_with_options() -> None:
    with open_nsm("simulated", module_id="i-test") as nsm:
        assert isinstance(nsm, SimulatedNsm)
        assert nsm.describe_nsm().module_id == "i-test"
        assert "i-test" in repr(nsm)
    with pytest.raises(UsageError, match="unknown NSM kind"):
        open_nsm("hardware")  # type: ignore[arg-type]
