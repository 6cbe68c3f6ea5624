"""Tunnel mode, the enclave side: KmsClient(mode="tunnel") runs TLS to KMS itself through a byte relay.

Real sockets throughout: the client connects over a Unix socket to a byte relay written here (standing in for
the parent's, and able to misbehave as a hostile parent would), which connects over TCP to the simulated KMS
serving HTTPS with a certificate from the fixture TLS CA. Hostile or broken servers (an error JSON, an
oversized or chunked answer, no answer at all) are tiny TLS servers here, reached directly over TCP.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import select
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from nitrokit.enclave import tunnel
from nitrokit.enclave.errors import KmsCallError, TlsError, UntrustedAnswerError
from nitrokit.enclave.kms_client import KmsClient, RetryPolicy, _check_key_id
from nitrokit.enclave.nsm import SimulatedNsm
from nitrokit.enclave.tunnel import (
    DEFAULT_CA_FILE,
    REFRESH_BEFORE_EXPIRY,
    CredentialsCache,
    TunnelTransport,
    tls_context,
)
from nitrokit.errors import UsageError
from nitrokit.kms import KmsSimConfig, SimulatedKms
from nitrokit.kms.config import AccessKey
from nitrokit.kms_api import kms_endpoint_host
from nitrokit.testing.tls import server_context, tls_ca_file
from nitrokit.wire.credentials import CREDENTIALS_OPERATIONS, AwsCredentials, credentials_response
from nitrokit.wire.kms import GENERATE_DATA_KEY, MAX_KMS_ANSWER_BYTES, recipient_info
from nitrokit.wire.messages import Request
from nitrokit.wire.server import ServerLimits, ServerThread, WireServer
from tests.cli_helpers import run_cli
from tests.kms_helpers import make_keys

ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
TOKEN = "IQoJb3JpZ2luX2VjEXAMPLETOKEN+/=="
REGION = "us-east-1"
ONE_TRY = RetryPolicy(max_attempts=1)
TWO_TRIES = RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.02)

# The roots the bundle must hold, by SHA-256 of the DER certificate (Amazon Root CA 1's from the brief; the
# others read from the Debian ca-certificates files they were taken from, and matching Amazon's repository).
PINNED_ROOTS = {
    "Amazon Root CA 1": "8ECDE6884F3D87B1125BA31AC3FCB13D7016DE7F57CC904FE1CB97C6AE98196E",
    "Amazon Root CA 2": "1BA5B2AA8C65401A82960118F80BEC4F62304D83CEC4713A19C39C011EA46DB4",
    "Amazon Root CA 3": "18CE6CFE7BF14E60B2E347B8DFE868CB31D02EBB3ADA271569F50343B46DB3A4",
    "Amazon Root CA 4": "E35D28419ED02025CFA69038CD623962458DA5C695FBDEA3C22B0BFB25897092",
    "Starfield Services Root Certificate Authority - G2":
        "568D6905A2C88708A4B3025190EDCFEDB1974A606A13C6E5290FCB2AE63EDAB5",
}


class StaticCredentials:
    """A CredentialsProvider handing out ``next`` (changeable), counting the calls."""

    def __init__(self, credentials: AwsCredentials) -> None:
        self.next = credentials
        self.calls = 0

    def credentials(self) -> AwsCredentials:
        self.calls += 1
        return self.next


def _credentials(*, token: str | None = None, expiration: float | None = None) -> AwsCredentials:
    return AwsCredentials(access_key_id=ACCESS_KEY, secret_access_key=SECRET, session_token=token,
                          expiration=expiration)


# -- the relay: the parent's part, honest or not ---------------------------------------------------------------


class ByteRelay:
    """Accepts on a Unix socket and relays bytes to ``target`` (TCP). ``mode`` makes it misbehave on what the
    server sends from then on: ``flip`` one byte, ``inject`` a TLS record of its own before the answer,
    ``forge`` a plaintext HTTP answer, ``truncate`` the answer and close. ``accepted`` counts connections."""

    def __init__(self, path: Path, target: tuple[str, int]) -> None:
        self.path, self.target = path, target
        self.mode = "pass"
        self.accepted = 0
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None

    def start(self) -> ByteRelay:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(self.path))
        listener.listen(16)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def stop(self) -> None:
        """Close the listener and every relayed connection (a restart is stop() then start())."""
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    @property
    def address(self) -> str:
        return f"unix://{self.path}"

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target, timeout=5)
            upstream.settimeout(None)
            with self._lock:
                self.accepted += 1
                self._sockets += [client, upstream]
            threading.Thread(target=self._relay, args=(client, upstream), daemon=True).start()

    def _relay(self, client: socket.socket, upstream: socket.socket) -> None:
        try:
            while True:
                readable, _, _ = select.select([client, upstream], [], [], 10)
                if not readable:
                    return
                for source in readable:
                    data = source.recv(65536)
                    if not data:
                        return
                    if source is client:
                        if self.mode == "inject":
                            client.sendall(b"\x17\x03\x03\x00\x20" + os.urandom(32))
                        elif self.mode == "forge":
                            client.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}')
                        upstream.sendall(data)
                        continue
                    if self.mode == "flip":
                        data = data[:-1] + bytes([data[-1] ^ 0x01])
                    elif self.mode == "truncate":
                        client.sendall(data[:40])  # the first bytes of what the server sent, then close
                        return
                    client.sendall(data)
        except (OSError, ValueError):  # ValueError: select on a socket stop() closed
            return
        finally:
            for sock in (client, upstream):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


# -- fixtures --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kms() -> Iterator[SimulatedKms]:
    with SimulatedKms(KmsSimConfig(region=REGION), tls=True) as simulated:
        yield simulated


@pytest.fixture(scope="module")
def keys(kms: SimulatedKms) -> dict[str, str]:
    """A symmetric key with an alias, and an ECC key-agreement key, made with boto3 over HTTPS."""
    return make_keys(kms, alias="alias/tunnel")


@pytest.fixture
def relay(kms: SimulatedKms, tmp_path: Path) -> Iterator[ByteRelay]:
    running = ByteRelay(tmp_path / "relay.sock", kms.address).start()
    try:
        yield running
    finally:
        running.stop()


@dataclass
class Channel:
    """The parent's credentials channel, served here (a WireServer) with the simulator's credentials."""

    address: str
    fetched: list[str]


@pytest.fixture
def channel(tmp_path: Path) -> Iterator[Channel]:
    fetched: list[str] = []

    async def handler(request: Request) -> Mapping[str, Any]:
        fetched.append(request.operation)
        return credentials_response(_credentials())

    server = WireServer(ServerLimits(), handler, operations=CREDENTIALS_OPERATIONS, name="credentials",
                        listen=f"unix://{tmp_path / 'credentials.sock'}")
    with ServerThread(server) as running:
        yield Channel(str(running.address), fetched)


def _client(relay_address: str, *, retry: RetryPolicy = ONE_TRY, **options: Any) -> KmsClient:
    options.setdefault("credentials", StaticCredentials(_credentials()))
    options.setdefault("ca_file", tls_ca_file())
    return KmsClient(nsm=SimulatedNsm(), parent=relay_address, mode="tunnel", region=REGION, retry=retry,
                     **options)


def _transport(relay_address: str, **options: Any) -> TunnelTransport:
    options.setdefault("credentials", StaticCredentials(_credentials()))
    options.setdefault("ca_file", tls_ca_file())
    return TunnelTransport(relay_address, region=REGION, **options)


# -- the CA bundle ---------------------------------------------------------------------------------------------


def test_the_shipped_ca_bundle_holds_exactly_the_pinned_roots() -> None:
    # Read by OpenSSL, as the client reads it (cryptography warns about Starfield G2's serial number 0).
    context = tls_context()  # the default: the shipped bundle
    found = {}
    for decoded, der in zip(context.get_ca_certs(), context.get_ca_certs(binary_form=True), strict=True):
        subject: Any = decoded["subject"]  # ((("commonName", "Amazon Root CA 1"),), ...)
        assert subject == decoded["issuer"]  # roots only
        common_name = next(value for rdn in subject for name, value in rdn if name == "commonName")
        found[common_name] = hashlib.sha256(der).hexdigest().upper()
    assert found == PINNED_ROOTS
    assert DEFAULT_CA_FILE.read_bytes().count(b"-----BEGIN CERTIFICATE-----") == len(PINNED_ROOTS)
    assert b"PRIVATE KEY" not in DEFAULT_CA_FILE.read_bytes()  # Dockerfile.enclave fails the build on one


def test_tunnel_mode_needs_neither_boto3_nor_botocore() -> None:
    """What the enclave image lacks, made unimportable: tunnel mode still loads, and builds its client."""
    probe = ("import sys; sys.modules.update(boto3=None, botocore=None, urllib3=None)\n"
             "from nitrokit.enclave.kms_client import KmsClient\n"
             "from nitrokit.enclave.nsm import SimulatedNsm\n"
             "KmsClient(nsm=SimulatedNsm(), mode='tunnel', region='eu-west-1').close()\n"
             "assert not any(name.split('.')[0] in ('boto3', 'botocore') for name in sys.modules if sys.modules[name])")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr


def test_a_missing_or_empty_ca_file_is_refused_saying_why(tmp_path: Path) -> None:
    (tmp_path / "empty.pem").write_text("# nothing\n")
    (tmp_path / "key.pem").write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    for name, why in (("absent.pem", "no such file"), ("empty.pem", "no PEM certificate in it"),
                      ("key.pem", "no PEM certificate in it"), ("", "a directory")):
        with pytest.raises(UsageError, match=f"CA file {tmp_path / name}: .*{why}"):
            _client("unix:///nowhere", ca_file=tmp_path / name)


# -- every operation through the relay, on one kept-alive connection -------------------------------------------


def test_every_operation_through_the_relay_on_one_connection(relay: ByteRelay, kms: SimulatedKms,
                                                             keys: dict[str, str]) -> None:
    peer = ec.generate_private_key(ec.SECP256R1())
    peer_der = peer.public_key().public_bytes(serialization.Encoding.DER,
                                              serialization.PublicFormat.SubjectPublicKeyInfo)
    traces: list[str] = []
    with _client(relay.address, trace=traces.append) as client:
        assert len(client.generate_random(32)) == 32
        data_key = client.generate_data_key(keys["alias"], key_spec="AES_256", encryption_context={"t": "1"})
        opened = client.decrypt(data_key.ciphertext_blob, key_id=keys["id"], encryption_context={"t": "1"})
        pair = client.generate_data_key_pair(keys["arn"], "ECC_NIST_P256")
        shared = client.derive_shared_secret(keys["ecdh"], peer_der)
    assert opened.plaintext == data_key.plaintext and data_key.key_id == opened.key_id == keys["arn"]
    assert pair.key_pair_spec == "ECC_NIST_P256" and len(shared.shared_secret) == 32
    # boto3, talking to the same KMS itself, agrees with what the enclave opened.
    boto = kms.client()
    assert boto.decrypt(CiphertextBlob=data_key.ciphertext_blob, EncryptionContext={"t": "1"})[
        "Plaintext"] == data_key.plaintext
    assert boto.decrypt(CiphertextBlob=pair.private_key_ciphertext_blob)["Plaintext"] == pair.private_key_plaintext
    ours = boto.get_public_key(KeyId=keys["ecdh"])["PublicKey"]
    kms_public = serialization.load_der_public_key(ours)
    assert isinstance(kms_public, ec.EllipticCurvePublicKey)
    assert peer.exchange(ec.ECDH(), kms_public) == shared.shared_secret
    assert relay.accepted == 1  # keep-alive: five calls, one connection
    assert any(f"KMS {kms_endpoint_host(REGION)} over TLS through the relay {relay.address}" in line
               for line in traces)


def test_the_relay_restarting_between_calls(relay: ByteRelay) -> None:
    with _transport(relay.address) as transport:
        assert len(transport.call("GenerateRandom", {"NumberOfBytes": 8})["Plaintext"]) > 0
        relay.stop()
        relay.start()
        assert len(transport.call("GenerateRandom", {"NumberOfBytes": 8})["Plaintext"]) > 0
        assert (transport.connections, relay.accepted) == (2, 2)
        assert transport.resumed == 1  # the TLS session was resumed on the new connection


# -- a relay that alters, injects or cuts bytes ----------------------------------------------------------------


@pytest.mark.parametrize("mode", ["flip", "inject", "forge"])
def test_altered_or_injected_bytes_are_a_tls_error_never_an_answer(relay: ByteRelay, mode: str) -> None:
    with _client(relay.address, retry=TWO_TRIES) as client:
        client.generate_random(16)  # the connection is up and kept: what follows is all application data
        relay.mode = mode
        with pytest.raises(TlsError) as caught:
            client.generate_random(16)
    assert (caught.value.code, caught.value.retryable, caught.value.attempts) == ("TlsError", False, 1)


def test_a_relay_altering_the_handshake_is_a_tls_error(relay: ByteRelay) -> None:
    relay.mode = "flip"
    with _client(relay.address, retry=TWO_TRIES) as client, pytest.raises(TlsError):
        client.generate_random(16)


def test_a_truncated_answer_is_a_closed_connection(relay: ByteRelay) -> None:
    with _client(relay.address, retry=TWO_TRIES) as client:
        client.generate_random(16)
        relay.mode = "truncate"
        with pytest.raises(KmsCallError) as caught:
            client.generate_random(16)
    assert caught.value.code in ("ConnectionClosedError", "TlsError")
    assert caught.value.code != "ConnectionClosedError" or caught.value.attempts == 2  # retried once


def test_a_server_certificate_for_another_host_is_refused(relay: ByteRelay) -> None:
    with _client(relay.address, kms_host="kms.eu-west-1.amazonaws.com") as client, \
            pytest.raises(TlsError) as caught:
        client.generate_random(16)
    assert not caught.value.retryable and "kms.eu-west-1.amazonaws.com" in str(caught.value)
    # which roots, and where the name checked comes from
    assert f"checked against the CA file {tls_ca_file()}" in str(caught.value)
    assert "kms_host / --kms-host" in str(caught.value) and "region / --region" in str(caught.value)


def test_a_server_the_amazon_roots_do_not_vouch_for_is_refused(relay: ByteRelay) -> None:
    with _client(relay.address, ca_file=None, retry=TWO_TRIES) as client, pytest.raises(TlsError) as caught:
        client.generate_random(16)
    assert caught.value.attempts == 1 and "certificate" in str(caught.value)
    assert ("checked against the Amazon Trust Services roots shipped with nitrokit; pass ca_file / --ca-file "
            "for another CA") in str(caught.value) and "--kms-host" not in str(caught.value)


# -- KMS's answers: errors, and what the client refuses to read ------------------------------------------------


def test_a_kms_error_comes_back_with_its_code(relay: ByteRelay) -> None:
    with _client(relay.address) as client, pytest.raises(KmsCallError) as caught:
        client.generate_data_key("alias/none", number_of_bytes=8)
    assert (caught.value.code, caught.value.retryable) == ("NotFoundException", False)


def test_an_alias_arn_must_come_back_as_a_key_of_its_account(relay: ByteRelay, keys: dict[str, str]) -> None:
    with _client(relay.address) as client:
        assert client.generate_data_key(keys["alias_arn"], number_of_bytes=8).key_id == keys["arn"]
    region_account = keys["arn"].rpartition(":key/")[0]
    _check_key_id(f"{region_account}:alias/x", {"KeyId": keys["arn"]})
    for other in ("arn:aws:kms:us-east-1:999999999999:alias/x", "arn:aws:kms:eu-west-1:111122223333:alias/x",
                  "arn:aws-cn:kms:us-east-1:111122223333:alias/x"):
        with pytest.raises(UntrustedAnswerError, match="not the key"):
            _check_key_id(other.replace("111122223333", region_account.split(":")[4]), {"KeyId": keys["arn"]})


class CannedTlsServer:
    """A TLS server on loopback TCP that reads each request and sends ``answer`` (None: never answers).
    ``requests`` records each request's head and body."""

    def __init__(self, answer: bytes | None, hosts: tuple[str, ...] = (kms_endpoint_host(REGION),)) -> None:
        self.answer = answer
        self.requests: list[tuple[str, bytes]] = []
        self._context = server_context(hosts)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"tcp://127.0.0.1:{self._listener.getsockname()[1]}"
        self._stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()

    def _serve(self) -> None:
        while True:
            try:
                raw, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._connection, args=(raw,), daemon=True).start()

    def _connection(self, raw: socket.socket) -> None:
        with contextlib.suppress(OSError), self._context.wrap_socket(raw, server_side=True) as sock:
            buffer = b""
            while not self._stop.is_set():
                while b"\r\n\r\n" not in buffer:
                    chunk = sock.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length:")))
                while len(buffer) < length:
                    buffer += sock.recv(65536)
                self.requests.append((head.decode(), buffer[:length]))
                buffer = buffer[length:]
                if self.answer is None:
                    self._stop.wait(10)
                    return
                sock.sendall(self.answer)


