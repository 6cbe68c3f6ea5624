"""SigV4 on the simulated KMS: every way a signature can be missing, malformed or wrong, seen from boto3.

Clients are plain boto3 clients; the clock-skew and tampering cases use botocore event hooks (re-signing at a
chosen time with botocore.auth, or changing the body after signing), and the malformed-header cases send
requests with http.client.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

from nitrokit.kms import DEFAULT_ACCESS_KEY, AccessKey, KmsSimConfig, SimulatedKms
from tests.test_kms_support import clock_shift_hook, post, sign_headers

ONE_ATTEMPT = Config(retries={"mode": "standard", "total_max_attempts": 1}, proxies={})
BODY = b'{"NumberOfBytes": 16}'


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatedKms]:
    second = AccessKey(access_key_id="AKIANITROKITSECOND01", secret_access_key="second-secret")
    with SimulatedKms(KmsSimConfig(credentials=(DEFAULT_ACCESS_KEY, second))) as simulator:
        yield simulator


def client_for(sim: SimulatedKms, *, access_key: str = DEFAULT_ACCESS_KEY.access_key_id,
               secret: str = DEFAULT_ACCESS_KEY.secret_access_key, token: str | None = None,
               region: str = "us-east-1", config: Config = ONE_ATTEMPT) -> Any:
    return boto3.session.Session().client("kms", endpoint_url=sim.url, region_name=region,
                                          aws_access_key_id=access_key, aws_secret_access_key=secret,
                                          aws_session_token=token, config=config)


def failure(client: Any) -> tuple[str, int, str]:
    with pytest.raises(ClientError) as caught:
        client.generate_random(NumberOfBytes=16)
    response = caught.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Message"]


def test_both_configured_keys_work(sim: SimulatedKms) -> None:
    assert len(client_for(sim).generate_random(NumberOfBytes=16)["Plaintext"]) == 16
    second = client_for(sim, access_key="AKIANITROKITSECOND01", secret="second-secret")
    assert len(second.generate_random(NumberOfBytes=16)["Plaintext"]) == 16


def test_wrong_secret_key(sim: SimulatedKms) -> None:
    code, status, message = failure(client_for(sim, secret="wJalrXUtnFEMI/K7MDENG/bPxRfiCYWRONGKEY"))
    assert (code, status) == ("InvalidSignatureException", 400)
    assert message.startswith("The request signature we calculated does not match the signature you provided.")


def test_other_keys_secret(sim: SimulatedKms) -> None:
    """A configured access key signed with the other configured key's secret."""
    assert failure(client_for(sim, secret="second-secret"))[:2] == ("InvalidSignatureException", 400)


def test_unknown_access_key(sim: SimulatedKms) -> None:
    assert failure(client_for(sim, access_key="AKIAUNKNOWNUNKNOWN00")) == (
        "UnrecognizedClientException", 400, "The security token included in the request is invalid.")


def test_unsigned_request(sim: SimulatedKms) -> None:
    client = client_for(sim, config=ONE_ATTEMPT.merge(Config(signature_version=UNSIGNED)))
    assert failure(client) == ("MissingAuthenticationTokenException", 400, "Request is missing Authentication Token")


def test_wrong_region(sim: SimulatedKms) -> None:
    assert failure(client_for(sim, region="eu-west-1")) == (
        "InvalidSignatureException", 400, "Credential should be scoped to a valid region, not 'eu-west-1'. ")


def test_tampered_body(sim: SimulatedKms) -> None:
    client = client_for(sim)

    def tamper(request: Any, **_: Any) -> None:  # after signing: same length, another value
        assert request.body == BODY
        request.body = b'{"NumberOfBytes": 64}'

    client.meta.events.register("before-send.kms.GenerateRandom", tamper)
    assert failure(client)[:2] == ("InvalidSignatureException", 400)


