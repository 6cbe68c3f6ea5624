"""The credentials channel (GetCredentials): its wire shape, its client, and the parent's server."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from nitrokit.wire.credentials import (
    CREDENTIALS_OPERATIONS,
    GET_CREDENTIALS,
    AwsCredentials,
    CredentialsClient,
    credentials_response,
    parse_credentials_response,
)
from nitrokit.wire.errors import InvalidResponseError
from nitrokit.wire.messages import Request
from nitrokit.wire.server import ServerLimits, ServerThread, WireServer

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
TOKEN = "IQoJb3JpZ2luX2VjEXAMPLETOKEN+/="
CREDENTIALS = AwsCredentials(access_key_id="AKIAIOSFODNN7EXAMPLE", secret_access_key=SECRET,
                             session_token=TOKEN, expiration=1_900_000_000.0)


def test_the_secrets_stay_out_of_repr() -> None:
    text = repr(CREDENTIALS)
    assert "AKIAIOSFODNN7EXAMPLE" in text
    assert SECRET not in text and TOKEN not in text


def test_expiry() -> None:
    assert CREDENTIALS.expires_within(100, now=1_900_000_000 - 50)
    assert not CREDENTIALS.expires_within(10, now=1_900_000_000 - 50)
    assert not AwsCredentials(access_key_id="A" * 16, secret_access_key="s").expires_within(10**9)


def test_the_response_round_trips() -> None:
    assert parse_credentials_response(credentials_response(CREDENTIALS)) == CREDENTIALS
    bare = AwsCredentials(access_key_id="A" * 16, secret_access_key="s")
    assert credentials_response(bare) == {"AccessKeyId": "A" * 16, "SecretAccessKey": "s"}


@pytest.mark.parametrize("response", [
    {"AccessKeyId": "short", "SecretAccessKey": SECRET},
    {"AccessKeyId": "AKIAIOSFODNN7EXAMPLE"},
    {"AccessKeyId": "AKIAIOSFODNN7EXAMPLE", "SecretAccessKey": SECRET + "\r\nX-Injected: 1"},
    {"AccessKeyId": "AKIAIOSFODNN7EXAMPLE", "SecretAccessKey": SECRET, "SessionToken": TOKEN + " x"},
    {"AccessKeyId": "AKIAIOSFODNN7EXAMPLE", "SecretAccessKey": SECRET, "Expiration": "tomorrow"},
    {"AccessKeyId": "AKIAIOSFODNN7EXAMPLE", "SecretAccessKey": None},
])
def test_a_bad_response_is_refused_without_its_secret(response: Mapping[str, Any]) -> None:
    with pytest.raises(InvalidResponseError) as caught:
        parse_credentials_response(response)
    assert SECRET not in str(caught.value) and TOKEN not in str(caught.value)


def test_the_client_fetches_over_the_wire(tmp_path: Path) -> None:
    async def handler(request: Request) -> Mapping[str, Any]:
        assert request.operation == GET_CREDENTIALS.name
        return credentials_response(CREDENTIALS)

    server = WireServer(ServerLimits(), handler, operations=CREDENTIALS_OPERATIONS, name="credentials",
                        listen=f"unix://{tmp_path / 'c.sock'}")
    with ServerThread(server) as running, CredentialsClient(running.address) as client:
        assert client.fetch() == CREDENTIALS
        assert client.fetch() == CREDENTIALS  # the connection is reused
        assert SECRET not in repr(client)
