"""nitrokit's pytest plugin: offline fixtures for testing enclave code, as moto's users get ``mock_aws``.

Installed with nitrokit and loaded automatically (entry point ``pytest11: nitrokit``; disable it with
``-p no:nitrokit``). Fixtures:

- ``kms_sim_config``, ``kms_sim``, ``kms_client``: a simulated KMS on a free loopback port, fresh per test,
  and a boto3 client for it (:mod:`nitrokit.kms.pytest_fixtures`);
- ``simulated_nsm``: a :class:`~nitrokit.enclave.nsm.SimulatedNsm` whose documents verify against the fixture root;
  override ``simulated_nsm_options`` to set PCRs, module id or debug mode;
- ``fixture_root``: the fixture PKI's root certificate, for ``Verifier(root=fixture_root)``.

    def test_my_enclave_code(simulated_nsm, kms_client):
        document = simulated_nsm.attestation(public_key=my_public_key_der)
        answer = kms_client.generate_random(NumberOfBytes=32, Recipient={
            "AttestationDocument": document, "KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256"})
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from nitrokit.kms.pytest_fixtures import kms_client, kms_sim, kms_sim_config

# pytest loads this module in every session of every project that installs nitrokit, so it imports nothing
# heavy: the simulated NSM, the fixture PKI and cryptography load when a test asks for a fixture.
if TYPE_CHECKING:
    from cryptography import x509

    from nitrokit.enclave.nsm import SimulatedNsm

__all__ = ["fixture_root", "kms_client", "kms_sim", "kms_sim_config", "simulated_nsm", "simulated_nsm_options"]


@pytest.fixture
def simulated_nsm_options() -> dict[str, Any]:
    """Keyword arguments for ``SimulatedNsm`` (pcrs, module_id, debug...); override to customise it."""
    return {}


@pytest.fixture
def simulated_nsm(simulated_nsm_options: dict[str, Any]) -> Iterator[SimulatedNsm]:
    """A fresh simulated NSM (32 PCRs, 0..15 locked), closed after the test."""
    from nitrokit.enclave.nsm import SimulatedNsm

    with SimulatedNsm(**simulated_nsm_options) as nsm:
        yield nsm


@pytest.fixture
def fixture_root() -> x509.Certificate:
    """The root of nitrokit's fixture PKI (TEST keys): what simulated documents chain to."""
    from nitrokit.testing.pki import fixture_root as load_fixture_root

    return load_fixture_root()
