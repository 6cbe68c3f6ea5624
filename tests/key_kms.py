"""A stand-in KMS on loopback for the key operations, until the simulated KMS (nitrokit.kms) serves them.

It answers Decrypt, GenerateDataKey, GenerateDataKeyPair and DeriveSharedSecret over real HTTP (AWS JSON 1.1,
what boto3 sends and parses) with the shapes real KMS uses: with a Recipient, the secret member is null and
CiphertextForRecipient is CMS EnvelopedData to the attestation document's public key
(:func:`nitrokit.cms.encrypt_for_recipient`). It does not verify the document or evaluate any policy: that is
the simulator's part. Ciphertexts are AES-GCM under the stand-in's one symmetric key, bound to the key and the
encryption context, so Decrypt refuses another context with InvalidCiphertextException as KMS does.

``bodies`` records each request's JSON as KMS received it. ``leak`` makes it answer with the secret in the clear
beside the envelope, as a hostile or broken KMS would; ``fixed_answer``, when set, is the answer to every call
(a recorded real KMS answer).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from nitrokit import cms
from nitrokit.attestation import parse_document

REGION, ACCOUNT = "us-east-1", "111122223333"
SYMMETRIC_KEY_ID = "1234abcd-12ab-34cd-56ef-1234567890ab"
ECDH_KEY_ID = "0987dcba-09fe-87dc-65ba-ab0987654321"
ALIAS = "alias/stand-in"


def key_arn(key_id: str) -> str:
    return f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{key_id}"


_CURVES: dict[str, ec.EllipticCurve] = {"ECC_NIST_P256": ec.SECP256R1(), "ECC_NIST_P384": ec.SECP384R1(),
                                        "ECC_NIST_P521": ec.SECP521R1(), "ECC_SECG_P256K1": ec.SECP256K1()}


class KmsFault(Exception):
    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.status = code, status


class KeyKms:
    """The stand-in: ``url`` for boto3 or ``nitrokit parent --endpoint-url``; ``calls`` records the targets."""

    def __init__(self) -> None:
        self._aes = AESGCM(AESGCM.generate_key(bit_length=256))
        self.ecdh_key = ec.generate_private_key(ec.SECP256R1())
        self.leak = False
        self.fixed_answer: dict[str, Any] | None = None
        self.calls: list[str] = []
        self.bodies: list[dict[str, Any]] = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                target = str(self.headers.get("X-Amz-Target", "")).rpartition(".")[2]
                stand_in.calls.append(target)
                stand_in.bodies.append(json.loads(body))
                try:
                    status, answer = 200, stand_in.answer(target, stand_in.bodies[-1])
                except KmsFault as fault:
                    status, answer = fault.status, {"__type": fault.code, "message": str(fault)}
                payload = json.dumps(answer).encode()
                head = (f"HTTP/1.1 {status} X\r\nContent-Type: application/x-amz-json-1.1\r\n"
                        f"x-amzn-RequestId: stand-in\r\nContent-Length: {len(payload)}\r\n\r\n")
                with contextlib.suppress(OSError):
                    self.wfile.write(head.encode() + payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- the operations -------------------------------------------------------------------------------------

    def answer(self, operation: str, request: dict[str, Any]) -> dict[str, Any]:
        if self.fixed_answer is not None:
            return self.fixed_answer
        handler = {"Decrypt": self._decrypt, "GenerateDataKey": self._generate_data_key,
                   "GenerateDataKeyPair": self._generate_data_key_pair,
                   "DeriveSharedSecret": self._derive_shared_secret}.get(operation)
        if handler is None:
            raise KmsFault("UnsupportedOperationException", f"{operation} is not served by the stand-in")
        members, secret_name, secret = handler(request)
        recipient = request.get("Recipient")
        if recipient is None:
            members[secret_name] = _b64(secret)
            return members
        document = parse_document(base64.b64decode(recipient["AttestationDocument"]))
        assert document.public_key is not None
        members["CiphertextForRecipient"] = _b64(cms.encrypt_for_recipient(secret, document.public_key))
        if self.leak:
            members[secret_name] = _b64(secret)
        return members

    def encrypt(self, plaintext: bytes, context: dict[str, str] | None = None) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aes.encrypt(nonce, plaintext, _aad(SYMMETRIC_KEY_ID, context))

    def _key(self, key_id: str | None, *, ecdh: bool = False) -> str:
        wanted = ECDH_KEY_ID if ecdh else SYMMETRIC_KEY_ID
        names = {wanted, key_arn(wanted)} | (set() if ecdh else {ALIAS, f"arn:aws:kms:{REGION}:{ACCOUNT}:{ALIAS}"})
        if key_id is None and not ecdh:
            return wanted
        if key_id not in names:
            raise KmsFault("NotFoundException", "Key is not found.")
        return wanted

    def _decrypt(self, request: dict[str, Any]) -> tuple[dict[str, Any], str, bytes]:
        key = self._key(request.get("KeyId"))
        blob = base64.b64decode(request["CiphertextBlob"])
        try:
            plaintext = self._aes.decrypt(blob[:12], blob[12:], _aad(key, request.get("EncryptionContext")))
        except Exception:
            raise KmsFault("InvalidCiphertextException", "") from None
        return {"KeyId": key_arn(key), "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"}, "Plaintext", plaintext

    def _generate_data_key(self, request: dict[str, Any]) -> tuple[dict[str, Any], str, bytes]:
        key = self._key(request["KeyId"])
        size = request.get("NumberOfBytes") or {"AES_256": 32, "AES_128": 16}[request["KeySpec"]]
        data_key = os.urandom(size)
        blob = self.encrypt(data_key, request.get("EncryptionContext"))
        return {"KeyId": key_arn(key), "CiphertextBlob": _b64(blob)}, "Plaintext", data_key

    def _generate_data_key_pair(self, request: dict[str, Any]) -> tuple[dict[str, Any], str, bytes]:
        key = self._key(request["KeyId"])
        spec = request["KeyPairSpec"]
        if spec.startswith("RSA_"):
            private: Any = rsa.generate_private_key(public_exponent=65537, key_size=int(spec[4:]))
        elif spec in _CURVES:
            private = ec.generate_private_key(_CURVES[spec])
        else:
            raise KmsFault("UnsupportedOperationException", f"{spec} is not served by the stand-in")
        private_der = private.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption())
        public_der = private.public_key().public_bytes(serialization.Encoding.DER,
                                                       serialization.PublicFormat.SubjectPublicKeyInfo)
        blob = self.encrypt(private_der, request.get("EncryptionContext"))
        return ({"KeyId": key_arn(key), "KeyPairSpec": spec, "PublicKey": _b64(public_der),
                 "PrivateKeyCiphertextBlob": _b64(blob)}, "PrivateKeyPlaintext", private_der)

    def _derive_shared_secret(self, request: dict[str, Any]) -> tuple[dict[str, Any], str, bytes]:
        key = self._key(request["KeyId"], ecdh=True)
        try:
            peer = serialization.load_der_public_key(base64.b64decode(request["PublicKey"]))
            assert isinstance(peer, ec.EllipticCurvePublicKey) and isinstance(peer.curve, ec.SECP256R1)
        except (ValueError, AssertionError):
            raise KmsFault("ValidationException", "PublicKey is not a P-256 SPKI") from None
        secret = self.ecdh_key.exchange(ec.ECDH(), peer)
        return ({"KeyId": key_arn(key), "KeyAgreementAlgorithm": "ECDH", "KeyOrigin": "AWS_KMS"},
                "SharedSecret", secret)


def _aad(key_id: str, context: dict[str, str] | None) -> bytes:
    return json.dumps([key_id, sorted((context or {}).items())]).encode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@contextlib.contextmanager
def key_kms() -> Iterator[KeyKms]:
    stand_in = KeyKms()
    try:
        yield stand_in
    finally:
        stand_in.close()
