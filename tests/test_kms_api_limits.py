"""The GenerateRandom limits are stated once (nitrokit.kms_api) and every checker and help text uses them.

The wire protocol (both directions), the simulated KMS and the enclave client must all draw the line at the
same place; the command lines must print the same range. A literal copy drifting in any of them fails here.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import pytest

from nitrokit import kms_api
from nitrokit.enclave import cli as enclave_cli
from nitrokit.enclave import demo
from nitrokit.enclave.cli import Subparsers
from nitrokit.enclave.kms_client import KmsClient
from nitrokit.enclave.nsm.simulated import SimulatedNsm
from nitrokit.errors import UsageError
from nitrokit.kms._generate_random import _read
from nitrokit.kms.errors import KmsServiceError
from nitrokit.wire.errors import InvalidRequestError
from nitrokit.wire.kms import GENERATE_RANDOM, MAX_ATTESTATION_DOCUMENT_BYTES, RSAES_OAEP_SHA_256

LOW, HIGH = kms_api.GENERATE_RANDOM_MIN_BYTES, kms_api.GENERATE_RANDOM_MAX_BYTES


def test_the_wire_protocol_re_exports_the_same_values() -> None:
    assert MAX_ATTESTATION_DOCUMENT_BYTES is kms_api.MAX_ATTESTATION_DOCUMENT_BYTES
    assert RSAES_OAEP_SHA_256 is kms_api.RSAES_OAEP_SHA_256


@pytest.mark.parametrize("count", [LOW - 1, HIGH + 1])
def test_every_checker_refuses_the_same_counts(count: int) -> None:
    with pytest.raises(UsageError):
        GENERATE_RANDOM.encode_request({"NumberOfBytes": count})
    with pytest.raises(InvalidRequestError):
        GENERATE_RANDOM.decode_request({"NumberOfBytes": count})
    with pytest.raises(KmsServiceError) as info:
        _read({"NumberOfBytes": count})
    assert info.value.code == "ValidationException"
    client = KmsClient(nsm=SimulatedNsm(), parent="unix:///nonexistent/nitrokit.sock")
    with pytest.raises(UsageError):
        client.generate_random(count)  # refused before any connection is tried


@pytest.mark.parametrize("count", [LOW, HIGH])
def test_every_checker_accepts_the_same_counts(count: int) -> None:
    assert GENERATE_RANDOM.decode_request(GENERATE_RANDOM.encode_request({"NumberOfBytes": count})) == {
        "NumberOfBytes": count}
    assert _read({"NumberOfBytes": count})[0] == count


@pytest.mark.parametrize("store_id", ["", "k" * (kms_api.MAX_CUSTOM_KEY_STORE_ID_CHARS + 1)])
def test_key_store_ids_are_bounded_alike(store_id: str) -> None:
    with pytest.raises(InvalidRequestError):
        GENERATE_RANDOM.decode_request({"NumberOfBytes": 8, "CustomKeyStoreId": store_id})
    with pytest.raises(KmsServiceError):
        _read({"NumberOfBytes": 8, "CustomKeyStoreId": store_id})


def _help_of(add: Callable[[Subparsers], None], command: str) -> str:
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers()
    add(commands)
    return commands.choices[command].format_help()


def test_the_command_lines_print_the_api_range() -> None:
    assert f"({kms_api.NUMBER_OF_BYTES_RANGE})" in _help_of(enclave_cli._add_generate_random, "generate-random")
    # demo.py writes the range out as text; this catches it falling behind the constant.
    assert f"({kms_api.NUMBER_OF_BYTES_RANGE})" in _help_of(demo.register, "demo")


# --- regions and KMS endpoints: one rule for the parent's target, the enclave's TLS name and the simulator -----


@pytest.mark.parametrize(("region", "host"), [
    ("us-east-1", "kms.us-east-1.amazonaws.com"),
    ("eu-central-2", "kms.eu-central-2.amazonaws.com"),
    ("us-gov-west-1", "kms.us-gov-west-1.amazonaws.com"),
    ("cn-north-1", "kms.cn-north-1.amazonaws.com.cn"),
    ("cn-northwest-1", "kms.cn-northwest-1.amazonaws.com.cn"),
])
def test_kms_endpoint_hosts(region: str, host: str) -> None:
    assert kms_api.kms_endpoint_host(region) == host
    assert kms_api.kms_endpoint_host(region, fips=True) == host.replace("kms.", "kms-fips.", 1)


@pytest.mark.parametrize("region", ["", "eu-west", "x-y", "US-EAST-1", "us-east-1.evil.com", "us-east-1\n", 7, None])
def test_a_region_that_is_not_one_is_a_usage_error(region: object) -> None:
    with pytest.raises(UsageError, match="not an AWS region name"):
        kms_api.check_region(region)
    if isinstance(region, str):
        with pytest.raises(UsageError):
            kms_api.kms_endpoint_host(region)


def test_region_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    assert kms_api.region_from_environment() is None
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    assert kms_api.region_from_environment() == "eu-west-1"
    monkeypatch.setenv("AWS_REGION", "ap-south-2")
    assert kms_api.region_from_environment() == "ap-south-2"


def test_the_simulator_certificate_names_the_china_endpoint() -> None:
    from nitrokit.kms import KmsSimConfig, SimulatedKms

    assert "kms.cn-north-1.amazonaws.com.cn" in SimulatedKms(KmsSimConfig(region="cn-north-1"), tls=True).tls_hosts
    assert not any("amazonaws" in host for host in SimulatedKms(KmsSimConfig(region="local"), tls=True).tls_hosts)
