"""Make the fuzz TEST keys and the seed corpora: small valid inputs for each target.

    python fuzz/make_seeds.py            # writes what is missing under fuzz/keys and fuzz/corpus/<target>/
    python fuzz/make_seeds.py --force    # rewrites the seeds (not the keys)
    python fuzz/make_seeds.py --new-keys # new keys too: the committed cms_decrypt corpus then no longer opens

Seeds are named ``seed-*``; the fuzzer adds its own files (named by their SHA-1) beside them. Everything here
is made with nitrokit's own builders (fixture PKI, ``build_document``, ``nitrokit.cms``, ``nitrokit.wire``); no real
AWS sample is copied into the corpora.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"
KEYS = ROOT / "fuzz" / "keys"
_KEY_NOTE = b"# TEST KEY for nitrokit's fuzz harnesses (fuzz/make_seeds.py): published, protects nothing.\n"


def make_keys(*, force: bool) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from fuzz.harnesses import FIXED_AT
    from nitrokit.testing import fixture_pki

    KEYS.mkdir(parents=True, exist_ok=True)
    pem = serialization.Encoding.PEM
    pkcs8 = serialization.PrivateFormat.PKCS8
    none = serialization.NoEncryption()
    if force or not (KEYS / "cms-rsa2048.key.pem").exists():
        rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        (KEYS / "cms-rsa2048.key.pem").write_bytes(_KEY_NOTE + rsa_key.private_bytes(pem, pkcs8, none))
    if force or not (KEYS / "leaf.pem").exists():
        cert, key = fixture_pki().issue_leaf(not_before=FIXED_AT - timedelta(hours=1), lifetime=timedelta(hours=3))
        (KEYS / "leaf.pem").write_bytes(cert.public_bytes(pem))
        (KEYS / "leaf.key.pem").write_bytes(_KEY_NOTE + key.private_bytes(pem, pkcs8, none))


def seeds() -> dict[str, dict[str, bytes]]:
    """target -> {seed name -> bytes}."""
    import cbor2
    from cryptography.hazmat.primitives import serialization

    from fuzz import harnesses
    from nitrokit import cms
    from nitrokit.testing import build_document, fixture_pki
    from nitrokit.testing.documents import build_payload, sign_payload
    from nitrokit.wire import (
        DECRYPT,
        DERIVE_SHARED_SECRET,
        GENERATE_DATA_KEY,
        GENERATE_DATA_KEY_PAIR,
        ErrorCode,
        ErrorInfo,
        Request,
        Response,
        encode_frame,
        encode_request,
        encode_response,
        generate_random_request,
    )

    cert, key = harnesses.leaf()
    spki = harnesses.cms_public_key_der()
    at = harnesses.FIXED_AT
    debug_pcrs = dict.fromkeys(range(16), bytes(48))

    documents: dict[str, dict[str, Any]] = {
        "full": dict(public_key=spki, user_data=b"fuzz user data", nonce=harnesses.NONCE),
        "minimal": {},
        "debug": dict(pcrs=debug_pcrs, nonce=harnesses.NONCE),
        "sha256-pcrs": dict(pcrs={index: bytes([index]) * 32 for index in range(16)}),
    }
    attestation = {f"seed-{name}": build_document(at=at, signer=(cert, key), **options)
                   for name, options in documents.items()}
    attestation["seed-tagged"] = build_document(at=at, signer=(cert, key), nonce=harnesses.NONCE, tagged=True)
    der = cert.public_bytes(serialization.Encoding.DER)
    # The parser only checks the certificates' type and size: small stand-ins make small inputs, which mutate better.
    small = {
        "seed-small": sign_payload(build_payload(timestamp=at, certificate=b"\x30\x00", cabundle=[b"\x30\x00"],
                                                 pcrs={0: bytes(48), 1: bytes(32), 2: bytes(64)},
                                                 nonce=b"n", user_data=b"", public_key=b"k"), key),
        "seed-small-tagged": sign_payload(build_payload(timestamp=at, certificate=b"c", cabundle=[b"r", b"i"],
                                                        pcrs={31: bytes(48)}), key, tagged=True),
    }
    payloads = {
        f"seed-{name}": cbor2.dumps(build_payload(timestamp=at, certificate=der, cabundle=fixture_pki().cabundle,
                                                  **options))
        for name, options in documents.items()
    }
    envelopes = {f"seed-{size}": cms.encrypt_for_recipient(bytes(range(256)) * (size // 256) + bytes(size % 256),
                                                           spki)
                 for size in (0, 1, 32, 1024)}

    def request_body(request_id: str, params: dict[str, object]) -> bytes:
        return encode_request(Request(operation="GenerateRandom", request=params, id=request_id))

    wire_request = {
        "seed-plain": request_body("1", generate_random_request(32)),
        "seed-recipient": request_body("a.b:c-d_2", generate_random_request(
            1024, attestation_document=b"\x84D\xa1\x018\"\xa0", custom_key_store_id="cks-1234567890abcdef0")),
        "seed-invalid": request_body("4", {"NumberOfBytes": 0}),
        # The key operations (issue 13): every member of each, with a Recipient.
        **{f"seed-{operation.name}": encode_request(Request(operation=operation.name, id=operation.name, request={
            **members, "GrantTokens": ["g"], "DryRun": False, "Recipient": {
                "AttestationDocument": "hEShATgioA==", "KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256"}}))
           for operation, members in (
               (DECRYPT, {"CiphertextBlob": "AQID", "KeyId": "alias/k", "EncryptionContext": {"k": "v"},
                          "EncryptionAlgorithm": "SYMMETRIC_DEFAULT", "DryRunModifiers": ["IGNORE_CIPHERTEXT"]}),
               (GENERATE_DATA_KEY, {"KeyId": "k", "KeySpec": "AES_256", "EncryptionContext": {}}),
               (GENERATE_DATA_KEY_PAIR, {"KeyId": "k", "KeyPairSpec": "ECC_NIST_P256"}),
               (DERIVE_SHARED_SECRET, {"KeyId": "k", "KeyAgreementAlgorithm": "ECDH", "PublicKey": "MFkw"}))},
    }
    wire_stream = {
        "seed-plain": encode_frame(wire_request["seed-plain"]),
        "seed-recipient": encode_frame(wire_request["seed-recipient"]),
        "seed-two-frames": b"".join(encode_frame(body) for body in (
            request_body("3", generate_random_request(1)), wire_request["seed-invalid"],
            request_body("5", generate_random_request(16)))),
    }
    wire_response = {
        "seed-plaintext": encode_response(Response(id="1", response={
            "Plaintext": base64.b64encode(b"x" * 32).decode()})),
        "seed-ciphertext": encode_response(Response(id="2", response={
            "CiphertextForRecipient": base64.b64encode(envelopes["seed-32"]).decode(), "KeyId": None})),
        "seed-error": encode_response(Response(id="3", error=ErrorInfo(
            ErrorCode.INVALID_REQUEST, "NumberOfBytes must be from 1 to 1024", retryable=False))),
        "seed-error-no-id": encode_response(Response(id=None, error=ErrorInfo(
            ErrorCode.BUSY, "try later", retryable=True))),
    }

    def body(params: dict[str, object]) -> bytes:
        return json.dumps(params, separators=(",", ":")).encode()

    def recipient(placeholder: str) -> dict[str, str]:
        return {"AttestationDocument": placeholder, "KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256"}

    kms_request = {
        "seed-plain": body({"NumberOfBytes": 32}),
        "seed-recipient": body({"NumberOfBytes": 32, "Recipient": recipient("@DOC@")}),
        "seed-recipient-nokey": body({"NumberOfBytes": 1, "Recipient": recipient("@DOC-NOKEY@")}),
        "seed-recipient-debug": body({"NumberOfBytes": 1024, "Recipient": recipient("@DOC-DEBUG@")}),
        "seed-key-stores": body({"NumberOfBytes": 2, "CustomKeyStoreId": "cks-1234567890abcdef0"}),
        "seed-key-store-external": body({"NumberOfBytes": 2, "CustomKeyStoreId": "cks-external"}),
        "seed-key-store-disconnected": body({"NumberOfBytes": 2, "CustomKeyStoreId": "cks-disconnected"}),
    }

    def http_request(payload: bytes, *, method: str = "POST", extra: str = "") -> bytes:
        head = (f"{method} / HTTP/1.1\r\nHost: {harnesses.KMS_HOST}\r\nContent-Type: application/x-amz-json-1.1\r\n"
                f"X-Amz-Target: {harnesses.KMS_TARGET}\r\nX-Amz-Date: @AMZDATE@\r\n"
                "Authorization: AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/@DATE@/us-east-1/kms/aws4_request, "
                "SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=" + "0" * 64 + "\r\n"
                f"{extra}Content-Length: {len(payload)}\r\n\r\n")
        return head.encode() + payload

    kms_http = {
        "seed-post": http_request(kms_request["seed-plain"]),
        "seed-keep-alive": http_request(kms_request["seed-plain"])
                           + http_request(b"{}", extra="X-Amz-Security-Token: t\r\n"),
        "seed-get": b"GET /?x=1 HTTP/1.1\r\nHost: a\r\n\r\n",
        "seed-chunked": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
    }
    return {
        "attestation_parse": {**attestation, **small},
        "attestation_verify": attestation,
        "attestation_signed": payloads,
        "cms_parse": envelopes,
        "cms_decrypt": envelopes,
        "wire_request": wire_request,
        "wire_response": wire_response,
        "wire_stream": wire_stream,
        "kms_request": kms_request,
        "kms_http": kms_http,
        "tunnel_allowlist": tunnel_allowlist(),
        "tunnel_dns": tunnel_dns(harnesses.DNS_NAME, harnesses.DNS_ID),
        "tunnel_http": tunnel_http(),
    }


def tunnel_allowlist() -> dict[str, bytes]:
    """vsock-proxy's shipped form, block maps, quoting and comments, an IPv6 literal."""
    return {
        "seed-flow": b"allowlist:\n- {address: kms.us-east-1.amazonaws.com, port: 443}\n"
                     b"- {address: kms-fips.us-east-1.amazonaws.com, port: 443}\n",
        "seed-block": b"# comment\n---\nallowlist:\n  - address: 'kms.eu-west-1.amazonaws.com.'\n    port: 443\n"
                      b"  - address: \"::1\"\n    port: 8443  # trailing\n",
        "seed-ip": b"allowlist:\n- {address: 127.0.0.1, port: 8443}\n- {address: '::ffff:10.0.0.1', port: 1}\n",
    }