@contextlib.contextmanager
def canned(answer: bytes | None, **options: Any) -> Iterator[CannedTlsServer]:
    server = CannedTlsServer(answer, **options)
    try:
        yield server
    finally:
        server.close()


def _http(status: str, body: bytes, *headers: str) -> bytes:
    head = "".join(f"{header}\r\n" for header in headers)
    return f"HTTP/1.1 {status}\r\n{head}Content-Length: {len(body)}\r\n\r\n".encode() + body


def test_a_relay_reaching_a_server_of_another_name_is_refused() -> None:
    """The relay connects wherever it likes; a certificate the fixture CA issued for another host still fails."""
    with canned(_http("200 OK", b"{}"), hosts=("kms.eu-west-1.amazonaws.com", "127.0.0.1")) as server, \
            _client(server.address, retry=TWO_TRIES) as client, pytest.raises(TlsError) as caught:
        client.generate_random(8)
    assert (caught.value.retryable, caught.value.attempts) == (False, 1) and not server.requests


@contextlib.contextmanager
def plain_peer(reply: bytes) -> Iterator[str]:
    """A TCP peer that reads the first bytes sent, answers ``reply`` (not TLS; empty: nothing) and closes."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                peer, _ = listener.accept()
                with peer:
                    peer.recv(65536)
                    peer.sendall(reply)

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield f"tcp://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)
        listener.close()


@pytest.mark.parametrize("reply", [b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n",
                                   b"\x00\x00\x00\x2a{\"v\":1,\"error\":{\"code\":\"MalformedFrame\"}}"])
def test_a_peer_that_does_not_answer_tls_is_named(reply: bytes) -> None:
    with plain_peer(reply) as address, _client(address, retry=TWO_TRIES) as client, \
            pytest.raises(TlsError) as caught:
        client.generate_random(8)
    assert (caught.value.retryable, caught.value.attempts) == (False, 1)
    assert (f"the peer at {address} did not answer TLS: is it nitrokit parent --mode tunnel, and is --parent its "
            "tunnel address (not the credentials channel)?") in str(caught.value)


def test_a_parent_closing_the_tunnel_before_kms_answered_is_named() -> None:
    with plain_peer(b"") as address, _client(address, retry=TWO_TRIES) as client, \
            pytest.raises(KmsCallError) as caught:
        client.generate_random(8)
    assert (caught.value.code, caught.value.retryable, caught.value.attempts) == ("ConnectionClosedError", True, 2)
    assert ("the parent closed the tunnel before KMS answered: can the parent reach its target? (see its log)"
            in str(caught.value))


def test_the_request_is_aws_json_1_1_signed() -> None:
    answer = _http("200 OK", b'{"Plaintext":"AAAA"}', "Content-Type: application/x-amz-json-1.1")
    with canned(answer) as server, _transport(server.address,
                                              credentials=StaticCredentials(_credentials(token=TOKEN))) as transport:
        request = GENERATE_DATA_KEY.encode_request({"KeyId": "alias/a", "NumberOfBytes": 8,
                                                    "EncryptionContext": {"k": "\u00e9"},
                                                    "Recipient": recipient_info(b"\x00" * 8)})
        assert transport.call("GenerateDataKey", request) == {"Plaintext": "AAAA"}
    head, body = server.requests[0]
    lines = head.split("\r\n")
    fields = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
    assert lines[0] == "POST / HTTP/1.1"
    assert fields["host"] == "kms.us-east-1.amazonaws.com"
    assert fields["x-amz-target"] == "TrentService.GenerateDataKey"
    assert fields["content-type"] == "application/x-amz-json-1.1"
    assert fields["x-amz-security-token"] == TOKEN
    assert fields["authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/")
    assert body == json.dumps(request, separators=(",", ":")).encode() and json.loads(body) == request
    assert SECRET not in head


@pytest.mark.parametrize(("answer", "code", "retryable", "message"), [
    (_http("400 Bad Request", b'{"__type":"com.amazonaws.kms#NotFoundException","message":"Key \\u001b[31m x"}'),
     "NotFoundException", False, "Key \\x1b[31m x"),
    (_http("400 Bad Request", b'{"__type":"ThrottlingException","Message":"Rate exceeded"}'),
     "ThrottlingException", True, "Rate exceeded"),
    (_http("503 Service Unavailable", b"<html>down</html>"), "KmsError", True, "KMS answered HTTP 503"),
    (_http("400 Bad Request", b"{}", "x-amzn-ErrorType: AccessDeniedException:http://internal"),
     "AccessDeniedException", False, "KMS answered HTTP 400"),
])
def test_kms_error_answers(answer: bytes, code: str, retryable: bool, message: str) -> None:
    with canned(answer) as server, _client(server.address) as client, pytest.raises(KmsCallError) as caught:
        client.generate_random(8)
    assert (caught.value.code, caught.value.retryable) == (code, retryable)
    assert message in str(caught.value) and "\x1b" not in str(caught.value)


@pytest.mark.parametrize(("answer", "problem"), [
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", "chunked"),
    (f"HTTP/1.1 200 OK\r\nContent-Length: {MAX_KMS_ANSWER_BYTES + 1}\r\n\r\n".encode(), "over the limit"),
    (b"HTTP/1.1 200 OK\r\n\r\n{}", "no valid Content-Length"),
    (b"HTTP/1.1 200 OK\r\n" + b"X-Filler: 0123456789\r\n" * 1000 + b"Content-Length: 2\r\n\r\n{}", "header"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}", "two different Content-Length"),
    (b"SMTP ready\r\n\r\n", "status line"),
    (_http("200 OK", b"[1, 2]"), "not a JSON object"),
    (_http("200 OK", b'{"a": 1, "a": 2}'), "not valid JSON"),
])
def test_answers_the_client_refuses_to_read(answer: bytes, problem: str) -> None:
    with canned(answer) as server, _client(server.address) as client, pytest.raises(KmsCallError) as caught:
        client.generate_random(8)
    assert caught.value.code == "InvalidResponseError" and not caught.value.retryable
    assert problem in str(caught.value)


def test_a_server_that_never_answers_times_out_within_the_deadline() -> None:
    with canned(None) as server, _client(server.address, timeout=0.5) as client, \
            pytest.raises(KmsCallError) as caught:
        client.generate_random(8)
    assert (caught.value.code, caught.value.retryable) == ("WireTimeoutError", True)


# -- credentials -----------------------------------------------------------------------------------------------


def test_credentials_are_fetched_again_when_they_expire_soon(relay: ByteRelay) -> None:
    clock = [1_900_000_000.0]
    provider = StaticCredentials(_credentials(expiration=clock[0] + 3600))
    cache = CredentialsCache(provider, clock=lambda: clock[0])
    assert cache.credentials() is cache.credentials() and provider.calls == 1
    clock[0] += 3600 - REFRESH_BEFORE_EXPIRY  # now within five minutes of the expiration
    cache.credentials()
    assert provider.calls == 2
    provider.next = _credentials()  # no expiration: kept for 15 minutes
    clock[0] += 10**6
    cache.credentials()
    clock[0] += 899
    cache.credentials()
    assert provider.calls == 3
    clock[0] += 1
    cache.credentials()
    assert provider.calls == 4
    assert SECRET not in repr(cache)


def test_credentials_expiring_soon_are_fetched_for_each_call(relay: ByteRelay) -> None:
    provider = StaticCredentials(_credentials(token=None, expiration=time.time() + 60))
    with _client(relay.address, credentials=provider) as client:
        client.generate_random(8)
        client.generate_random(8)
    assert provider.calls == 2


def test_stale_credentials_are_fetched_again_and_the_call_made_once_more(kms: SimulatedKms,
                                                                         tmp_path: Path) -> None:
    """A KMS that takes only a session token: the first credentials lack it (UnrecognizedClientException),
    the refetched ones carry it."""
    key = AccessKey(access_key_id=ACCESS_KEY, secret_access_key=SECRET, session_token=TOKEN)
    with SimulatedKms(KmsSimConfig(region=REGION, credentials=(key,)), tls=True) as tokened:
        relay = ByteRelay(tmp_path / "r.sock", tokened.address).start()
        try:
            provider = StaticCredentials(_credentials())
            with _transport(relay.address, credentials=provider) as transport:
                transport.credentials.credentials()  # the first fetch: no session token
                provider.next = _credentials(token=TOKEN)  # what a refetch gives
                assert "Plaintext" in transport.call("GenerateRandom", {"NumberOfBytes": 8})
                assert provider.calls == 2
                provider.next = _credentials(token="not-the-token")
                transport.credentials.invalidate()
                with pytest.raises(Exception) as caught:  # refetched once, still refused: no loop
                    transport.call("GenerateRandom", {"NumberOfBytes": 8})
                assert getattr(caught.value, "code", None) == "UnrecognizedClientException"
                assert provider.calls == 4 and TOKEN not in str(caught.value) and SECRET not in str(caught.value)
        finally:
            relay.stop()


def test_credentials_from_the_parents_channel(relay: ByteRelay, channel: Channel) -> None:
    with _client(relay.address, credentials=channel.address) as client:
        client.generate_random(8)
        client.generate_random(8)
    assert channel.fetched == ["GetCredentials"]  # no expiration: fetched once for both calls


def test_an_unreachable_credentials_channel_is_a_retryable_failure(relay: ByteRelay, tmp_path: Path) -> None:
    with _client(relay.address, credentials=f"unix://{tmp_path / 'none.sock'}") as client, \
            pytest.raises(KmsCallError) as caught:
        client.generate_random(8)
    assert caught.value.code == "TransportError" and caught.value.retryable
    assert f"credentials channel unix://{tmp_path / 'none.sock'}: " in str(caught.value)


def test_credentials_pointed_at_the_tunnel_say_so(relay: ByteRelay) -> None:
    """--credentials given the relay's address: the channel's request reaches KMS's TLS server, which hangs up."""
    with _client(relay.address, credentials=relay.address) as client, pytest.raises(KmsCallError) as caught:
        client.generate_random(8)
    assert caught.value.retryable
    assert f"credentials channel {relay.address}: " in str(caught.value)
    assert "is --credentials the parent's credentials channel (not its tunnel address)?" in str(caught.value)


