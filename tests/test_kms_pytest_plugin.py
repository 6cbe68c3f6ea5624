"""A user's own test suite gets the simulated KMS and NSM fixtures from nitrokit's pytest plugin."""

from __future__ import annotations

from importlib import metadata

import pytest

pytest_plugins = ["pytester"]

USER_TESTS = '''
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives import serialization

from nitrokit import cms
from nitrokit.attestation import Policy, Verifier
from nitrokit.kms import KmsSimConfig


def test_plaintext(kms_client):
    assert len(kms_client.generate_random(NumberOfBytes=32)["Plaintext"]) == 32


def test_simulator_handle(kms_sim):
    kms_sim.fail_next(1, error="DependencyTimeoutException")
    client = kms_sim.client(config=Config(retries={"total_max_attempts": 1}))
    with pytest.raises(ClientError) as caught:
        client.generate_random(NumberOfBytes=8)
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert kms_sim.outcomes() == {"DependencyTimeoutException": 1}


def test_fresh_simulator_per_test(kms_sim):
    assert kms_sim.outcomes() == {}


class TestWithConditions:
    @pytest.fixture
    def kms_sim_config(self):
        return KmsSimConfig(recipient_required=True)

    def test_recipient_required(self, kms_client):
        with pytest.raises(ClientError) as caught:
            kms_client.generate_random(NumberOfBytes=8)
        assert caught.value.response["Error"]["Code"] == "AccessDeniedException"


def test_enclave_flow(simulated_nsm, kms_client, fixture_root):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    spki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    document = simulated_nsm.attestation(public_key=spki)
    assert Verifier(root=fixture_root).verify(document, policy=Policy.any_enclave_image()).document.public_key == spki
    answer = kms_client.generate_random(NumberOfBytes=32, Recipient={
        "AttestationDocument": document, "KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256"})
    assert "Plaintext" not in answer
    assert len(cms.decrypt(answer["CiphertextForRecipient"], key)) == 32


class TestDebugNsm:
    @pytest.fixture
    def simulated_nsm_options(self):
        return {"debug": True}

    def test_debug_documents(self, simulated_nsm):
        from nitrokit.attestation import parse_document
        assert parse_document(simulated_nsm.attestation()).is_debug
'''


def _entry_point_installed() -> bool:
    return any(ep.name == "nitrokit" and ep.value == "nitrokit.enclave.pytest_plugin"
               for ep in metadata.entry_points(group="pytest11"))


@pytest.fixture
def user_suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    pytester.makepyfile(test_user=USER_TESTS)
    return pytester


def test_fixtures_available_with_the_plugin_module(user_suite: pytest.Pytester) -> None:
    args = ["-q"] if _entry_point_installed() else ["-q", "-p", "nitrokit.enclave.pytest_plugin"]
    result = user_suite.runpytest_subprocess(*args)
    result.assert_outcomes(passed=6)


def test_the_entry_point_loads_the_plugin_automatically(user_suite: pytest.Pytester) -> None:
    if not _entry_point_installed():
        pytest.skip("nitrokit is not installed in this environment (pip install -e '.[test]' registers the plugin)")
    user_suite.runpytest_subprocess("-q").assert_outcomes(passed=6)
    disabled = user_suite.runpytest_subprocess("-q", "-p", "no:nitrokit")
    disabled.assert_outcomes(errors=6)
    disabled.stdout.fnmatch_lines(["*fixture '*' not found*"])