def tunnel_dns(name: str, ident: int) -> dict[str, bytes]:
    """Answers to the A question for ``name``: two addresses; a CNAME chain; compressed names; NXDOMAIN."""
    import struct

    def encoded(text: str) -> bytes:
        return b"".join(bytes([len(label)]) + label.encode() for label in text.split(".")) + b"\x00"

    def answer(records: list[bytes], *, rcode: int = 0, kind: int = 1) -> bytes:
        header = struct.pack("!HHHHHH", ident, 0x8180 | rcode, 1, len(records), 0, 0)
        return header + encoded(name) + struct.pack("!HH", kind, 1) + b"".join(records)

    def record(owner: bytes, kind: int, ttl: int, rdata: bytes) -> bytes:
        return owner + struct.pack("!HHIH", kind, 1, ttl, len(rdata)) + rdata

    at_question = b"\xc0\x0c"  # a pointer to the question's name (offset 12)
    alias = encoded("kms.regional.example")
    return {
        "seed-two-a": answer([record(at_question, 1, 60, bytes([52, 94, 140, 16])),
                              record(at_question, 1, 60, bytes([52, 94, 140, 250]))]),
        # the alias's name is the first record's rdata, at 12 + 29 (question name) + 4 + 2 + 10 = 57 = 0x39
        "seed-cname": answer([record(at_question, 5, 300, alias),
                              record(b"\xc0\x39", 1, 30, bytes([10, 0, 0, 1]))]),
        "seed-aaaa": answer([record(at_question, 28, 120, bytes(15) + b"\x01")], kind=28),
        "seed-nxdomain": answer([], rcode=3),
    }