@pytest.mark.parametrize("kind", ["static", "callable"])
def test_credentials_static_or_from_a_callable(relay: ByteRelay, kind: str) -> None:
    calls: list[int] = []

    def fetch() -> AwsCredentials:
        calls.append(1)
        return _credentials()

    with _client(relay.address, credentials=_credentials() if kind == "static" else fetch) as client:
        assert len(client.generate_random(8)) == 8
        assert len(client.generate_random(8)) == 8
    assert calls == ([] if kind == "static" else [1])


class Failing:
    def credentials(self) -> AwsCredentials:
        raise RuntimeError(f"cannot read {SECRET}")


@pytest.mark.parametrize("source", [Failing(), Failing().credentials])
def test_a_failing_credentials_provider_is_a_typed_error_without_its_text(source: Any) -> None:
    with _client("unix:///nowhere", credentials=source, retry=TWO_TRIES) as client, \
            pytest.raises(KmsCallError) as caught:
        client.generate_random(8)
    assert (caught.value.code, caught.value.retryable, caught.value.attempts) == ("CredentialsError", False, 1)
    assert "RuntimeError" in str(caught.value) and SECRET not in str(caught.value)
    assert SECRET not in "".join(traceback.format_exception(caught.value))  # nor in what a log would print
    assert caught.value.__context__ is None or caught.value.__context__.__context__ is None


