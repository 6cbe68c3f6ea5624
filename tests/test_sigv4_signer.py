"""The enclave's own SigV4 signer (tunnel mode; no botocore in the image) checked against botocore's.

Byte for byte against :class:`botocore.auth.SigV4Auth` for the same request at the same instant, with and
without a session token, and accepted by the simulated KMS, whose verifier is botocore's.
"""

from __future__ import annotations

import http.client
import json
from datetime import UTC, datetime
from unittest import mock

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from nitrokit.enclave._sigv4 import SigV4Signer
from nitrokit.enclave.nsm import SimulatedNsm
from nitrokit.kms import KmsSimConfig, SimulatedKms
from nitrokit.kms.config import AccessKey
from nitrokit.wire.credentials import AwsCredentials
from nitrokit.wire.kms import GENERATE_RANDOM, recipient_info
from tests.test_kms_support import rsa_key, spki

ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
TOKEN = "IQoJb3JpZ2luX2VjEXAMPLETOKEN+/=="
CONTENT_TYPE = "application/x-amz-json-1.1"
AT = datetime(2026, 12, 3, 14, 5, 9, tzinfo=UTC)


def _body() -> bytes:
    request = GENERATE_RANDOM.encode_request({"NumberOfBytes": 32, "Recipient": recipient_info(b"\x01" * 40)})
    return json.dumps(request, separators=(",", ":")).encode()


def _botocore_headers(*, host: str, region: str, body: bytes, target: str, token: str | None,
                      secret: str = SECRET) -> dict[str, str]:
    request = AWSRequest(method="POST", url=f"https://{host}/", data=body,
                         headers={"Content-Type": CONTENT_TYPE, "X-Amz-Target": target})
    with mock.patch("botocore.auth.get_current_datetime", return_value=AT.replace(tzinfo=None)):
        SigV4Auth(Credentials(ACCESS_KEY, secret, token), "kms", region).add_auth(request)
    return {name.lower(): value for name, value in request.headers.items()}


@pytest.mark.parametrize("token", [None, TOKEN], ids=["long-term", "session-token"])
@pytest.mark.parametrize(("host", "region"), [("kms.eu-west-1.amazonaws.com", "eu-west-1"),
                                              ("kms-fips.us-gov-west-1.amazonaws.com", "us-gov-west-1")])
def test_the_headers_are_botocores_byte_for_byte(token: str | None, host: str, region: str) -> None:
    body = _body()
    target = "TrentService.GenerateRandom"
    ours = SigV4Signer(region).sign(
        host=host, headers={"content-type": CONTENT_TYPE, "x-amz-target": target}, body=body, now=AT,
        credentials=AwsCredentials(access_key_id=ACCESS_KEY, secret_access_key=SECRET, session_token=token))
    theirs = _botocore_headers(host=host, region=region, body=body, target=target, token=token)
    assert ours.pop("host") == host  # botocore takes the host from the URL when it sends
    assert ours == theirs
    assert ("x-amz-security-token" in ours) == (token is not None)
    assert "SignedHeaders=content-type;host;x-amz-date;" in ours["authorization"]


def test_the_cached_signing_key_follows_the_secret_and_the_date() -> None:
    signer = SigV4Signer("us-east-1")
    host, target, body = "kms.us-east-1.amazonaws.com", "TrentService.Decrypt", b'{"a":"\\u00e9"}'
    for secret, at in ((SECRET, AT), (SECRET, AT), ("another/secret+key", AT),
                       ("another/secret+key", AT.replace(day=4))):
        ours = signer.sign(host=host, headers={"content-type": CONTENT_TYPE, "x-amz-target": target}, body=body,
                           credentials=AwsCredentials(access_key_id=ACCESS_KEY, secret_access_key=secret), now=at)
        with mock.patch("botocore.auth.get_current_datetime", return_value=at.replace(tzinfo=None)):
            request = AWSRequest(method="POST", url=f"https://{host}/", data=body,
                                 headers={"Content-Type": CONTENT_TYPE, "X-Amz-Target": target})
            SigV4Auth(Credentials(ACCESS_KEY, secret), "kms", "us-east-1").add_auth(request)
        assert ours["authorization"] == request.headers["Authorization"]
    assert SECRET not in repr(signer)


def _post(kms: SimulatedKms, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, object]]:
    host, port = kms.address
    connection = http.client.HTTPConnection(host, port, timeout=10)
    try:
        connection.request("POST", "/", body=body, headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


@pytest.mark.parametrize("token", [None, TOKEN], ids=["long-term", "session-token"])
def test_the_simulated_kms_accepts_the_signature(token: str | None) -> None:
    """The simulator's verifier is botocore's: it recomputes the signature from the bytes it received."""
    key = AccessKey(access_key_id=ACCESS_KEY, secret_access_key=SECRET, session_token=token)
    with SimulatedKms(KmsSimConfig(credentials=(key,))) as kms:
        document = SimulatedNsm().attestation(public_key=spki(rsa_key()))
        request = GENERATE_RANDOM.encode_request({"NumberOfBytes": 16, "Recipient": recipient_info(document)})
        body = json.dumps(request, separators=(",", ":")).encode()
        host = "{}:{}".format(*kms.address)
        signer = SigV4Signer("us-east-1")

        def send(secret: str, session_token: str | None) -> tuple[int, dict[str, object]]:
            headers = signer.sign(host=host, body=body, headers={
                "content-type": CONTENT_TYPE, "x-amz-target": "TrentService.GenerateRandom"},
                credentials=AwsCredentials(access_key_id=ACCESS_KEY, secret_access_key=secret,
                                           session_token=session_token))
            return _post(kms, headers, body)

        status, answer = send(SECRET, token)
        assert status == 200 and "CiphertextForRecipient" in answer, answer
        # The simulator does check: a wrong secret, or a token that is missing or not the one it knows, fails.
        status, answer = send("a wrong secret", token)
        assert (status, answer["__type"]) == (400, "InvalidSignatureException")
        status, answer = send(SECRET, None if token is not None else TOKEN)
        assert (status, answer["__type"]) == (400, "UnrecognizedClientException")
