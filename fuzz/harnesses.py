"""Fuzz targets: one ``target_<name>(data: bytes) -> None`` per parser, decoder or request handler.

Each target feeds ``data`` to the code under test and lets nitrokit's typed errors
(:class:`~nitrokit.errors.NitrokitError` and its subclasses) pass silently: those are the documented answer to bad
input. Anything else that escapes (``KeyError``, ``TypeError``, ``RecursionError``, ...) is a finding, and so is
a broken invariant, raised as :class:`FuzzFinding`: a decoded message that does not decode to itself again once
re-encoded, or a simulated KMS that answers a 500 for an unexpected exception or returns an envelope that does
not open to the requested number of bytes.

The targets (:data:`TARGETS`):

=====================  ==================================================================================
attestation_parse      ``parse_document(data)``
attestation_verify     ``Verifier(root=fixture root).verify(data, at=FIXED_AT, max_age=..., policy=POLICY)``
attestation_signed     ``data`` is a payload, COSE-signed here with the fuzz leaf key, then verified as above,
                       so mutated payloads get past the signature to the chain, time and policy steps
cms_parse              ``nitrokit.cms.parse_enveloped_data(data)``
cms_decrypt            ``nitrokit.cms.decrypt(data, fuzz key)`` (the seeds are envelopes for that key)
wire_request           a request body: ``decode_request``, the operation's ``decode_request``, then both
                       re-encoded and decoded again (the same message must come back)
wire_response          a response body: ``decode_response``, ``parse_generate_random_response``, round trip
wire_stream            the parent's side of a connection: bytes read frame by frame (``read_frame`` on an
                       asyncio stream, and ``decode_frame``), each body decoded as above
kms_request            a GenerateRandom JSON body, SigV4-signed here, through the simulated KMS's handler
kms_http               raw HTTP/1.1 bytes through the simulated KMS's HTTP request handler (no socket)
tunnel_allowlist       tunnel mode's allow-list file (vsock-proxy's YAML subset), as text
tunnel_dns             a DNS answer to the tunnel's A or AAAA question: header check, records, CNAME chain
tunnel_http            the bytes of a KMS answer as the enclave's tunnel client reads them from TLS (status
                       line, headers, Content-Length body, up to 4 answers on one connection), each then read
                       as KMS's JSON or error
=====================  ==================================================================================

Placeholders keep the committed corpora valid as the calendar moves: in ``kms_request`` bodies ``@DOC@``,
``@DOC-NOKEY@`` and ``@DOC-DEBUG@`` become the base64 of an attestation document made when the harness starts
(with the fuzz RSA key, without a public key, in debug mode); in ``kms_http`` requests ``@AMZDATE@`` and
``@DATE@`` become the current SigV4 timestamp and date.

Everything under test is imported at the top of this module: fuzz/run.py imports it inside
``atheris.instrument_imports``, and only modules imported there get coverage feedback.

The keys under ``fuzz/keys`` are TEST KEYS made by ``fuzz/make_seeds.py``: published, protecting nothing.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import http.client
import io
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from nitrokit import cms
from nitrokit.attestation import Policy, Verifier, parse_document
from nitrokit.enclave import _https, tunnel
from nitrokit.errors import NitrokitError
from nitrokit.kms import DEFAULT_ACCESS_KEY, CustomKeyStore, KmsSimConfig
from nitrokit.kms._service import KmsService
from nitrokit.kms.limits import DEFAULT_MAX_BODY_BYTES, DEFAULT_SOCKET_TIMEOUT, REQUEST_DEADLINE
from nitrokit.kms.server import _Handler
from nitrokit.parent import _allowlist, _dns
from nitrokit.testing import build_document, fixture_pki
from nitrokit.testing.documents import default_pcrs, sign_payload
from nitrokit.wire import (
    OPERATIONS,
    ConnectionClosedError,
    InvalidRequestError,
    ProtocolError,
    Request,
    decode_frame,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
    parse_generate_random_response,
    read_frame,
)
from nitrokit.wire.address import parse_address
from nitrokit.wire.kms import MAX_KMS_ANSWER_BYTES
from nitrokit.wire.messages import MAX_ERROR_MESSAGE_LENGTH

__all__ = [
    "CORPUS_FILTERS",
    "FIXED_AT",
    "KEYS",
    "NONCE",
    "POLICY",
    "TARGETS",
    "FuzzFinding",
    "cms_key",
    "leaf",
    "target_attestation_parse",
    "target_attestation_signed",
    "target_attestation_verify",
    "target_cms_decrypt",
    "target_cms_parse",
    "target_kms_http",
    "target_kms_request",
    "target_tunnel_allowlist",
    "target_tunnel_dns",
    "target_tunnel_http",
    "target_wire_request",
    "target_wire_response",
    "target_wire_stream",
]

KEYS = Path(__file__).resolve().parent / "keys"
#: Every attestation target verifies at this instant; the fuzz leaf certificate is valid around it.
FIXED_AT = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
NONCE = b"nitrokit-fuzz-nonce"
#: What the attestation targets ask of a document, so the policy step runs too (the first seed satisfies it).
POLICY = Policy(pcrs={0: default_pcrs()[0], 3: default_pcrs()[3]}, nonce=NONCE)
MAX_AGE = timedelta(minutes=10)
#: The most frames ``wire_request`` reads from one input (a connection's worth).
MAX_FRAMES = 8
KMS_HOST = "kms.fuzz.invalid"
KMS_TARGET = "TrentService.GenerateRandom"


class FuzzFinding(AssertionError):
    """An invariant the code under test should keep was broken (not an exception it raised itself)."""


def _typed_errors_allowed() -> contextlib.suppress:
    """The documented answer to bad input: silence it, and let everything else through."""
    return contextlib.suppress(NitrokitError)


# -- test keys (made once by fuzz/make_seeds.py, committed) ------------------------------------------------------


@functools.cache
def cms_key() -> rsa.RSAPrivateKey:
    """The fuzz RSA-2048 TEST key: the cms_decrypt seeds are envelopes for it, and fuzz documents carry it."""
    key = serialization.load_pem_private_key((KEYS / "cms-rsa2048.key.pem").read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


@functools.cache
def leaf() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """The fuzz signing certificate (issued by the fixture instance CA, valid around FIXED_AT) and its TEST key."""
    cert = x509.load_pem_x509_certificate((KEYS / "leaf.pem").read_bytes())
    key = serialization.load_pem_private_key((KEYS / "leaf.key.pem").read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return cert, key


def cms_public_key_der() -> bytes:
    return cms_key().public_key().public_bytes(serialization.Encoding.DER,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)


# -- attestation -------------------------------------------------------------------------------------------------


@functools.cache
def _verifier() -> Verifier:
    return Verifier(root=fixture_pki().root)


def target_attestation_parse(data: bytes) -> None:
    with _typed_errors_allowed():
        parse_document(data)


def target_attestation_verify(data: bytes) -> None:
    with _typed_errors_allowed():
        _verifier().verify(data, at=FIXED_AT, max_age=MAX_AGE, policy=POLICY)


def target_attestation_signed(data: bytes) -> None:
    _cert, key = leaf()
    document = sign_payload(data, key)
    with _typed_errors_allowed():
        _verifier().verify(document, at=FIXED_AT, max_age=MAX_AGE, policy=POLICY)


# -- CMS ---------------------------------------------------------------------------------------------------------


def target_cms_parse(data: bytes) -> None:
    with _typed_errors_allowed():
        cms.parse_enveloped_data(data)


def target_cms_decrypt(data: bytes) -> None:
    with _typed_errors_allowed():
        cms.decrypt(data, cms_key())


# -- wire protocol -----------------------------------------------------------------------------------------------


@functools.cache
def _loop() -> asyncio.AbstractEventLoop:
    return asyncio.new_event_loop()


async def _serve_stream(data: bytes) -> None:
    """What the parent does with the bytes of one connection, minus KMS: read frames, decode each request."""
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    for _ in range(MAX_FRAMES):
        try:
            body = await read_frame(reader, timeout=5.0)
        except ConnectionClosedError as exc:
            if exc.clean:
                return
            raise
        try:
            request = decode_request(body)
        except ProtocolError:
            return  # the parent answers with the error's code and closes the connection
        try:
            params = OPERATIONS[request.operation].decode_request(request.request)
        except InvalidRequestError:
            continue  # the parent answers InvalidRequest and reads the next frame
        _check_request_round_trip(request, params)


def _check_request_round_trip(request: Request, params: dict[str, Any]) -> None:
    """What was decoded encodes again, to the same message (the encoders refuse nothing the decoders accept)."""
    operation = OPERATIONS[request.operation]
    try:
        again = decode_request(encode_request(request))
        params_again = operation.decode_request(operation.encode_request(params))
    except NitrokitError as exc:
        raise FuzzFinding(f"a decoded request does not encode again: {type(exc).__name__}: {exc}") from exc
    if again != request:
        raise FuzzFinding(f"request does not survive encode/decode: {request!r} -> {again!r}")
    if params_again != params:
        raise FuzzFinding(f"{operation.name} params do not survive encode_request/decode_request")


def target_wire_request(data: bytes) -> None:
    try:
        request = decode_request(data)
        params = OPERATIONS[request.operation].decode_request(request.request)
    except NitrokitError:
        return
    _check_request_round_trip(request, params)


def target_wire_response(data: bytes) -> None:
    try:
        response = decode_response(data)
        if response.response is not None:
            parse_generate_random_response(response.response)
    except NitrokitError:
        return
    if response.error is not None and len(response.error.message) > MAX_ERROR_MESSAGE_LENGTH:
        return  # longer messages are cut when encoded, by design
    try:
        again = decode_response(encode_response(response))
    except NitrokitError as exc:
        raise FuzzFinding(f"a decoded response does not encode again: {type(exc).__name__}: {exc}") from exc
    if again != response:
        raise FuzzFinding(f"response does not survive encode/decode: {response!r} -> {again!r}")


def target_wire_stream(data: bytes) -> None:
    with _typed_errors_allowed():
        decode_frame(data)
    with _typed_errors_allowed():
        _loop().run_until_complete(_serve_stream(data))


# -- simulated KMS -----------------------------------------------------------------------------------------------


class _Unexpected(logging.Handler):
    """Collects the exceptions the KMS service logs when it turns an unexpected error into a 500."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.caught: list[BaseException] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[1] is not None:
            self.caught.append(record.exc_info[1])