def test_credentials_of_another_kind_are_a_usage_error() -> None:
    with pytest.raises(UsageError, match=r"credentials must be .* not a int"):
        _client("unix:///nowhere", credentials=42)


# -- usage ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("options", "problem"), [
    ({"mode": "relay", "region": REGION}, "region: for mode='tunnel' only"),
    ({"mode": "relay", "kms_host": "h", "ca_file": "f", "credentials": "unix:///c"},
     "kms_host, ca_file, credentials: for mode='tunnel' only"),
    ({"mode": "direct"}, "mode must be"),
    ({"mode": "tunnel", "region": "Not a region"}, "not an AWS region"),
    ({"mode": "tunnel", "region": REGION, "kms_host": "kms.example.com\r\nX: 1"}, "not a DNS host name"),
])
def test_usage_errors(options: dict[str, Any], problem: str) -> None:
    with pytest.raises(UsageError, match=problem.replace("(", r"\(")):
        KmsClient(nsm=SimulatedNsm(), **options)


def test_tunnel_mode_takes_the_region_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    with pytest.raises(UsageError, match="region"):
        KmsClient(nsm=SimulatedNsm(), mode="tunnel")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "cn-north-1")
    with KmsClient(nsm=SimulatedNsm(), mode="tunnel") as client:
        assert client.mode == "tunnel"
    assert kms_endpoint_host("cn-north-1") == "kms.cn-north-1.amazonaws.com.cn"


