"""The credentials channel (GetCredentials): its wire shape, its client, and the parent's server."""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from nitrokit.errors import UsageError
from nitrokit.parent._credentials import boto3_credentials_source
from nitrokit.parent.tunnel import TunnelConfig, TunnelThread
from nitrokit.wire.address import Address
from nitrokit.wire.client import WireClient
from nitrokit.wire.credentials import (
    CREDENTIALS_OPERATIONS,
    GET_CREDENTIALS,
    AwsCredentials,
    CredentialsClient,
    credentials_response,
    parse_credentials_response,
)
from nitrokit.wire.errors import ErrorCode, InvalidResponseError, RemoteError
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


# -- the parent's side: the channel beside the tunnel ----------------------------------------------------------


def _channel(tmp_path: Path, source: Callable[[], AwsCredentials], **options: Any) -> TunnelThread:
    config = TunnelConfig(listen=f"unix://{tmp_path / 't.sock'}", target="127.0.0.1:9",
                          credentials_listen=f"unix://{tmp_path / 'c.sock'}", **options)
    return TunnelThread(config, credentials_source=source)


def _address(running: TunnelThread) -> Address:
    assert running.credentials_address is not None
    return running.credentials_address


def test_new_credentials_from_the_source_are_served(tmp_path: Path) -> None:
    current = [CREDENTIALS]
    with _channel(tmp_path, lambda: current[0]) as running, CredentialsClient(_address(running)) as client:
        assert client.fetch() == CREDENTIALS
        renewed = AwsCredentials(access_key_id="ASIANEWKEYEXAMPLE1", secret_access_key="renewed-secret",
                                 session_token="renewed-token", expiration=1_900_003_600.0)
        current[0] = renewed  # what botocore's refresh does behind get_frozen_credentials()
        assert client.fetch() == renewed


class _Leaky(Exception):
    pass


@pytest.mark.parametrize("failure", ["raises", "unusable", "not-credentials"])
def test_a_failing_source_is_a_retryable_error_without_the_secret(
        tmp_path: Path, failure: str, caplog: pytest.LogCaptureFixture) -> None:
    def source() -> AwsCredentials:
        if failure == "raises":
            raise _Leaky(f"could not refresh {SECRET} / {TOKEN}")  # a message quoting the secret
        if failure == "unusable":
            return AwsCredentials(access_key_id="AKID", secret_access_key=SECRET + " \r\n", session_token=TOKEN)
        return SECRET  # type: ignore[return-value]

    caplog.set_level(logging.DEBUG, logger="nitrokit")
    with _channel(tmp_path, source) as running, CredentialsClient(_address(running)) as client, \
            pytest.raises(RemoteError) as caught:
        client.fetch()
    error = caught.value
    assert error.code == ErrorCode.NO_CREDENTIALS and error.retryable
    for text in (str(error), caplog.text):
        assert SECRET not in text and TOKEN not in text
    assert "credentials" in caplog.text


def test_a_hanging_source_times_out_and_holds_one_thread(tmp_path: Path) -> None:
    release = threading.Event()
    calls = []

    def source() -> AwsCredentials:
        calls.append(1)
        release.wait(10)
        return CREDENTIALS

    try:
        with _channel(tmp_path, source, credentials_timeout=0.2) as running, \
                CredentialsClient(_address(running)) as client:
            for _ in range(2):
                with pytest.raises(RemoteError, match="no answer within") as caught:
                    client.fetch()
                assert caught.value.retryable
            assert len(calls) == 1  # the second request joined the stuck call instead of starting another
            release.set()
            assert client.fetch() == CREDENTIALS
    finally:
        release.set()


def test_the_request_takes_no_members(tmp_path: Path) -> None:
    with _channel(tmp_path, lambda: CREDENTIALS) as running, \
            WireClient(_address(running), operations=CREDENTIALS_OPERATIONS) as client:
        with pytest.raises(RemoteError) as caught:
            client.call("GetCredentials", {"RoleArn": "x"})
        assert caught.value.code == ErrorCode.INVALID_REQUEST
        with pytest.raises(UsageError):
            client.call("GenerateRandom", {})


def test_boto3s_chain_with_expiring_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real botocore RefreshableCredentials (a credential_process profile): its expiration is sent."""
    script = tmp_path / "process.py"
    script.write_text("import json\nprint(json.dumps({'Version': 1, 'AccessKeyId': 'ASIAPROCESSEXAMPLE', "
                      f"'SecretAccessKey': {SECRET!r}, 'SessionToken': {TOKEN!r}, "
                      "'Expiration': '2030-01-01T00:00:00Z'}))\n")
    config = tmp_path / "config"
    config.write_text(f"[profile tunnel]\ncredential_process = {sys.executable} {script}\n")
    for name in [name for name in os.environ if name.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    credentials = boto3_credentials_source("tunnel")()
    assert credentials == AwsCredentials(access_key_id="ASIAPROCESSEXAMPLE", secret_access_key=SECRET,
                                         session_token=TOKEN, expiration=1_893_456_000.0)
    with pytest.raises(UsageError, match="ProfileNotFound"):
        boto3_credentials_source("no-such-profile")


@pytest.mark.parametrize("listen", ["tcp://0.0.0.0:8001", "tcp://[::]:8001", "tcp://10.0.0.5:8001",
                                    "tcp://parent.example:8001"])
def test_a_credentials_address_beyond_the_loopback_is_refused(listen: str) -> None:
    with pytest.raises(UsageError, match=r"secret key.*vsock"):
        TunnelConfig(listen="tcp://127.0.0.1:0", target="127.0.0.1:9", credentials_listen=listen)


@pytest.mark.parametrize("listen", ["tcp://127.0.0.1:0", "tcp://[::1]:8001", "tcp://localhost:8001",
                                    "vsock://any:8001"])
def test_a_loopback_or_vsock_credentials_address_is_taken(listen: str) -> None:
    TunnelConfig(listen="tcp://127.0.0.1:0", target="127.0.0.1:9", credentials_listen=listen)


def test_the_credentials_channel_needs_its_own_address(tmp_path: Path) -> None:
    same = f"unix://{tmp_path / 'one.sock'}"
    for listen, credentials in ((same, same), ("vsock://any:8000", "vsock://any:8000")):
        with pytest.raises(UsageError, match="same address"):
            TunnelConfig(listen=listen, target="127.0.0.1:9", credentials_listen=credentials)
    assert not (tmp_path / "one.sock").exists()


def test_no_credentials_anywhere_is_said_once_at_start_and_not_retryable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    import time

    for name in [name for name in os.environ if name.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    caplog.set_level(logging.INFO, logger="nitrokit")

    def warnings() -> list[str]:
        return [record.getMessage() for record in caplog.records
                if record.levelno == logging.WARNING and "credentials" in record.getMessage()]

    with _channel(tmp_path, boto3_credentials_source()) as running, CredentialsClient(_address(running)) as client:
        deadline = time.monotonic() + 10
        while not warnings() and time.monotonic() < deadline:
            time.sleep(0.01)
        for _ in range(2):
            with pytest.raises(RemoteError) as caught:
                client.fetch()
            error = caught.value
            assert error.code == ErrorCode.NO_CREDENTIALS and not error.retryable
            assert "no AWS credentials are configured on the parent" in str(error)
            assert "try again" not in str(error)
    [warning] = warnings()
    assert all(word in warning for word in ("environment", "--profile", "instance role"))
