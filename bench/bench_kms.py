"""The simulated KMS: GenerateRandom calls per second through boto3 on loopback, and where the time goes.

    python bench/bench_kms.py [--seconds S]

Measured in the same run, interleaved (bench/_harness.py):

- raw P-384 ECDSA verify and raw RSA-2048 OAEP-SHA256 encrypt (cryptography/OpenSSL): the crypto a
  Recipient call can not avoid (one COSE signature check with a warm Verifier, one RSA encryption);
- the attestation check (the simulator's Verifier, warm) and the envelope build (nitrokit.cms), each beside
  its raw crypto;
- calls over HTTP/1.1 keep-alive with http.client (a pre-signed request) and through a boto3 client, with
  the server's own time, its attestation check and its envelope build timed from inside the running
  simulator during those same calls.

Breakdown of a Recipient call through boto3: attestation and envelope as timed in the server; the rest of
the server (SigV4, JSON, validation) = server time - those two; HTTP = an http.client call's wall time -
its server time; boto3 = the boto3 call's wall time - its server time - HTTP.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import logging
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import Message
from pathlib import Path
from typing import Any, TypeVar

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._harness import Row, best_rates, print_table, row
from nitrokit.attestation import Policy, Verifier
from nitrokit.cms import encrypt_for_recipient
from nitrokit.cms._build import OAEP_SHA256
from nitrokit.kms import DEFAULT_ACCESS_KEY, KmsSimConfig, SimulatedKms, _generate_random, _sigv4
from nitrokit.testing import build_document, fixture_pki

COUNT = 32
ROUNDS = 5
T = TypeVar("T")
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


class _Clock:
    """Adds up the time spent in wrapped callables (server side, measured inside the running simulator)."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = {}

    def wrap(self, name: str, function: Callable[..., T]) -> Callable[..., T]:
        def timed(*args: Any, **kwargs: Any) -> T:
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.totals[name] = self.totals.get(name, 0.0) + time.perf_counter() - start
        return timed


