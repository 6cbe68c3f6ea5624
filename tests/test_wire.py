"""The wire protocol: frames, message bodies, KMS request shapes, and the clients, without the parent."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import socket
import struct
import threading
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nitrokit.errors import UsageError
from nitrokit.wire import (
    GENERATE_RANDOM,
    MAX_FRAME_SIZE,
    PROTOCOL_VERSION,
    AsyncWireClient,
    ConnectionClosedError,
    ErrorCode,
    ErrorInfo,
    FrameTooLargeError,
    IdleTimeoutError,
    InvalidRequestError,
    InvalidResponseError,
    MalformedFrameError,
    ProtocolError,
    RemoteError,
    Request,
    Response,
    TcpAddress,
    TransportError,
    UnknownOperationError,
    UnsupportedVersionError,
    WireClient,
    WireError,
    WireTimeoutError,
    bound_address,
    decode_frame,
    decode_request,
    decode_response,
    encode_frame,
    encode_request,
    encode_response,
    frame_length,
    generate_random_request,
    listen,
    parse_generate_random_response,
    read_frame,
    recv_frame,
    send_frame,
)
from nitrokit.wire import errors as wire_errors
from nitrokit.wire.messages import MAX_ERROR_MESSAGE_LENGTH
from tests.conftest import REPO

DOC = b"\x84D\xa1\x01\x388\xa0" + bytes(range(256)) * 4  # stands in for a document: the protocol never parses it


def _body(**fields: object) -> bytes:
    base: dict[str, object] = {"version": 1, "id": "r1", "operation": "GenerateRandom",
                               "request": {"NumberOfBytes": 8}}
    base.update(fields)
    return json.dumps({k: v for k, v in base.items() if v is not _DROP}).encode()


_DROP = object()


# -- frames -----------------------------------------------------------------------------------------------------


def test_frame_round_trip_and_layout():
    frame = encode_frame(b"hello")
    assert frame == b"\x00\x00\x00\x05hello"
    assert decode_frame(frame) == b"hello"
    assert frame_length(frame[:4]) == 5


def test_frame_limits():
    assert frame_length(struct.pack(">I", MAX_FRAME_SIZE)) == MAX_FRAME_SIZE
    with pytest.raises(FrameTooLargeError) as info:
        frame_length(struct.pack(">I", MAX_FRAME_SIZE + 1))
    assert info.value.code == ErrorCode.FRAME_TOO_LARGE and info.value.size == MAX_FRAME_SIZE + 1
    with pytest.raises(FrameTooLargeError):
        frame_length(b"\xff\xff\xff\xff")
    with pytest.raises(FrameTooLargeError):
        encode_frame(b"x" * 11, max_size=10)
    with pytest.raises(MalformedFrameError, match="length is 0"):
        frame_length(b"\x00\x00\x00\x00")
    with pytest.raises(MalformedFrameError, match="header is 4 bytes"):
        frame_length(b"\x00\x01")
    with pytest.raises(UsageError):
        encode_frame(b"")


def test_decode_frame_refuses_truncated_and_trailing_bytes():
    frame = encode_frame(b"abc")
    with pytest.raises(MalformedFrameError, match="announces 3 body bytes but 2"):
        decode_frame(frame[:-1])
    with pytest.raises(MalformedFrameError, match="but 4 follow"):
        decode_frame(frame + b"x")


@settings(deadline=None)
@given(st.binary(max_size=64))
def test_random_bytes_as_a_frame_only_raise_protocol_errors(data):
    try:
        body = decode_frame(data, max_size=32)
    except ProtocolError:
        return
    assert encode_frame(body, max_size=32) == data


# -- request and response bodies --------------------------------------------------------------------------------


def test_request_round_trip():
    kms_json = generate_random_request(32, attestation_document=DOC, custom_key_store_id="cks-1")
    request = Request(operation="GenerateRandom", request=kms_json)
    body = encode_request(request)
    assert json.loads(body) == {"version": PROTOCOL_VERSION, "id": request.id, "operation": "GenerateRandom",
                                "request": kms_json}
    decoded = decode_request(body)
    assert decoded == request
    params = GENERATE_RANDOM.decode_request(decoded.request)
    assert params == {"NumberOfBytes": 32, "CustomKeyStoreId": "cks-1",
                      "Recipient": {"AttestationDocument": DOC, "KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256"}}


def test_blobs_are_standard_base64_as_in_the_kms_json_protocol():
    kms_json = generate_random_request(1, attestation_document=b"\xfb\xff\xfe")
    assert kms_json["Recipient"]["AttestationDocument"] == "+//+"
    result = parse_generate_random_response({"CiphertextForRecipient": base64.b64encode(b"\x00cms").decode()})
    assert result.ciphertext_for_recipient == b"\x00cms" and result.plaintext is None


def test_request_ids_are_fresh_and_bodies_stay_out_of_repr():
    first, second = (Request(operation="GenerateRandom", request={"NumberOfBytes": 1}) for _ in range(2))
    assert first.id != second.id
    secret = base64.b64encode(b"random bytes that are secret").decode()
    assert secret not in repr(Response(id="x", response={"Plaintext": secret}))
    assert secret not in repr(Request(operation="GenerateRandom", request={"x": secret}))
    result = parse_generate_random_response({"Plaintext": secret})
    assert result.plaintext == b"random bytes that are secret"
    assert "secret" not in repr(result)


@pytest.mark.parametrize("response", [
    Response(id="abc", response={"CiphertextForRecipient": "AAAA"}),
    Response(id="abc", error=ErrorInfo(code="ThrottlingException", message="Rate exceeded", retryable=True)),
    Response(id=None, error=ErrorInfo(code=ErrorCode.MALFORMED_FRAME, message="bad", retryable=False)),
])
def test_response_round_trip(response):
    assert decode_response(encode_response(response)) == response


def test_response_needs_exactly_one_of_response_and_error():
    with pytest.raises(UsageError):
        Response(id="a")
    with pytest.raises(UsageError):
        Response(id="a", response={}, error=ErrorInfo(ErrorCode.BUSY, "x"))


def test_long_error_messages_are_cut():
    body = encode_response(Response(id=None, error=ErrorInfo(ErrorCode.INTERNAL_ERROR, "x" * 5000)))
    assert len(decode_response(body).error.message) == MAX_ERROR_MESSAGE_LENGTH  # type: ignore[union-attr]


def test_encode_refuses_what_the_other_side_would_refuse():
    with pytest.raises(UsageError, match="request id"):
        encode_request(Request(operation="GenerateRandom", request={}, id="has space"))
    with pytest.raises(UsageError, match="not one of GenerateRandom"):
        encode_request(Request(operation="Encrypt", request={}))
    with pytest.raises(UsageError, match="error code"):
        encode_response(Response(id=None, error=ErrorInfo("bad code!", "x")))
    with pytest.raises(UsageError, match="JSON"):
        encode_request(Request(operation="GenerateRandom", request={"x": b"bytes"}))


@pytest.mark.parametrize(("body", "error", "fragment"), [
    (b"\xff\xfe{}", MalformedFrameError, "not UTF-8"),
    ('{"version":1}'.encode("utf-16"), MalformedFrameError, "not UTF-8"),
    (b"\xef\xbb\xbf" + _body(), MalformedFrameError, "not valid JSON"),
    (b"not json", MalformedFrameError, "not valid JSON"),
    (b'{"version":1,', MalformedFrameError, "not valid JSON"),
    (b"[1,2]", MalformedFrameError, "must be a JSON object"),
    (b'"text"', MalformedFrameError, "must be a JSON object"),
    (b'{"version":1,"version":1,"id":"a","operation":"GenerateRandom","request":{}}', MalformedFrameError,
     "duplicate key"),
    (b'{"version":NaN}', MalformedFrameError, "NaN is not allowed"),
    (b'{"version":1' + b',"x":' + b"9" * 5000 + b"}", MalformedFrameError, "not valid JSON"),
    (b'{"version":1,"request":' + b"[" * 100000 + b"]" * 100000 + b"}", MalformedFrameError, "nested too deeply"),
    (_body(version=_DROP), MalformedFrameError, "version must be an integer"),
    (_body(version="1"), MalformedFrameError, "version must be an integer"),
    (_body(version=True), MalformedFrameError, "version must be an integer"),
    (_body(version=1.0), MalformedFrameError, "version must be an integer"),
    (_body(version=2), UnsupportedVersionError, "protocol version 2 is not supported"),
    (_body(version=10**30), UnsupportedVersionError, "out of range"),
    (_body(extra=1), MalformedFrameError, "exactly the keys"),
    (_body(request=_DROP), MalformedFrameError, "exactly the keys"),
    (_body(id=_DROP), MalformedFrameError, "exactly the keys"),
    (_body(id=""), MalformedFrameError, "request id"),
    (_body(id="x" * 65), MalformedFrameError, "request id"),
    (_body(id="a\nb"), MalformedFrameError, "request id"),
    (_body(id=7), MalformedFrameError, "request id"),
    (_body(operation="Encrypt"), UnknownOperationError, "'Encrypt' is not one of GenerateRandom"),
    (_body(operation="generaterandom"), UnknownOperationError, "not one of"),
    (_body(operation=["GenerateRandom"]), MalformedFrameError, "operation must be a string"),
    (_body(request=[1]), MalformedFrameError, "request must be a JSON object"),
    (_body(request="{}"), MalformedFrameError, "request must be a JSON object"),
])
def test_malformed_requests_raise_typed_errors(body, error, fragment):
    with pytest.raises(error) as info:
        decode_request(body)
    assert fragment in str(info.value)
    assert type(info.value).code in {code.value for code in ErrorCode}


def test_protocol_errors_carry_the_request_id_when_it_was_readable():
    with pytest.raises(UnsupportedVersionError) as info:
        decode_request(_body(version=2, id="keep-me"))
    assert info.value.request_id == "keep-me"
    with pytest.raises(UnknownOperationError) as op_info:
        decode_request(_body(operation="Sign", id="op-1"))
    assert op_info.value.request_id == "op-1"
    with pytest.raises(MalformedFrameError) as bad:
        decode_request(b"{")
    assert bad.value.request_id is None


def test_unknown_operation_names_are_escaped_and_clipped():
    with pytest.raises(UnknownOperationError) as info:
        decode_request(_body(operation="\x1b[31m" + "A" * 500))
    message = str(info.value)
    assert "\x1b" not in message and len(message) < 200


@pytest.mark.parametrize(("obj", "fragment"), [
    ({"version": 1, "id": "a"}, "one of response/error"),
    ({"version": 1, "id": "a", "response": {}, "error": {}}, "one of response/error"),
    ({"version": 1, "id": "a", "response": []}, "response must be a JSON object"),
    ({"version": 1, "id": "a", "error": {"code": "X", "message": "m"}}, "exactly code, message and retryable"),
    ({"version": 1, "id": "a", "error": {"code": "", "message": "m", "retryable": True}}, "error code"),
    ({"version": 1, "id": "a", "error": {"code": "X", "message": 5, "retryable": True}}, "error message"),
    ({"version": 1, "id": "a", "error": {"code": "X", "message": "m" * 5000, "retryable": True}}, "error message"),
    ({"version": 1, "id": "a", "error": {"code": "X", "message": "m", "retryable": "yes"}}, "true or false"),
    ({"version": 1, "id": "bad id", "response": {}}, "response id"),
    ({"version": 3, "id": "a", "response": {}}, "version 3"),
])
def test_malformed_responses_raise_typed_errors(obj, fragment):
    with pytest.raises(ProtocolError, match=fragment):
        decode_response(json.dumps(obj).encode())


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
_KEYS = st.sampled_from(["version", "id", "operation", "request", "response", "error", "code", "message",
                         "retryable", "NumberOfBytes", "Recipient", "AttestationDocument", "Plaintext"])
_NEAR_MESSAGES = st.dictionaries(_KEYS, st.one_of(
    _JSON, st.just(1), st.just("GenerateRandom"), st.just("r1"),
    st.dictionaries(_KEYS, _JSON | st.just(8) | st.just("AAAA"), max_size=4)), max_size=6)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=256), _JSON.map(lambda v: json.dumps(v).encode()),
                 _NEAR_MESSAGES.map(lambda v: json.dumps(v).encode())))
def test_random_bodies_only_raise_protocol_errors(body):
    for decode in (decode_request, decode_response):
        try:
            decode(body)
        except ProtocolError as exc:
            assert str(exc)
            assert exc.code in {code.value for code in ErrorCode}


# -- KMS request shapes -----------------------------------------------------------------------------------------

_RECIPIENT = {"AttestationDocument": base64.b64encode(DOC).decode(), "KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256"}


@pytest.mark.parametrize(("request_json", "fragment"), [
    ({}, "NumberOfBytes is required"),
    ({"NumberOfBytes": 0}, "NumberOfBytes must be from 1 to 1024"),
    ({"NumberOfBytes": 1025}, "NumberOfBytes must be from 1 to 1024"),
    ({"NumberOfBytes": -1}, "from 1 to 1024"),
    ({"NumberOfBytes": "32"}, "NumberOfBytes must be an integer"),
    ({"NumberOfBytes": 32.0}, "must be an integer"),
    ({"NumberOfBytes": True}, "must be an integer"),
    ({"NumberOfBytes": None}, "NumberOfBytes must not be null"),
    ({"NumberOfBytes": 8, "CustomKeyStoreId": ""}, "CustomKeyStoreId must be 1 to 64 characters"),
    ({"NumberOfBytes": 8, "CustomKeyStoreId": "c" * 65}, "CustomKeyStoreId must be 1 to 64"),
    ({"NumberOfBytes": 8, "CustomKeyStoreId": 5}, "CustomKeyStoreId must be a string"),
    ({"NumberOfBytes": 8, "Recipient": "doc"}, "Recipient must be an object"),
    ({"NumberOfBytes": 8, "Recipient": {}}, "Recipient.AttestationDocument is required"),
    ({"NumberOfBytes": 8, "Recipient": {"AttestationDocument": _RECIPIENT["AttestationDocument"]}},
     "Recipient.KeyEncryptionAlgorithm is required"),
    ({"NumberOfBytes": 8, "Recipient": {**_RECIPIENT, "KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_1"}},
     "KeyEncryptionAlgorithm must be one of RSAES_OAEP_SHA_256"),
    ({"NumberOfBytes": 8, "Recipient": {**_RECIPIENT, "AttestationDocument": "not base64!"}},
     "AttestationDocument is not valid base64"),
    ({"NumberOfBytes": 8, "Recipient": {**_RECIPIENT, "AttestationDocument": "AAA"}}, "not valid base64"),
    ({"NumberOfBytes": 8, "Recipient": {**_RECIPIENT, "AttestationDocument": ""}}, "must be 1 to 262144 bytes"),
    ({"NumberOfBytes": 8, "Recipient": {**_RECIPIENT, "AttestationDocument": 5}}, "must be a base64 string"),
    ({"NumberOfBytes": 8, "Recipient": {**_RECIPIENT,
                                        "AttestationDocument": base64.b64encode(b"x" * 262145).decode()}},
     "must be 1 to 262144 bytes"),
    ({"NumberOfBytes": 8, "Recipient": {**_RECIPIENT, "AttestationDocument": "A" * 400000}},
     "must be at most 262144 bytes"),  # refused from the text's length, before decoding
    ({"NumberOfBytes": 8, "Recipient": {**_RECIPIENT, "Extra": 1}}, "Recipient.Extra is not a known member"),
    ({"NumberOfBytes": 8, "KeyId": "alias/x"}, "KeyId is not a known member"),
    # A peer's member name reaches the message escaped (no terminal control through an error).
    ({"NumberOfBytes": 8, "\x1b[2JVALID": 1}, "\\x1b[2JVALID is not a known member"),
])
def test_invalid_kms_requests_name_the_member(request_json, fragment):
    with pytest.raises(InvalidRequestError) as info:
        GENERATE_RANDOM.decode_request(request_json)
    assert fragment in str(info.value)
    assert info.value.code == ErrorCode.INVALID_REQUEST


def test_valid_kms_request_limits():
    assert GENERATE_RANDOM.decode_request({"NumberOfBytes": 1}) == {"NumberOfBytes": 1}
    big = base64.b64encode(b"x" * 262144).decode()
    params = GENERATE_RANDOM.decode_request({"NumberOfBytes": 1024, "CustomKeyStoreId": "c" * 64,
                                             "Recipient": {**_RECIPIENT, "AttestationDocument": big}})
    assert len(params["Recipient"]["AttestationDocument"]) == 262144
    # ... and a request with the largest document still fits in one frame.
    body = encode_request(Request(operation="GenerateRandom", request=GENERATE_RANDOM.encode_request(params)))
    assert len(body) < MAX_FRAME_SIZE


def test_client_side_request_builder_checks_its_arguments():
    with pytest.raises(UsageError, match="NumberOfBytes"):
        generate_random_request(0)
    with pytest.raises(UsageError, match="AttestationDocument must be bytes"):
        generate_random_request(8, attestation_document="text")  # type: ignore[arg-type]
    assert generate_random_request(8) == {"NumberOfBytes": 8}


@settings(deadline=None)
@given(_JSON)
def test_random_kms_requests_only_raise_invalid_request(value):
    with contextlib.suppress(InvalidRequestError):
        GENERATE_RANDOM.decode_request(value)


def test_response_shapes():
    boto_result = {"CiphertextForRecipient": b"\x30\x80cms", "ResponseMetadata": {"RequestId": "x"}, "New": 1}
    assert GENERATE_RANDOM.encode_response(boto_result) == {"CiphertextForRecipient": "MIBjbXM="}
    assert GENERATE_RANDOM.decode_response({"Plaintext": None, "CiphertextForRecipient": "MIBjbXM=", "Other": 1}) \
        == {"CiphertextForRecipient": b"\x30\x80cms"}
    with pytest.raises(InvalidResponseError, match="CiphertextForRecipient must be 1 to 6144 bytes"):
        GENERATE_RANDOM.encode_response({"CiphertextForRecipient": b"x" * 6145})
    with pytest.raises(InvalidResponseError, match="Plaintext must be bytes"):
        GENERATE_RANDOM.encode_response({"Plaintext": "text"})
    with pytest.raises(InvalidResponseError, match="not valid base64"):
        parse_generate_random_response({"CiphertextForRecipient": "%%%"})
    with pytest.raises(InvalidResponseError, match="must be an object"):
        parse_generate_random_response([])


# -- framing over real sockets ----------------------------------------------------------------------------------


def test_blocking_frames_over_a_socket_pair():
    left, right = socket.socketpair()
    with left, right:
        send_frame(left, b"one", timeout=1)
        send_frame(left, b"two", timeout=1)
        assert recv_frame(right, timeout=1) == b"one"
        assert recv_frame(right, timeout=1) == b"two"


def test_blocking_read_times_out_with_a_typed_error():
    left, right = socket.socketpair()
    with left, right:
        left.sendall(b"\x00\x00\x00\x05ab")  # a frame that never completes
        with pytest.raises(WireTimeoutError) as info:
            recv_frame(right, timeout=0.2)
        assert info.value.retryable and isinstance(info.value, TransportError)


def test_blocking_read_tells_a_clean_close_from_a_cut_frame():
    left, right = socket.socketpair()
    with right:
        left.close()
        with pytest.raises(ConnectionClosedError) as info:
            recv_frame(right, timeout=1)
        assert info.value.clean
    left, right = socket.socketpair()
    with right:
        left.sendall(b"\x00\x00\x00\x05ab")
        left.close()
        with pytest.raises(ConnectionClosedError, match="middle of a frame") as cut:
            recv_frame(right, timeout=1)
        assert not cut.value.clean


def test_oversized_prefix_is_refused_without_waiting_for_the_body():
    left, right = socket.socketpair()
    with left, right:
        left.sendall(struct.pack(">I", 1000))  # and nothing more: refusing must not wait for the body
        with pytest.raises(FrameTooLargeError):
            recv_frame(right, timeout=30, max_size=999)


def _run(coro_factory: Callable[[], object]) -> object:
    return asyncio.run(coro_factory())  # type: ignore[arg-type]


def test_async_read_idle_timeout_consumes_nothing_and_frame_timeout_counts_from_the_first_byte():
    async def main() -> None:
        reader = asyncio.StreamReader()
        with pytest.raises(IdleTimeoutError):
            await read_frame(reader, timeout=5, idle_timeout=0.05)
        reader.feed_data(b"\x00\x00\x00\x03ab")
        with pytest.raises(WireTimeoutError, match="of its first byte") as info:
            await read_frame(reader, timeout=0.05, idle_timeout=5)
        assert not isinstance(info.value, IdleTimeoutError)
        reader = asyncio.StreamReader()
        reader.feed_data(b"\x00\x00\x00\x03abc\x00")
        assert await read_frame(reader, timeout=1, idle_timeout=1) == b"abc"
        reader.feed_data(b"\x00\x00\x02xy")
        assert await read_frame(reader, timeout=1) == b"xy"
        reader.feed_eof()
        with pytest.raises(ConnectionClosedError) as closed:
            await read_frame(reader, timeout=1)
        assert closed.value.clean
        reader = asyncio.StreamReader()
        reader.feed_data(b"\x00\x08\x00\x01")
        with pytest.raises(FrameTooLargeError):
            await read_frame(reader, timeout=1, max_size=MAX_FRAME_SIZE)
        reader = asyncio.StreamReader()
        reader.feed_data(b"\x00\x00\x00\x09abc")
        reader.feed_eof()
        with pytest.raises(ConnectionClosedError, match="middle") as cut:
            await read_frame(reader, timeout=1)
        assert not cut.value.clean

    _run(main)


# -- clients against a scripted server --------------------------------------------------------------------------


class _ScriptedServer:
    """Answers each request frame with whatever ``answer(request_body) -> bytes | None`` says (None: close)."""

    def __init__(self, tmp_path, answer: Callable[[bytes], bytes | None], *, close_after: int = 0) -> None:
        self.address = f"unix://{tmp_path}/scripted.sock"
        self.answer = answer
        self.close_after = close_after
        self.connections = 0
        self.closed = threading.Event()  # set each time the server has closed a connection
        self._sock = listen(self.address)
        self._sock.setblocking(True)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                served = 0
                while True:
                    try:
                        body = recv_frame(conn, timeout=5)
                    except WireError:
                        break
                    reply = self.answer(body)
                    if reply is None:
                        break
                    conn.sendall(reply)
                    served += 1
                    if self.close_after and served >= self.close_after:
                        break
            self.closed.set()

    def close(self) -> None:
        self._sock.close()


def _ok(body: bytes) -> bytes:
    request = decode_request(body)
    return encode_frame(encode_response(Response(id=request.id, response={"Plaintext": "AAAA"})))


def test_client_call_and_reconnect_after_the_server_closed(tmp_path):
    server = _ScriptedServer(tmp_path, _ok, close_after=1)
    try:
        with WireClient(server.address, timeout=5) as client:
            assert client.call("GenerateRandom", {"NumberOfBytes": 3}) == {"Plaintext": "AAAA"}
            assert server.closed.wait(5)
            assert client.call("GenerateRandom", {"NumberOfBytes": 3}) == {"Plaintext": "AAAA"}
        assert server.connections == 2  # the closed connection was noticed and replaced, no error surfaced
    finally:
        server.close()


def test_client_raises_remote_error_with_code_and_retryable(tmp_path):
    def throttled(body: bytes) -> bytes:
        request = decode_request(body)
        error = ErrorInfo("ThrottlingException", "Rate exceeded", retryable=True)
        return encode_frame(encode_response(Response(id=request.id, error=error)))

    server = _ScriptedServer(tmp_path, throttled)
    try:
        with pytest.raises(RemoteError) as info:
            WireClient(server.address).call("GenerateRandom", {"NumberOfBytes": 3})
        assert info.value.code == "ThrottlingException" and info.value.retryable
        assert info.value.remote_message == "Rate exceeded"
        assert info.value.request_id is not None
    finally:
        server.close()


@pytest.mark.parametrize(("reply", "error"), [
    (lambda req: encode_frame(encode_response(Response(id="other", response={}))), MalformedFrameError),
    (lambda req: encode_frame(encode_response(Response(id=None, response={}))), MalformedFrameError),
    (lambda req: encode_frame(b"garbage"), MalformedFrameError),
    (lambda req: b"\x00\x00\x00\x00", MalformedFrameError),
    (lambda req: struct.pack(">I", MAX_FRAME_SIZE + 1), FrameTooLargeError),
    (lambda req: None, ConnectionClosedError),
    (lambda req: b"\x00\x00\x00\x10abc", ConnectionClosedError),
])
def test_client_refuses_bad_answers_with_typed_errors(tmp_path, reply, error):
    server = _ScriptedServer(tmp_path, reply, close_after=1)
    try:
        client = WireClient(server.address, timeout=5)
        with pytest.raises(error):
            client.call("GenerateRandom", {"NumberOfBytes": 3})
        assert client._sock is None  # the connection was dropped, not reused out of step
    finally:
        server.close()


def test_client_times_out_waiting_for_an_answer(tmp_path):
    gate = threading.Event()

    def stall(body: bytes) -> bytes | None:
        gate.wait(5)
        return None

    server = _ScriptedServer(tmp_path, stall)
    try:
        with pytest.raises(WireTimeoutError):
            WireClient(server.address, timeout=0.2).call("GenerateRandom", {"NumberOfBytes": 3})
    finally:
        gate.set()
        server.close()


def test_client_refuses_an_oversized_request_before_connecting():
    client = WireClient("unix:///nonexistent/never.sock", max_frame_size=1024)
    with pytest.raises(FrameTooLargeError):
        client.call("GenerateRandom", {"NumberOfBytes": 1, "Pad": "x" * 2000})


def test_async_client(tmp_path):
    server = _ScriptedServer(tmp_path, _ok, close_after=1)

    async def main() -> list[dict[str, object]]:
        async with AsyncWireClient(server.address, timeout=5) as client:
            first = await client.call("GenerateRandom", {"NumberOfBytes": 3})
            assert await asyncio.to_thread(server.closed.wait, 5)
            await asyncio.sleep(0.01)  # let the event loop see the end of the stream
            second = await client.call("GenerateRandom", {"NumberOfBytes": 3})
        return [first, second]

    try:
        assert asyncio.run(main()) == [{"Plaintext": "AAAA"}] * 2
    finally:
        server.close()


def test_both_clients_take_another_services_operations(tmp_path):
    # The enclave service's Attest is not a KMS operation: a client must be told it may send it.
    from nitrokit.wire.service import SERVICE_OPERATIONS, attest_request

    seen: list[str] = []

    def attest(body: bytes) -> bytes:
        request = decode_request(body, operations=SERVICE_OPERATIONS)
        seen.append(request.operation)
        return encode_frame(encode_response(Response(id=request.id, response={"AttestationDocument": "AAAA"})))

    server = _ScriptedServer(tmp_path, attest)

    async def main() -> dict[str, object]:
        async with AsyncWireClient(server.address, timeout=5, operations=SERVICE_OPERATIONS) as client:
            assert client.operations is SERVICE_OPERATIONS
            return await client.call("Attest", attest_request(b"nonce"))

    async def refused() -> None:
        async with AsyncWireClient(server.address, timeout=5) as client:  # the default: KMS operations only
            await client.call("Attest", attest_request(b"nonce"))

    try:
        assert asyncio.run(main()) == {"AttestationDocument": "AAAA"}
        with WireClient(server.address, timeout=5, operations=SERVICE_OPERATIONS) as client:
            assert client.call("Attest", attest_request(b"nonce")) == {"AttestationDocument": "AAAA"}
        with pytest.raises(UsageError, match="'Attest' is not one of"):
            asyncio.run(refused())
        assert seen == ["Attest", "Attest"]  # the refused call was stopped before anything was sent
    finally:
        server.close()


def test_tcp_listen_for_clients():
    sock = listen("tcp://127.0.0.1:0")
    with sock:
        address = bound_address(sock, "tcp://127.0.0.1:0")
        assert isinstance(address, TcpAddress) and address.port == sock.getsockname()[1]


def test_the_error_codes_are_the_ones_docs_protocol_md_documents():
    # Code and tests use the enum, not the strings: this pins the enum to the specification, once.
    table = (REPO / "docs" / "protocol.md").read_text().split("## Error codes", 1)[1]
    documented = set(re.findall(r"^\| `([A-Za-z]+)` \|", table, flags=re.MULTILINE))
    assert documented == {code.value for code in ErrorCode}
    protocol_errors = [c for c in vars(wire_errors).values() if isinstance(c, type) and issubclass(c, ProtocolError)]
    assert protocol_errors and all(isinstance(c.code, ErrorCode) for c in protocol_errors)