def tunnel_http() -> dict[str, bytes]:
    """KMS answers as the tunnel client reads them: a 200 with JSON, an error, two kept alive, a close."""
    ok = b'{"CiphertextForRecipient":"MIAGCSqGSIb3DQEHA6CAMIACAQIxggFr","KeyId":"arn:aws:kms:us-east-1:1:key/k"}'
    error = b'{"__type":"com.amazonaws.kms#NotFoundException","message":"Alias not found"}'

    def http(status: str, body: bytes, *extra: str) -> bytes:
        head = "".join(f"{line}\r\n" for line in ("x-amzn-RequestId: 1", "Content-Type: application/x-amz-json-1.1",
                                                   f"Content-Length: {len(body)}", *extra))
        return f"HTTP/1.1 {status}\r\n{head}\r\n".encode() + body

    return {
        "seed-ok": http("200 OK", ok),
        "seed-error": http("400 Bad Request", error),
        "seed-two": http("200 OK", ok) + http("500 Internal Server Error", b'{"__type":"KMSInternalException"}'),
        "seed-close": http("200 OK", ok, "Connection: close"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="rewrite the seed files")
    parser.add_argument("--new-keys", action="store_true", help="make new TEST keys (invalidates cms_decrypt seeds)")
    args = parser.parse_args(argv)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    make_keys(force=args.new_keys)
    written = 0
    for target, files in seeds().items():
        folder = CORPUS / target
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            path = folder / name
            if args.force or args.new_keys or not path.exists():
                path.write_bytes(data)
                written += 1
    print(f"wrote {written} seed file(s) under {CORPUS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