@pytest.mark.parametrize(("shift", "prefix"), [
    (timedelta(minutes=-6), "Signature expired: "),
    (timedelta(minutes=6), "Signature not yet current: "),
    (timedelta(days=-2), "Signature expired: "),
])
def test_clock_skew_refused(sim: SimulatedKms, shift: timedelta, prefix: str) -> None:
    client = client_for(sim)
    client.meta.events.register_last("request-created.kms", clock_shift_hook(shift))
    code, status, message = failure(client)
    assert (code, status) == ("InvalidSignatureException", 400)
    assert message.startswith(prefix)
    assert "5 min." in message


@pytest.mark.parametrize("shift", [timedelta(minutes=-4), timedelta(minutes=4)])
def test_clock_skew_within_five_minutes_accepted(sim: SimulatedKms, shift: timedelta) -> None:
    client = client_for(sim)
    client.meta.events.register_last("request-created.kms", clock_shift_hook(shift))
    assert len(client.generate_random(NumberOfBytes=16)["Plaintext"]) == 16


def test_session_tokens() -> None:
    keyed = AccessKey(access_key_id="ASIANITROKITTEMP0001", secret_access_key="temp-secret",
                      session_token="session-token-1")
    with SimulatedKms(KmsSimConfig(credentials=(keyed,))) as simulator:
        assert len(simulator.client().generate_random(NumberOfBytes=8)["Plaintext"]) == 8
        for token in (None, "session-token-2"):
            client = client_for(simulator, access_key=keyed.access_key_id, secret="temp-secret", token=token)
            assert failure(client)[:2] == ("UnrecognizedClientException", 400)
    with SimulatedKms() as simulator:  # a token the simulator never issued
        assert failure(client_for(simulator, token="unexpected"))[:2] == ("UnrecognizedClientException", 400)


# --- hand-made Authorization headers (http.client) ---------------------------------------------------------

def _with_authorization(headers: dict[str, str], value: str | None) -> dict[str, str]:
    changed = {name: v for name, v in headers.items() if name.lower() != "authorization"}
    if value is not None:
        changed["Authorization"] = value
    return changed


def _authorization_parts(headers: dict[str, str]) -> dict[str, str]:
    _, _, rest = headers["Authorization"].partition(" ")
    return dict(part.strip().split("=", 1) for part in rest.split(","))


def test_correct_manual_signature_accepted(sim: SimulatedKms) -> None:
    status, headers, body = post(sim, BODY, sign_headers(sim.url, BODY))
    assert status == 200
    assert len(body["Plaintext"]) > 0
    assert headers["x-amzn-requestid"]