@dataclass(frozen=True)
class _Kms:
    service: KmsService
    placeholders: dict[bytes, bytes]


@contextlib.contextmanager
def _no_unexpected_errors() -> Iterator[None]:
    """Raise FuzzFinding if the KMS service logged an unexpected exception (it answers those with a 500).

    The handler is attached for the one call only, so nothing else in the process is affected.
    """
    kms_logger = logging.getLogger("nitrokit.kms_sim")
    unexpected = _Unexpected()
    kms_logger.addHandler(unexpected)
    try:
        yield
    finally:
        kms_logger.removeHandler(unexpected)
    if unexpected.caught:
        error = unexpected.caught[0]
        raise FuzzFinding(f"the simulated KMS answered 500 for an unexpected {type(error).__name__}: {error}") \
            from error


@functools.cache
def _kms() -> _Kms:
    config = KmsSimConfig(custom_key_stores=(
        CustomKeyStore(id="cks-1234567890abcdef0"),
        CustomKeyStore(id="cks-external", type="EXTERNAL_KEY_STORE"),
        CustomKeyStore(id="cks-disconnected", connection_state="DISCONNECTED"),
    ))
    # The simulated KMS verifies Recipient documents at the current time, so they are made now, not stored.
    now = datetime.now(UTC).replace(microsecond=0)
    signer = fixture_pki().issue_leaf(not_before=now - timedelta(minutes=1), lifetime=timedelta(days=2))
    spki = cms_public_key_der()
    documents = {
        b"@DOC@": build_document(at=now, signer=signer, public_key=spki, nonce=NONCE),
        b"@DOC-NOKEY@": build_document(at=now, signer=signer),
        b"@DOC-DEBUG@": build_document(at=now, signer=signer, public_key=spki,
                                       pcrs=dict.fromkeys(range(16), bytes(48))),
    }
    placeholders = {name: base64.b64encode(doc) for name, doc in documents.items()}
    return _Kms(service=KmsService(config), placeholders=placeholders)


