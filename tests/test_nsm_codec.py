"""The NSM's CBOR messages: what the client sends, how it reads answers, and the typed errors it raises.

A scripted transport stands in for the NSM, so each test sees the exact request bytes and chooses the answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import cbor2
import pytest

from nitrokit.enclave.nsm import (
    ErrorCode,
    Nsm,
    NsmDescription,
    NsmError,
    NsmInputTooLargeError,
    NsmResponseError,
    PcrState,
    _codec,
)
from nitrokit.errors import NitrokitError, UsageError

PCR = bytes(range(48))


class Scripted(Nsm):
    """An NSM whose answers are given in advance; it records every request."""

    def __init__(self, *answers: object) -> None:
        self.answers = list(answers)
        self.requests: list[bytes] = []

    def _exchange(self, request: bytes) -> bytes:
        self.requests.append(request)
        answer = self.answers.pop(0)
        return answer if isinstance(answer, bytes) else cbor2.dumps(answer)

    @property
    def sent(self) -> Any:
        (request,) = self.requests
        return cbor2.loads(request)


# --- requests: exactly as in docs/nsm.md, "The protocol" ------------------------------------------------


def test_attestation_request_sends_every_field_null_when_absent() -> None:
    nsm = Scripted({"Attestation": {"document": b"doc"}})
    assert nsm.attestation() == b"doc"
    assert nsm.sent == {"Attestation": {"user_data": None, "nonce": None, "public_key": None}}


def test_attestation_request_carries_the_given_bytes() -> None:
    nsm = Scripted({"Attestation": {"document": b"doc"}})
    nsm.attestation(user_data=b"u", nonce=bytearray(b"n"), public_key=memoryview(b"k"))  # type: ignore[arg-type]
    assert nsm.sent == {"Attestation": {"user_data": b"u", "nonce": b"n", "public_key": b"k"}}


def test_unit_variants_are_bare_text_strings() -> None:
    describe = {"DescribeNSM": {"version_major": 1, "version_minor": 2, "version_patch": 3, "module_id": "m",
                                "max_pcrs": 32, "locked_pcrs": [2, 0, 1], "digest": "SHA384"}}
    nsm = Scripted(describe, {"GetRandom": {"random": b"r" * 256}})
    assert nsm.describe_nsm() == NsmDescription(version_major=1, version_minor=2, version_patch=3, module_id="m",
                                                max_pcrs=32, locked_pcrs=(0, 1, 2), digest="SHA384")
    assert nsm.get_random() == b"r" * 256
    assert nsm.requests == [b"kDescribeNSM", b"iGetRandom"]


@pytest.mark.parametrize(("call", "request_", "answer", "result"), [
    (lambda n: n.describe_pcr(3), {"DescribePCR": {"index": 3}}, {"DescribePCR": {"lock": True, "data": PCR}},
     PcrState(locked=True, data=PCR)),
    (lambda n: n.extend_pcr(16, b"\x01"), {"ExtendPCR": {"index": 16, "data": b"\x01"}},
     {"ExtendPCR": {"data": PCR}}, PCR),
    (lambda n: n.lock_pcr(17), {"LockPCR": {"index": 17}}, "LockPCR", None),
    (lambda n: n.lock_pcrs(20), {"LockPCRs": {"range": 20}}, "LockPCRs", None),
], ids=["DescribePCR", "ExtendPCR", "LockPCR", "LockPCRs"])
def test_pcr_requests_and_answers(call: Any, request_: object, answer: object, result: object) -> None:
    nsm = Scripted(answer)
    assert call(nsm) == result
    assert nsm.sent == request_


def test_describe_pcr_result_unpacks_as_locked_and_data() -> None:
    locked, data = Scripted({"DescribePCR": {"lock": False, "data": PCR}}).describe_pcr(20)
    assert (locked, data) == (False, PCR)


@pytest.mark.parametrize("index", [-1, 65536, True, 3.0, "3", None])
def test_unencodable_indexes_are_usage_errors_and_nothing_is_sent(index: object) -> None:
    nsm = Scripted()
    calls: list[Any] = [nsm.describe_pcr, nsm.lock_pcr, nsm.lock_pcrs, lambda i: nsm.extend_pcr(i, b"")]
    for call in calls:
        with pytest.raises(UsageError):
            call(index)
    assert nsm.requests == []


def test_non_bytes_data_is_a_usage_error() -> None:
    nsm = Scripted()
    with pytest.raises(UsageError, match="data must be bytes"):
        nsm.extend_pcr(16, "text")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="nonce must be bytes"):
        nsm.attestation(nonce="0102")  # type: ignore[arg-type]
    assert nsm.requests == []


def test_indexes_the_nsm_must_judge_are_sent() -> None:
    # 32..65535 encode fine: whether they exist is the NSM's answer (InvalidIndex), not the client's guess.
    nsm = Scripted({"Error": "InvalidIndex"})
    with pytest.raises(NsmError) as caught:
        nsm.describe_pcr(65535)
    assert caught.value.code is ErrorCode.INVALID_INDEX
    assert nsm.sent == {"DescribePCR": {"index": 65535}}


# --- Error responses map to typed errors ----------------------------------------------------------------


@pytest.mark.parametrize("code", list(ErrorCode))
def test_every_error_code_raises_an_nsm_error_with_that_code(code: ErrorCode) -> None:
    nsm = Scripted({"Error": code.value})
    with pytest.raises(NsmError) as caught:
        nsm.extend_pcr(16, b"secret-ish data")
    error = caught.value
    assert error.code is code
    assert isinstance(error, NitrokitError)
    assert f"ExtendPCR (PCR 16) with {code.value}" in str(error)
    assert "secret-ish" not in str(error)
    expected = {ErrorCode.INPUT_TOO_LARGE: NsmInputTooLargeError,
                ErrorCode.INVALID_RESPONSE: NsmResponseError}.get(code, NsmError)
    assert type(error) is expected


@pytest.mark.parametrize("body", ["Success", "NoSuchCode", 3, None, {"code": "InternalError"}])
def test_unknown_or_malformed_error_codes_are_invalid_responses(body: object) -> None:
    with pytest.raises(NsmResponseError):
        Scripted({"Error": body}).get_random()


# --- strict response decoding ---------------------------------------------------------------------------

GOOD = {"DescribePCR": {"lock": True, "data": PCR}}


@pytest.mark.parametrize("answer", [
    b"",
    cbor2.dumps(GOOD) + b"\x00",                                        # trailing bytes
    cbor2.dumps(GOOD)[:-5],                                             # truncated
    b"\xa1kDescribePCR\xa2dlock\xf5dlock\xf4",                          # duplicate key
    {"DescribePCR": {"lock": True, "data": PCR, "extra": 1}},           # unknown field
    {"DescribePCR": {"data": PCR}},                                     # missing field
    {"DescribePCR": {"lock": 1, "data": PCR}},                          # integer for bool
    {"DescribePCR": {"lock": True, "data": PCR.hex()}},                 # text for bytes
    {"DescribePCR": [True, PCR]},                                       # array for the field map
    "DescribePCR",                                                      # a struct variant as a bare string
    {"ExtendPCR": {"data": PCR}},                                       # the answer to another request
    {"DescribePCR": {"lock": True, "data": PCR}, "Error": "x"},        # two variants
    [GOOD],
    42,
    {1: GOOD},
    cbor2.CBORTag(24, cbor2.dumps(GOOD)),
    {"DescribePCR": {"lock": True, "data": bytes(47)}},                 # not a digest length
    b"\x81" * 10 + b"\x00",                                             # deeper than any message
], ids=lambda a: repr(a)[:40])
def test_malformed_answers_are_response_errors(answer: object) -> None:
    with pytest.raises(NsmResponseError) as caught:
        Scripted(answer).describe_pcr(0)
    assert caught.value.code is ErrorCode.INVALID_RESPONSE


def test_unit_answer_as_a_map_is_refused() -> None:
    with pytest.raises(NsmResponseError, match="takes no fields"):
        Scripted({"LockPCR": {}}).lock_pcr(16)


def test_answers_over_the_response_buffer_are_refused() -> None:
    huge = cbor2.dumps({"GetRandom": {"random": bytes(_codec.RESPONSE_MAX_BYTES)}})
    with pytest.raises(NsmResponseError, match="over 12288"):
        Scripted(huge).get_random()


@pytest.mark.parametrize(("answer", "call"), [
    ({"Attestation": {"document": b""}}, lambda n: n.attestation()),
    ({"GetRandom": {"random": b""}}, lambda n: n.get_random()),
    ({"DescribeNSM": {"version_major": 1, "version_minor": 0, "version_patch": 0, "module_id": "m",
                      "max_pcrs": 32, "locked_pcrs": [0], "digest": "MD5"}}, lambda n: n.describe_nsm()),
    ({"DescribeNSM": {"version_major": 1, "version_minor": 0, "version_patch": 0, "module_id": "m",
                      "max_pcrs": 32, "locked_pcrs": [-1], "digest": "SHA384"}}, lambda n: n.describe_nsm()),
    ({"ExtendPCR": {"data": b""}}, lambda n: n.extend_pcr(16, b"x")),
], ids=["empty document", "no random bytes", "unknown digest", "negative locked PCR", "empty PCR value"])
def test_semantically_empty_answers_are_refused(answer: Mapping[str, Any], call: Any) -> None:
    with pytest.raises(NsmResponseError):
        call(Scripted(answer))


# --- the server side (what the simulator builds on) -----------------------------------------------------


def test_requests_round_trip_through_the_codec() -> None:
    for name, fields in [("DescribeNSM", None), ("GetRandom", None), ("LockPCRs", {"range": 3}),
                         ("ExtendPCR", {"index": 16, "data": b"x"})]:
        message = _codec.decode_request(_codec.encode(name, fields))
        assert message == (name, fields or {})
    partial = _codec.decode_request(cbor2.dumps({"Attestation": {"nonce": b"n"}}))
    assert partial.fields == {"user_data": None, "nonce": b"n", "public_key": None}


def test_request_limit_is_4096_bytes() -> None:
    assert _codec.REQUEST_MAX_BYTES == 4096
    with pytest.raises(NsmInputTooLargeError):
        _codec.decode_request(b"\x00" * 4097)


def test_error_encoding() -> None:
    assert cbor2.loads(_codec.encode_error(ErrorCode.READ_ONLY_INDEX)) == {"Error": "ReadOnlyIndex"}


def test_nesting_is_capped_before_any_shape_check() -> None:
    with pytest.raises(NsmResponseError, match="depth"):
        Scripted(b"\x81" * 10 + b"\x00").describe_pcr(0)