@pytest.mark.parametrize(("make", "code", "fragment"), [
    (lambda p: "Bearer abc.def.ghi", "IncompleteSignatureException", "requires 'Credential' parameter"),
    (lambda p: f"AWS4-HMAC-SHA512 Credential={p['Credential']}, SignedHeaders={p['SignedHeaders']}, "
               f"Signature={p['Signature']}", "IncompleteSignatureException", "Unsupported AWS 'algorithm'"),
    (lambda p: f"AWS4-HMAC-SHA256 Credential={p['Credential']}, Signature={p['Signature']}",
     "IncompleteSignatureException", "requires 'SignedHeaders' parameter"),
    (lambda p: f"AWS4-HMAC-SHA256 Credential={p['Credential']}, SignedHeaders={p['SignedHeaders']}, Signature",
     "IncompleteSignatureException", "missing equal-sign"),
    (lambda p: f"AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20250101, SignedHeaders={p['SignedHeaders']}, "
               f"Signature={p['Signature']}", "IncompleteSignatureException", "5 slash-delimited elements"),
    (lambda p: f"AWS4-HMAC-SHA256 Credential={p['Credential'].replace('/kms/', '/s3/')}, "
               f"SignedHeaders={p['SignedHeaders']}, Signature={p['Signature']}",
     "InvalidSignatureException", "scoped to correct service: 'kms'"),
    (lambda p: f"AWS4-HMAC-SHA256 Credential={p['Credential'].replace('aws4_request', 'aws5_request')}, "
               f"SignedHeaders={p['SignedHeaders']}, Signature={p['Signature']}",
     "InvalidSignatureException", "valid terminator"),
    (lambda p: f"AWS4-HMAC-SHA256 Credential={p['Credential']}, "
               f"SignedHeaders={p['SignedHeaders'].replace('host;', '')}, Signature={p['Signature']}",
     "InvalidSignatureException", "'Host' or ':authority' must be a 'SignedHeader'"),
    (lambda p: f"AWS4-HMAC-SHA256 Credential={p['Credential']}, "
               f"SignedHeaders={p['SignedHeaders'].replace(';x-amz-date', '')}, Signature={p['Signature']}",
     "InvalidSignatureException", "'X-Amz-Date' must be a 'SignedHeader'"),
    (lambda p: f"AWS4-HMAC-SHA256 Credential={p['Credential']}, SignedHeaders={p['SignedHeaders']}, "
               f"Signature={'0' * 64}", "InvalidSignatureException", "does not match"),
    (lambda p: f"AWS4-HMAC-SHA256 Credential={p['Credential']}, SignedHeaders={p['SignedHeaders']};x-missing, "
               f"Signature={p['Signature']}", "InvalidSignatureException", "does not match"),
    (lambda p: f"AWS4-HMAC-SHA256 Credential={p['Credential'][:21]}20000101{p['Credential'][29:]}, "
               f"SignedHeaders={p['SignedHeaders']}, Signature={p['Signature']}",
     "InvalidSignatureException", "Date in Credential scope does not match"),
], ids=["bearer", "sha512", "no-signed-headers", "no-equals", "short-scope", "service-s3", "terminator",
        "host-unsigned", "date-unsigned", "zero-signature", "absent-signed-header", "scope-date"])
def test_malformed_authorization(sim: SimulatedKms, make: Any, code: str, fragment: str) -> None:
    headers = sign_headers(sim.url, BODY)
    status, response_headers, body = post(sim, BODY, _with_authorization(headers, make(_authorization_parts(headers))))
    assert (status, body["__type"]) == (400, code)
    assert fragment in body["message"]
    assert response_headers["x-amzn-requestid"]
    assert headers["Authorization"].split("Signature=")[1] not in body["message"]  # signatures are not echoed


def test_missing_x_amz_date(sim: SimulatedKms) -> None:
    headers = {name: value for name, value in sign_headers(sim.url, BODY).items() if name != "X-Amz-Date"}
    status, _, body = post(sim, BODY, headers)
    assert (status, body["__type"]) == (400, "IncompleteSignatureException")
    assert "'X-Amz-Date'" in body["message"]


def test_malformed_x_amz_date(sim: SimulatedKms) -> None:
    headers = sign_headers(sim.url, BODY)
    headers["X-Amz-Date"] = "2025-01-01T00:00:00Z"
    status, _, body = post(sim, BODY, headers)
    assert (status, body["__type"]) == (400, "IncompleteSignatureException")


def test_signed_at_a_chosen_time(sim: SimulatedKms) -> None:
    """Signing manually with botocore.auth at a time 10 minutes ago: expired, with AWS's message shape."""
    at = datetime.now(UTC) - timedelta(minutes=10)
    status, _, body = post(sim, BODY, sign_headers(sim.url, BODY, at=at))
    assert (status, body["__type"]) == (400, "InvalidSignatureException")
    assert body["message"].startswith(f"Signature expired: {at.strftime('%Y%m%dT%H%M%SZ')} is now earlier than ")


def test_unsigned_header_may_change_but_signed_one_may_not(sim: SimulatedKms) -> None:
    headers = sign_headers(sim.url, BODY)
    status, _, _ = post(sim, BODY, {**headers, "User-Agent": "changed-after-signing"})
    assert status == 200
    status, _, body = post(sim, BODY, {**headers, "X-Amz-Target": "TrentService.Decrypt"})
    assert (status, body["__type"]) == (400, "InvalidSignatureException")


