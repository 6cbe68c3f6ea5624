"""Shared helpers for the simulated-KMS tests (no tests here).

Recipient keys and documents, a foreign P-384 chain, and signing requests with botocore's SigV4 code at a
chosen time, for the raw-HTTP and clock-skew tests.
"""

from __future__ import annotations

import functools
import http.client
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.auth import SIGV4_TIMESTAMP, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from nitrokit.kms import DEFAULT_ACCESS_KEY, AccessKey, SimulatedKms
from nitrokit.testing import FixturePki
from nitrokit.testing.documents import build_document
from nitrokit.testing.pki import ca_key_usage

CONTENT_TYPE = "application/x-amz-json-1.1"
TARGET = "TrentService.GenerateRandom"
ALGORITHM = "RSAES_OAEP_SHA_256"


@functools.cache
def rsa_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    """One RSA key per size per test process (generation is the slow part)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def spki(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def recipient(document: bytes | None, algorithm: str = ALGORITHM) -> dict[str, Any]:
    assert document is not None
    return {"AttestationDocument": document, "KeyEncryptionAlgorithm": algorithm}


def good_document(**kwargs: Any) -> bytes:
    """A fixture-root document issued now, carrying the module's RSA-2048 public key."""
    kwargs.setdefault("public_key", spki(rsa_key()))
    return build_document(**kwargs)


@functools.cache
def foreign_pki() -> FixturePki:
    """A self-made root -> regional -> zonal -> instance P-384 chain that no simulator trusts by default."""
    not_before = datetime(2020, 1, 1, tzinfo=UTC)
    chain: list[tuple[x509.Certificate, ec.EllipticCurvePrivateKey]] = []
    for index, role in enumerate(("root", "regional", "zonal", "instance")):
        key = ec.generate_private_key(ec.SECP384R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"foreign {role}")])
        issuer_cert, issuer_key = chain[-1] if chain else (None, key)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(issuer_cert.subject if issuer_cert else name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(datetime(2059, 1, 1, tzinfo=UTC))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None if index == 0 else 3 - index),
                           critical=True)
            .add_extension(ca_key_usage(), critical=True)
            .sign(issuer_key, hashes.SHA384())
        )
        chain.append((cert, key))
    return FixturePki(cas=tuple(cert for cert, _ in chain), instance_key=chain[-1][1])


def sign_headers(
    url: str,
    body: bytes,
    *,
    target: str = TARGET,
    content_type: str = CONTENT_TYPE,
    key: AccessKey = DEFAULT_ACCESS_KEY,
    region: str = "us-east-1",
    service: str = "kms",
    at: datetime | None = None,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    """Headers of a request signed by botocore's SigV4Auth as of ``at`` (default now)."""
    request = AWSRequest(method="POST", url=url + "/", data=body,
                         headers={"Content-Type": content_type, "X-Amz-Target": target, **(extra or {})})
    sign_request_at(request, at or datetime.now(UTC), key=key, region=region, service=service)
    return {name: value for name, value in request.headers.items()}


def sign_request_at(request: AWSRequest, at: datetime, *, key: AccessKey = DEFAULT_ACCESS_KEY,
                    region: str = "us-east-1", service: str = "kms") -> None:
    """(Re-)sign ``request`` with botocore's SigV4 algorithm as if the clock said ``at``."""
    for name in ("Authorization", "X-Amz-Date", "X-Amz-Security-Token"):
        del request.headers[name]
    stamp = at.astimezone(UTC).strftime(SIGV4_TIMESTAMP)
    request.headers["X-Amz-Date"] = stamp
    if key.session_token:
        request.headers["X-Amz-Security-Token"] = key.session_token
    request.context["timestamp"] = stamp
    signer = SigV4Auth(Credentials(key.access_key_id, key.secret_access_key), service, region)
    canonical = signer.canonical_request(request)
    signature = signer.signature(signer.string_to_sign(request, canonical), request)
    signed = signer.signed_headers(signer.headers_to_sign(request))
    request.headers["Authorization"] = (f"AWS4-HMAC-SHA256 Credential={signer.scope(request)}, "
                                        f"SignedHeaders={signed}, Signature={signature}")


def clock_shift_hook(shift: timedelta, *, key: AccessKey = DEFAULT_ACCESS_KEY, region: str = "us-east-1") -> Any:
    """A botocore 'request-created' handler that re-signs each request with the clock moved by ``shift``."""
    def handler(request: AWSRequest, **_: Any) -> None:
        sign_request_at(request, datetime.now(UTC) + shift, key=key, region=region)
    return handler


def post(sim: SimulatedKms, body: bytes, headers: dict[str, str], *,
         connection: http.client.HTTPConnection | None = None) -> tuple[int, dict[str, str], dict[str, Any]]:
    """POST / over http.client; return (status, lower-cased headers, parsed JSON body)."""
    host, port = sim.address
    conn = connection or http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request("POST", "/", body=body, headers=headers)
        response = conn.getresponse()
        raw = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, json.loads(raw)
    finally:
        if connection is None:
            conn.close()
