"""``nitrokit kms-sim``: a real process, its first stdout line, boto3 calls against it, and signals."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from nitrokit import cli as nitrokit_cli
from nitrokit.cms import decrypt
from nitrokit.kms import DEFAULT_ACCESS_KEY
from nitrokit.testing.documents import default_pcrs
from tests.conftest import REPO
from tests.test_kms_support import good_document, recipient, rsa_key


def start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "nitrokit", "kms-sim", *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def first_line(process: subprocess.Popen[str], timeout: float = 30.0) -> str:
    """The first stdout line, or fail (and kill the process) if it does not come in time."""
    timer = threading.Timer(timeout, process.kill)
    timer.start()
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
    finally:
        timer.cancel()
    assert line, f"no URL printed; stderr: {process.stderr.read() if process.stderr else ''}"
    return line


def client(url: str, region: str = "us-east-1") -> Any:
    return boto3.session.Session().client(
        "kms", endpoint_url=url, region_name=region, aws_access_key_id=DEFAULT_ACCESS_KEY.access_key_id,
        aws_secret_access_key=DEFAULT_ACCESS_KEY.secret_access_key,
        config=Config(retries={"mode": "standard", "total_max_attempts": 1}, proxies={}))


@pytest.fixture
def stop_all() -> Iterator[list[subprocess.Popen[str]]]:
    processes: list[subprocess.Popen[str]] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait(10)


@pytest.mark.parametrize(("signum", "listen"), [(signal.SIGTERM, "127.0.0.1:0"),
                                                (signal.SIGINT, "tcp://127.0.0.1:0")])
def test_serves_until_signal(stop_all: list[subprocess.Popen[str]], signum: signal.Signals, listen: str) -> None:
    process = start("--listen", listen)
    stop_all.append(process)
    url = first_line(process)
    assert url.startswith("http://127.0.0.1:") and not url.endswith(":0")
    kms = client(url)
    assert len(kms.generate_random(NumberOfBytes=32)["Plaintext"]) == 32
    response = kms.generate_random(NumberOfBytes=16, Recipient=recipient(good_document()))
    assert len(decrypt(response["CiphertextForRecipient"], rsa_key())) == 16
    process.send_signal(signum)
    assert process.wait(15) == 0
    assert process.stderr is not None
    log = process.stderr.read()
    assert log.count("operation=GenerateRandom outcome=ok status=200") == 2


def test_policy_region_and_config(stop_all: list[subprocess.Popen[str]], tmp_path: Path) -> None:
    policy = tmp_path / "statement.json"
    policy.write_text(json.dumps({
        "Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "kms:GenerateRandom", "Resource": "*",
        "Condition": {"StringEqualsIgnoreCase": {"kms:RecipientAttestation:PCR0": default_pcrs()[0].hex()}},
    }))
    config = tmp_path / "kms.toml"
    config.write_text('region = "eu-west-1"\n[[custom_key_stores]]\nid = "cks-x"\nconnection_state = "FAILED"\n')
    process = start("--config", str(config), "--policy", str(policy), "--region", "ap-south-1")
    stop_all.append(process)
    url = first_line(process)
    kms = client(url, region="ap-south-1")
    kms.generate_random(NumberOfBytes=8, Recipient=recipient(good_document()))
    cases: list[tuple[dict[str, Any], str]] = [
        ({}, "AccessDeniedException"),
        ({"Recipient": recipient(good_document(pcrs={0: bytes(48)}))}, "AccessDeniedException"),
        ({"Recipient": recipient(good_document()), "CustomKeyStoreId": "cks-x"},
         "CustomKeyStoreInvalidStateException"),
    ]
    for kwargs, code in cases:
        with pytest.raises(ClientError) as caught:
            kms.generate_random(NumberOfBytes=8, **kwargs)
        assert caught.value.response["Error"]["Code"] == code
    with pytest.raises(ClientError) as caught:
        client(url, region="eu-west-1").generate_random(NumberOfBytes=8)  # --region overrides the file
    assert caught.value.response["Error"]["Code"] == "InvalidSignatureException"
    process.terminate()
    assert process.wait(15) == 0


def test_pcr_options(stop_all: list[subprocess.Popen[str]]) -> None:
    process = start("--pcr", f"1={default_pcrs()[1].hex()}", "--image-sha384", "0x" + default_pcrs()[0].hex(),
                    "--recipient-required", "--root", "fixture", "--log-level", "WARNING")
    stop_all.append(process)
    kms = client(first_line(process))
    kms.generate_random(NumberOfBytes=8, Recipient=recipient(good_document()))
    with pytest.raises(ClientError):
        kms.generate_random(NumberOfBytes=8)
    process.terminate()
    assert process.wait(15) == 0
    assert process.stderr is not None and "outcome=ok" not in process.stderr.read()  # WARNING hides INFO lines


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> Any:
    return nitrokit_cli.main


@pytest.mark.parametrize("args", [
    ["--listen", "localhost"],
    ["--listen", "127.0.0.1:99999"],
    ["--listen", "tcp://127.0.0.1"],
    ["--listen", "tcp://127.0.0.1:99999"],
    ["--listen", "unix:///tmp/kms.sock"],
    ["--listen", "vsock://3:8000"],
    ["--listen", "http://127.0.0.1:0"],
    ["--root", "/nonexistent/root.pem"],
    ["--config", "/nonexistent/kms.toml"],
    ["--pcr", "zero=00"],
    ["--pcr", "0=zz"],
    ["--pcr", "40=" + "00" * 48],
    ["--pcr", "0=" + "00" * 48, "--pcr", "0=" + "11" * 48],
    ["--pcr", "0=" + "00" * 48, "--policy", "/dev/null"],
    ["--image-sha384", "00"],
    ["--region", "a/b"],
])
def test_usage_errors_exit_2(cli: Any, args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["kms-sim", *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # no URL: nothing is listening
    assert captured.err.startswith("nitrokit: ")


def test_bad_policy_file_exits_2(cli: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A Deny-only policy would deny every call (IAM's default deny): refused, naming Effect.
    for content in ("{not json", json.dumps({"Effect": "Deny", "Action": "kms:*", "Resource": "*", "Condition": {}})):
        policy = tmp_path / "policy.json"
        policy.write_text(content)
        assert cli(["kms-sim", "--policy", str(policy)]) == 2
    assert "Effect" in capsys.readouterr().err


def test_port_in_use_exits_2(cli: Any, capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert cli(["kms-sim", "--listen", f"127.0.0.1:{port}"]) == 2
        assert f"cannot listen on 127.0.0.1:{port}: " in capsys.readouterr().err
        assert cli(["kms-sim", "--listen", f"tcp://127.0.0.1:{port}"]) == 2
        assert f"cannot listen on 127.0.0.1:{port}: " in capsys.readouterr().err


def test_an_address_not_on_this_host_is_named(cli: Any, capsys: pytest.CaptureFixture[str]) -> None:
    # 192.0.2.1 (TEST-NET-1) is on no interface here: bind() fails without any traffic.
    assert cli(["kms-sim", "--listen", "192.0.2.1:80"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "nitrokit: cannot listen on 192.0.2.1:80: Cannot assign requested address\n"


def test_tcp_listen_addresses_parse() -> None:
    from nitrokit.cli.kms_sim import parse_listen

    assert parse_listen("tcp://127.0.0.1:0") == ("127.0.0.1", 0)
    assert parse_listen("tcp://[::1]:8443") == ("::1", 8443)
    assert parse_listen("[::1]:8443") == ("::1", 8443)
    assert parse_listen("localhost:9") == ("localhost", 9)