def test_false_content_sha256_refused(sim: SimulatedKms) -> None:
    other = b'{"NumberOfBytes": 64}'
    headers = sign_headers(sim.url, BODY)
    status, _, body = post(sim, other, {**headers, "X-Amz-Content-SHA256": hashlib.sha256(BODY).hexdigest()})
    assert (status, body["__type"]) == (400, "InvalidSignatureException")


def test_signature_checked_before_body(sim: SimulatedKms) -> None:
    """Bad JSON with a bad signature is a signature error: nothing unauthenticated is parsed."""
    headers = sign_headers(sim.url, BODY)
    status, _, body = post(sim, b"{not json", headers)
    assert (status, body["__type"]) == (400, "InvalidSignatureException")
    status, _, body = post(sim, b"{not json", sign_headers(sim.url, b"{not json"))
    assert (status, body["__type"]) == (400, "SerializationException")
    assert json.dumps(body)  # a well-formed error body either way


# --- any_credentials (issue 12, item 21): any key signs; the SigV4 form is still checked ---------------------

@pytest.fixture(scope="module")
def any_sim() -> Iterator[SimulatedKms]:
    with SimulatedKms(KmsSimConfig(any_credentials=True)) as simulator:
        yield simulator


def test_strict_by_default() -> None:
    assert KmsSimConfig().any_credentials is False


def test_any_credentials_accepts_any_key_secret_and_token(any_sim: SimulatedKms) -> None:
    for client in (client_for(any_sim, access_key="AKIAANYTHINGATALL000", secret="whatever"),
                   client_for(any_sim, access_key="test", secret="test", token="any-session-token"),
                   client_for(any_sim)):
        assert len(client.generate_random(NumberOfBytes=16)["Plaintext"]) == 16


@pytest.mark.parametrize(("change", "code"), [
    ({"region": "eu-west-1"}, "InvalidSignatureException"),
    ({"config": ONE_ATTEMPT.merge(Config(signature_version=UNSIGNED))}, "MissingAuthenticationTokenException"),
], ids=["wrong-region", "unsigned"])
def test_any_credentials_still_checks_the_scope_and_that_requests_are_signed(any_sim: SimulatedKms,
                                                                            change: dict[str, Any],
                                                                            code: str) -> None:
    assert failure(client_for(any_sim, access_key="AKIAANYTHINGATALL000", secret="x", **change))[:2] == (code, 400)


@pytest.mark.parametrize(("signature", "accepted"), [("0" * 64, True), ("0" * 63, False), ("G" * 64, False),
                                                     ("ab" * 32 + "00", False)])
def test_any_credentials_checks_the_signature_form_only(any_sim: SimulatedKms, signature: str,
                                                         accepted: bool) -> None:
    headers = sign_headers(any_sim.url, BODY)
    parts = _authorization_parts(headers)
    status, _, body = post(any_sim, BODY, _with_authorization(headers, (
        f"AWS4-HMAC-SHA256 Credential={parts['Credential']}, SignedHeaders={parts['SignedHeaders']}, "
        f"Signature={signature}")))
    assert (status == 200) == accepted, body
    if not accepted:
        assert body["__type"] == "InvalidSignatureException"


def test_any_credentials_from_a_config_file_and_the_command_line(tmp_path: Any) -> None:
    from nitrokit.cli import build_parser
    from nitrokit.cli.kms_sim import build_config
    from nitrokit.kms import load_config

    path = tmp_path / "kms.json"
    path.write_text(json.dumps({"any_credentials": True}))
    assert load_config(path).any_credentials is True
    path.write_text(json.dumps({"any_credentials": "yes"}))
    with pytest.raises(Exception, match="any_credentials must be true or false"):
        load_config(path)
    assert build_config(build_parser().parse_args(["kms-sim", "--any-credentials"])).any_credentials is True
    assert build_config(build_parser().parse_args(["kms-sim"])).any_credentials is False
