"""pytest fixtures for the simulated KMS (the KMS half of nitrokit's pytest plugin).

Load with ``-p nitrokit.kms.pytest_fixtures`` (or through nitrokit's pytest plugin entry point). Tests then get:

- ``kms_sim_config``: the :class:`~nitrokit.kms.KmsSimConfig` to start with (defaults); override this fixture
  in a conftest.py or test module to change credentials, root, conditions, key stores or faults;
- ``kms_sim``: a running :class:`~nitrokit.kms.SimulatedKms` on a free loopback port, fresh for each test (it
  starts in milliseconds, and no state leaks from one test to the next);
- ``kms_client``: a boto3 KMS client for it, with the configured region and credentials.

    def test_random(kms_client):
        assert len(kms_client.generate_random(NumberOfBytes=32)["Plaintext"]) == 32
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

# Loaded as a pytest plugin in every session of every project that installs nitrokit: the simulator (and
# boto3, botocore, cryptography with it) is imported only when a test asks for one of these fixtures.
if TYPE_CHECKING:
    from nitrokit.kms.config import KmsSimConfig
    from nitrokit.kms.server import SimulatedKms

__all__ = ["kms_client", "kms_sim", "kms_sim_config"]


@pytest.fixture
def kms_sim_config() -> KmsSimConfig:
    """The simulator's configuration; override to customise ``kms_sim``."""
    from nitrokit.kms.config import KmsSimConfig

    return KmsSimConfig()


@pytest.fixture
def kms_sim(kms_sim_config: KmsSimConfig) -> Iterator[SimulatedKms]:
    """A running simulated KMS, stopped after the test."""
    from nitrokit.kms.server import SimulatedKms

    with SimulatedKms(kms_sim_config) as simulator:
        yield simulator


@pytest.fixture
def kms_client(kms_sim: SimulatedKms) -> Any:
    """A boto3 KMS client pointed at ``kms_sim``."""
    return kms_sim.client()
