"""The simulated KMS: GenerateRandom calls per second through boto3 on loopback, and where the time goes.

    python bench/bench_kms.py [--seconds S]

Measured in the same run, interleaved (bench/_harness.py):

- raw P-384 ECDSA verify and raw RSA-2048 OAEP-SHA256 encrypt (cryptography/OpenSSL): the crypto a
  Recipient call can not avoid (one COSE signature check with a warm Verifier, one RSA encryption);
- the attestation check (the simulator's Verifier, warm) and the envelope build (common.cms), each beside
  its raw crypto;
- the whole server-side handling without HTTP (SigV4 check, JSON, validation, operation), the same over
  HTTP/1.1 keep-alive with http.client and a pre-signed request, and the same through a boto3 client.

The per-call breakdown subtracts neighbouring layers: server rest = service - attestation - envelope,
HTTP = http.client call - service, boto3 = boto3 call - http.client call.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import logging
import sys
from datetime import UTC, datetime
from email.message import Message
from pathlib import Path

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._harness import Row, best_rates, print_table, row
from common.attestation import Policy, Verifier
from common.cms import encrypt_for_recipient
from common.cms._build import OAEP_SHA256
from common.kms import DEFAULT_ACCESS_KEY, KmsSimConfig, SimulatedKms, _sigv4
from common.kms._service import KmsService
from common.testing import build_document, fixture_pki

COUNT = 32
TARGET = "TrentService.GenerateRandom"
CONTENT_TYPE = "application/x-amz-json-1.1"


def _signed_headers(url: str, body: bytes) -> dict[str, str]:
    request = AWSRequest(method="POST", url=url + "/", data=body,
                         headers={"Content-Type": CONTENT_TYPE, "X-Amz-Target": TARGET})
    key = DEFAULT_ACCESS_KEY
    SigV4Auth(Credentials(key.access_key_id, key.secret_access_key), "kms", "us-east-1").add_auth(request)
    return dict(request.headers.items())


def _message(headers: dict[str, str], host: str) -> Message:
    message = Message()
    message["Host"] = host
    for name, value in headers.items():
        message[name] = value
    return message


def run(seconds: float = 2.0) -> list[Row]:
    """Measure, spending about ``seconds`` on each figure; return the table's rows."""
    logging.getLogger("nitrokit.kms_sim").setLevel(logging.WARNING)  # no per-request log lines in the timing
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = rsa_key.public_key()
    spki = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    document = build_document(public_key=spki, at=datetime.now(UTC))
    ec_key = ec.generate_private_key(ec.SECP384R1())
    message = b"x" * 4096
    ec_signature = ec_key.sign(message, ec.ECDSA(hashes.SHA384()))
    verifier = Verifier(root=fixture_pki().root)
    accept_debug = Policy(allow_debug=True)

    plain_body = json.dumps({"NumberOfBytes": COUNT}).encode()
    recipient_body = json.dumps({"NumberOfBytes": COUNT, "Recipient": {
        "AttestationDocument": base64.b64encode(document).decode(), "KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256",
    }}).encode()
    recipient_args = {"AttestationDocument": document, "KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256"}

    with SimulatedKms(KmsSimConfig()) as sim:
        host, port = sim.address
        netloc = f"{host}:{port}"
        plain_headers = _signed_headers(sim.url, plain_body)
        recipient_headers = _signed_headers(sim.url, recipient_body)
        plain_message, recipient_message = _message(plain_headers, netloc), _message(recipient_headers, netloc)
        service = KmsService(KmsSimConfig())
        connection = http.client.HTTPConnection(host, port, timeout=30)
        client = sim.client()

        def over_http(body: bytes, headers: dict[str, str]) -> None:
            connection.request("POST", "/", body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            assert response.status == 200, response.status

        def service_call(body: bytes, headers: Message) -> None:
            assert service.handle(method="POST", path="/", headers=headers, body=body).status == 200

        rates = best_rates({
            "raw_verify": lambda: ec_key.public_key().verify(ec_signature, message, ec.ECDSA(hashes.SHA384())),
            "raw_encrypt": lambda: public.encrypt(b"k" * 32, OAEP_SHA256),
            "attest": lambda: verifier.verify(document, policy=accept_debug),
            "envelope": lambda: encrypt_for_recipient(b"r" * COUNT, public),
            "sigv4": lambda: _sigv4.verify_request(method="POST", path="/", headers=recipient_message,
                                                   body=recipient_body, credentials=(DEFAULT_ACCESS_KEY,),
                                                   region="us-east-1"),
            "service_plain": lambda: service_call(plain_body, plain_message),
            "service_recipient": lambda: service_call(recipient_body, recipient_message),
            "http_plain": lambda: over_http(plain_body, plain_headers),
            "http_recipient": lambda: over_http(recipient_body, recipient_headers),
            "boto3_plain": lambda: client.generate_random(NumberOfBytes=COUNT),
            "boto3_recipient": lambda: client.generate_random(NumberOfBytes=COUNT, Recipient=recipient_args),
        }, seconds=seconds)
        connection.close()

    def us(name: str) -> float:
        return 1e6 / rates[name]

    total = us("boto3_recipient")
    server_rest = us("service_recipient") - us("attest") - us("envelope")
    http_part = us("http_recipient") - us("service_recipient")
    boto3_part = us("boto3_recipient") - us("http_recipient")
    return [
        row("raw P-384 ECDSA verify", rates["raw_verify"], "ops/s", note="cryptography (OpenSSL)"),
        row("raw RSA-2048 OAEP-SHA256 encrypt", rates["raw_encrypt"], "ops/s", note="cryptography (OpenSSL)"),
        row("GenerateRandom via boto3, Plaintext", rates["boto3_plain"], "calls/s",
            note=f"{COUNT} bytes, one client, keep-alive"),
        row("GenerateRandom via boto3, Recipient", rates["boto3_recipient"], "calls/s",
            ratio=rates["boto3_recipient"] / rates["raw_verify"], note="ratio: vs raw P-384 verifies/s"),
        row("  same over http.client, Plaintext", rates["http_plain"], "calls/s", note="pre-signed request"),
        row("  same over http.client, Recipient", rates["http_recipient"], "calls/s"),
        row("  server-side only, Plaintext", rates["service_plain"], "calls/s", note="KmsService.handle, no HTTP"),
        row("  server-side only, Recipient", rates["service_recipient"], "calls/s"),
        row("Recipient call: attestation check", us("attest"), "us/call", ratio=us("attest") / us("raw_verify"),
            note="ratio: vs one raw P-384 verify (warm Verifier)"),
        row("Recipient call: envelope build", us("envelope"), "us/call", ratio=us("envelope") / us("raw_encrypt"),
            note="ratio: vs one raw RSA-2048 OAEP encrypt"),
        row("Recipient call: rest of the server", server_rest, "us/call", ratio=server_rest / total,
            note=f"ratio: share of the boto3 call; SigV4 check alone {us('sigv4'):.0f} us"),
        row("Recipient call: HTTP (both ends)", http_part, "us/call", ratio=http_part / total,
            note="ratio: share of the boto3 call"),
        row("Recipient call: boto3", boto3_part, "us/call", ratio=boto3_part / total,
            note="ratio: share of the boto3 call (serialise, sign, parse)"),
        row("Recipient call: total through boto3", total, "us/call", ratio=1.0),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0, help="time budget per figure")
    args = parser.parse_args()
    print_table("simulated KMS, GenerateRandom on loopback", run(args.seconds))


if __name__ == "__main__":
    main()
