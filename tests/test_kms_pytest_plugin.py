"""A user's own test suite gets ``kms_sim``, ``kms_client`` and ``kms_sim_config`` from the plugin module."""

from __future__ import annotations

import pytest

from tests.conftest import REPO

pytest_plugins = ["pytester"]

USER_TESTS = '''
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from common.kms import AttestationConditions, KmsSimConfig


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
'''


@pytest.fixture
def user_suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    pytester.makepyfile(test_user=USER_TESTS)
    return pytester


def test_fixtures_available_with_the_plugin(user_suite: pytest.Pytester) -> None:
    result = user_suite.runpytest_subprocess("-p", "common.kms.pytest_fixtures", "-q")
    result.assert_outcomes(passed=4)


def test_fixtures_absent_without_the_plugin(user_suite: pytest.Pytester) -> None:
    result = user_suite.runpytest_inprocess("-q")
    result.assert_outcomes(errors=4)
    result.stdout.fnmatch_lines(["*fixture 'kms_*' not found*"])