def _substitute(data: bytes, placeholders: dict[bytes, bytes]) -> bytes:
    if b"@" in data:
        for name, value in placeholders.items():
            data = data.replace(name, value)
    return data


def _signed_headers(body: bytes) -> http.client.HTTPMessage:
    request = AWSRequest(method="POST", url=f"http://{KMS_HOST}/", data=body, headers={
        "Host": KMS_HOST, "Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": KMS_TARGET})
    credentials = Credentials(DEFAULT_ACCESS_KEY.access_key_id, DEFAULT_ACCESS_KEY.secret_access_key)
    SigV4Auth(credentials, "kms", "us-east-1").add_auth(request)
    headers = http.client.HTTPMessage()
    for name, value in request.headers.items():
        headers[name] = value
    return headers


def target_kms_request(data: bytes) -> None:
    kms = _kms()
    body = _substitute(data, kms.placeholders)
    headers = _signed_headers(body)
    with _no_unexpected_errors():
        answer = kms.service.handle(method="POST", path="/", headers=headers, body=body)
    if answer.status >= 500:
        raise FuzzFinding(f"status {answer.status} without injected faults: {answer.body[:200]!r}")
    result = json.loads(answer.body)
    if answer.status != 200:
        if not isinstance(result.get("__type"), str):
            raise FuzzFinding(f"error answer without __type: {answer.body[:200]!r}")
        return
    # A 200 means the request was valid: the answer must hold exactly the bytes asked for.
    count = json.loads(body)["NumberOfBytes"]
    if "CiphertextForRecipient" in result:
        plaintext = cms.decrypt(base64.b64decode(result["CiphertextForRecipient"]), cms_key())
    else:
        plaintext = base64.b64decode(result["Plaintext"])
    if len(plaintext) != count:
        raise FuzzFinding(f"asked for {count} bytes, got {len(plaintext)}")