def _instrumented(operation: Callable[[], object], clock: _Clock, seconds: float) -> dict[str, float]:
    """Run ``operation`` for ``seconds``; per-call microseconds of the wall clock and of each wrapped part."""
    operation()
    clock.totals.clear()
    calls = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        operation()
        calls += 1
    wall = time.perf_counter() - start
    return {"wall": wall * 1e6 / calls, **{name: total * 1e6 / calls for name, total in clock.totals.items()}}


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
    recipient_message = _message(_signed_headers("http://127.0.0.1:1", recipient_body), "127.0.0.1:1")

    raw = best_rates({
        "raw_verify": lambda: ec_key.public_key().verify(ec_signature, message, ec.ECDSA(hashes.SHA384())),
        "raw_encrypt": lambda: public.encrypt(b"k" * 32, OAEP_SHA256),
        "attest": lambda: verifier.verify(document, policy=accept_debug),
        "envelope": lambda: encrypt_for_recipient(b"r" * COUNT, public),
        "sigv4": lambda: _sigv4.verify_request(method="POST", path="/", headers=recipient_message,
                                               body=recipient_body, credentials=(DEFAULT_ACCESS_KEY,),
                                               region="us-east-1"),
    }, seconds=seconds)

    clock = _Clock()
    with SimulatedKms(KmsSimConfig()) as sim:
        # Time the server's parts from inside: the whole handler, the attestation check, the envelope.
        service = sim._service
        service.handle = clock.wrap("server", service.handle)  # type: ignore[method-assign]
        service._verifier.verify = clock.wrap("attest", service._verifier.verify)  # type: ignore[method-assign]
        original_encrypt = _generate_random.encrypt_for_recipient  # type: ignore[attr-defined]
        _generate_random.encrypt_for_recipient = clock.wrap(  # type: ignore[attr-defined]
            "envelope", original_encrypt)
        host, port = sim.address
        plain_headers = _signed_headers(sim.url, plain_body)
        recipient_headers = _signed_headers(sim.url, recipient_body)
        connection = http.client.HTTPConnection(host, port, timeout=30)
        client = sim.client()

        def over_http(body: bytes, headers: dict[str, str]) -> None:
            connection.request("POST", "/", body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            assert response.status == 200, response.status

        operations: dict[str, Callable[[], object]] = {
            "http_plain": lambda: over_http(plain_body, plain_headers),
            "http_recipient": lambda: over_http(recipient_body, recipient_headers),
            "boto3_plain": lambda: client.generate_random(NumberOfBytes=COUNT),
            "boto3_recipient": lambda: client.generate_random(NumberOfBytes=COUNT, Recipient=recipient_args),
        }
        best: dict[str, dict[str, float]] = {}
        try:
            for _ in range(ROUNDS):  # interleaved; keep each figure's least disturbed round
                for name, operation in operations.items():
                    result = _instrumented(operation, clock, seconds / ROUNDS)
                    if name not in best or result["wall"] < best[name]["wall"]:
                        best[name] = result
        finally:
            _generate_random.encrypt_for_recipient = original_encrypt  # type: ignore[attr-defined]
            connection.close()

    def us(name: str) -> float:
        return 1e6 / raw[name]

    call = best["boto3_recipient"]
    total = call["wall"]
    server_rest = call["server"] - call["attest"] - call["envelope"]
    http_part = best["http_recipient"]["wall"] - best["http_recipient"]["server"]
    boto3_part = total - call["server"] - http_part
    return [
        row("raw P-384 ECDSA verify", raw["raw_verify"], "ops/s", note="cryptography (OpenSSL)"),
        row("raw RSA-2048 OAEP-SHA256 encrypt", raw["raw_encrypt"], "ops/s", note="cryptography (OpenSSL)"),
        row("GenerateRandom via boto3, Plaintext", 1e6 / best["boto3_plain"]["wall"], "calls/s",
            note=f"{COUNT} bytes, one client, keep-alive"),
        row("GenerateRandom via boto3, Recipient", 1e6 / total, "calls/s",
            ratio=1e6 / total / raw["raw_verify"], note="ratio: vs raw P-384 verifies/s"),
        row("  same over http.client, Plaintext", 1e6 / best["http_plain"]["wall"], "calls/s",
            note="pre-signed request, keep-alive"),
        row("  same over http.client, Recipient", 1e6 / best["http_recipient"]["wall"], "calls/s"),
        row("attestation check, alone", us("attest"), "us/call", ratio=us("attest") / us("raw_verify"),
            note="ratio: vs one raw P-384 verify (warm Verifier)"),
        row("envelope build, alone", us("envelope"), "us/call", ratio=us("envelope") / us("raw_encrypt"),
            note="ratio: vs one raw RSA-2048 OAEP encrypt"),
        row("SigV4 check, alone", us("sigv4"), "us/call", note="botocore canonicalisation + HMAC-SHA256 chain"),
        row("Recipient call: attestation check", call["attest"], "us/call", ratio=call["attest"] / total,
            note="in the server; ratio: share of the boto3 call"),
        row("Recipient call: envelope build", call["envelope"], "us/call", ratio=call["envelope"] / total),
        row("Recipient call: rest of the server", server_rest, "us/call", ratio=server_rest / total,
            note="SigV4, JSON, base64, validation, log"),
        row("Recipient call: HTTP (both ends)", http_part, "us/call", ratio=http_part / total,
            note="http.client call minus server time"),
        row("Recipient call: boto3", boto3_part, "us/call", ratio=boto3_part / total,
            note="serialise, sign, parse, retries bookkeeping"),
        row("Recipient call: total through boto3", total, "us/call", ratio=1.0),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0, help="time budget per figure")
    args = parser.parse_args()
    print_table("simulated KMS, GenerateRandom on loopback", run(args.seconds))


if __name__ == "__main__":
    main()