def test_regions_and_endpoints_follow_the_one_rule_the_parent_uses() -> None:
    """nitrokit.kms_api decides what a region is and where its KMS endpoint is, for both sides."""
    for region in ("us-east-1", "us-gov-west-1", "ap-southeast-5", "cn-northwest-1"):
        with TunnelTransport("unix:///nowhere", region=region,
                             credentials=StaticCredentials(_credentials())) as transport:
            assert transport.kms_host == kms_endpoint_host(region)
    assert not hasattr(tunnel, "default_kms_host") and not hasattr(tunnel, "region_from_environment")


def test_the_tunnel_module_exports_what_users_call() -> None:
    assert sorted(tunnel.__all__) == ["CredentialsCache", "CredentialsProvider", "DEFAULT_CA_FILE",
                                      "DEFAULT_CREDENTIALS", "TunnelTransport", "tls_context"]
    assert "byte relay" in (KmsClient.parent.__doc__ or "")


def test_the_relay_transport_is_unchanged_by_default() -> None:
    with KmsClient(nsm=SimulatedNsm()) as client:
        assert client.mode == "relay"



# -- the command line ------------------------------------------------------------------------------------------


def test_the_cli_key_commands_in_tunnel_mode(relay: ByteRelay, channel: Channel, keys: dict[str, str]) -> None:
    tunnel = ["--mode", "tunnel", "--parent", relay.address, "--region", REGION, "--ca-file", str(tls_ca_file()),
              "--credentials", channel.address, "--nsm", "simulated"]
    made = run_cli("enclave", "generate-data-key", "--key-id", keys["alias"], "--key-spec", "AES_256", "--json",
                   *tunnel)
    assert made.returncode == 0, made.stderr
    data_key = json.loads(made.stdout)
    assert data_key["KeyId"] == keys["arn"]
    opened = run_cli("enclave", "decrypt", "--ciphertext-blob", "-", *tunnel,
                     input=data_key["CiphertextBlob"].encode())
    assert opened.returncode == 0, opened.stderr
    assert bytes.fromhex(opened.stdout.decode().strip()) == base64.b64decode(data_key["Plaintext"])
    random = run_cli("enclave", "generate-random", "--bytes", "16", *tunnel)
    assert random.returncode == 0 and len(bytes.fromhex(random.stdout.decode().strip())) == 16


def test_the_cli_refuses_tunnel_options_in_relay_mode() -> None:
    result = run_cli("enclave", "generate-random", "--bytes", "16", "--region", REGION, "--ca-file", "x.pem",
                     "--nsm", "simulated")
    assert result.returncode == 2 and b"--region, --ca-file: for --mode tunnel only" in result.stderr


def test_the_cli_names_a_tls_failure(relay: ByteRelay, channel: Channel) -> None:
    result = run_cli("enclave", "generate-random", "--bytes", "16", "--mode", "tunnel", "--parent", relay.address,
                     "--region", REGION, "--credentials", channel.address, "--nsm", "simulated")  # the Amazon roots
    assert result.returncode == 1 and b"TlsError" in result.stderr and b"Traceback" not in result.stderr