class _Connection:
    """Just enough of a socket for http.server's request handler: input from bytes, output to a buffer."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self.sent = bytearray()

    def settimeout(self, timeout: float | None) -> None:
        pass

    def setsockopt(self, *args: object) -> None:
        pass

    def makefile(self, mode: str, buffering: int = -1) -> io.BufferedReader:
        assert mode == "rb", mode
        return io.BufferedReader(io.BytesIO(self._data))

    def sendall(self, data: bytes) -> None:
        self.sent += data


@functools.cache
def _fake_server() -> Any:
    return SimpleNamespace(service=_kms().service, socket_timeout=DEFAULT_SOCKET_TIMEOUT,
                           request_deadline=REQUEST_DEADLINE, max_body_bytes=DEFAULT_MAX_BODY_BYTES)


def target_kms_http(data: bytes) -> None:
    now = datetime.now(UTC)
    data = _substitute(data, {b"@AMZDATE@": now.strftime("%Y%m%dT%H%M%SZ").encode(),
                              b"@DATE@": now.strftime("%Y%m%d").encode()})
    connection = _Connection(data)
    # BaseRequestHandler handles the whole connection (keep-alive requests included) in its constructor.
    with _no_unexpected_errors():
        _Handler(cast(Any, connection), ("127.0.0.1", 40000), _fake_server())
    for line in bytes(connection.sent).split(b"\r\n"):
        if line.startswith(b"HTTP/1.1 500"):  # (501 and 505 are http.server's answers to odd request lines)
            raise FuzzFinding(f"status line {line[:64]!r} without injected faults")


def target_tunnel_allowlist(data: bytes) -> None:
    with _typed_errors_allowed():
        allowed = _allowlist.parse_allow_list(data.decode("utf-8", "surrogateescape"), source="fuzz")
        if not allowed.entries:
            raise FuzzFinding("an allow-list with no entries was accepted")
        for target in allowed.entries:
            if not allowed.allows(str(target.host), target.port):
                raise FuzzFinding(f"{target} is on the list but not allowed")


#: The question every tunnel_dns input answers (the seeds are answers to it): A, then AAAA, for this name.
DNS_NAME = "kms.us-east-1.amazonaws.com"
DNS_ID = 0x4E4B


def target_tunnel_dns(data: bytes) -> None:
    for kind in (1, 28):
        question = _dns._encode_name(DNS_NAME) + kind.to_bytes(2, "big") + b"\x00\x01"
        # The id and the question's type are the input's own: let each kind's pass reach the records.
        data = DNS_ID.to_bytes(2, "big") + data[2:]
        if _dns._check_header(data, DNS_ID, question) is None:
            continue
        with _typed_errors_allowed():
            addresses, ttl = _dns._addresses(data, DNS_NAME, kind)
            if not addresses or ttl < 0:
                raise FuzzFinding(f"an answer with {len(addresses)} addresses and TTL {ttl}")


class _AnswerSocket:
    """What the tunnel client reads an answer from, minus TLS: the input, in reads of up to 4 KiB."""

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)

    def settimeout(self, _timeout: float | None) -> None:
        pass

    def recv(self, size: int) -> bytes:
        chunk, self._data = bytes(self._data[:min(size, 4096)]), self._data[min(size, 4096):]
        return chunk


def target_tunnel_http(data: bytes) -> None:
    connection = _https.HttpsConnection(parse_address("unix:///fuzz"), host="kms.fuzz.invalid",
                                        context=cast(Any, None), connect_timeout=1.0, timeout=5.0,
                                        max_body=MAX_KMS_ANSWER_BYTES)
    sock = cast(Any, _AnswerSocket(data))
    for _ in range(4):  # answers kept alive on one connection
        try:
            answer, keep = connection._read_answer(sock, _https._Deadline(5.0))
        except NitrokitError:
            return
        if len(answer.body) > MAX_KMS_ANSWER_BYTES:
            raise FuzzFinding(f"a body of {len(answer.body)} bytes past the cap")
        with _typed_errors_allowed():
            tunnel._kms_answer(answer)
        if not keep:
            return


def _gets_past_parsing(document: bytes) -> bool:
    try:
        parse_document(document)
    except NitrokitError:
        return False
    return True


#: What a merged corpus keeps, for targets whose inputs are large: the verify targets keep only inputs that get
#: past parsing (attestation_parse has the parser to itself), so the committed corpora stay small.
CORPUS_FILTERS: dict[str, Callable[[bytes], bool]] = {
    "attestation_verify": _gets_past_parsing,
    "attestation_signed": lambda payload: _gets_past_parsing(sign_payload(payload, leaf()[1])),
}

#: name -> target, in the order docs/fuzzing.md lists them.
TARGETS: dict[str, Callable[[bytes], None]] = {
    "attestation_parse": target_attestation_parse,
    "attestation_verify": target_attestation_verify,
    "attestation_signed": target_attestation_signed,
    "cms_parse": target_cms_parse,
    "cms_decrypt": target_cms_decrypt,
    "wire_request": target_wire_request,
    "wire_response": target_wire_response,
    "wire_stream": target_wire_stream,
    "kms_request": target_kms_request,
    "kms_http": target_kms_http,
    "tunnel_allowlist": target_tunnel_allowlist,
    "tunnel_dns": target_tunnel_dns,
    "tunnel_http": target_tunnel_http,
}
