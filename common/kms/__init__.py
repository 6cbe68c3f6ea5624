"""A simulated AWS KMS for offline tests: the real KMS protocol, checking attestations.

Seen from boto3 it behaves like the real service: AWS JSON 1.1 over HTTP/1.1, SigV4 signatures checked with
botocore's own code, GenerateRandom and a key store (CreateKey, DescribeKey, aliases, key states, key policies,
Encrypt, Decrypt, GenerateDataKey, GenerateDataKeyPair, DeriveSharedSecret) validated per botocore's model,
and with a ``Recipient`` the attestation document verified (against nitrokit's fixture root by default) and
the answer returned as ``CiphertextForRecipient``. Attestation conditions (the ``kms:RecipientAttestation:*``
policy keys), custom key stores and injected faults make the error paths testable. See docs/kms-sim.md.

    from nitrokit.kms import SimulatedKms, KmsSimConfig, AttestationConditions

    config = KmsSimConfig(conditions=AttestationConditions.require(pcrs={0: pcr0_hex}))
    with SimulatedKms(config) as kms:
        kms.client().generate_random(NumberOfBytes=32, Recipient={...})

Command line: ``nitrokit kms-sim``. pytest fixtures: ``-p nitrokit.kms.pytest_fixtures``. Needs the ``kms-sim``
extra (botocore, boto3): ``pip install 'nitrokit[kms-sim]'``.
"""

from typing import TYPE_CHECKING

from nitrokit._lazy import lazy_exports

# Lazy: the simulator needs botocore (the kms-sim extra), and nitrokit's pytest plugin imports this package in
# every test session; nothing heavy loads until a name is used.
if TYPE_CHECKING:
    from nitrokit.kms.conditions import AttestationConditions
    from nitrokit.kms.config import (
        DEFAULT_ACCESS_KEY,
        AccessKey,
        CustomKeyStore,
        Faults,
        KmsSimConfig,
        SimulatedKey,
        load_config,
    )
    from nitrokit.kms.errors import KmsConfigError, KmsServiceError, KmsSimError
    from nitrokit.kms.server import SimulatedKms

_EXPORTS = {
    "AttestationConditions": "nitrokit.kms.conditions",
    "DEFAULT_ACCESS_KEY": "nitrokit.kms.config",
    "AccessKey": "nitrokit.kms.config",
    "CustomKeyStore": "nitrokit.kms.config",
    "Faults": "nitrokit.kms.config",
    "KmsSimConfig": "nitrokit.kms.config",
    "SimulatedKey": "nitrokit.kms.config",
    "load_config": "nitrokit.kms.config",
    "KmsConfigError": "nitrokit.kms.errors",
    "KmsServiceError": "nitrokit.kms.errors",
    "KmsSimError": "nitrokit.kms.errors",
    "SimulatedKms": "nitrokit.kms.server",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = [
    "DEFAULT_ACCESS_KEY",
    "AccessKey",
    "AttestationConditions",
    "CustomKeyStore",
    "Faults",
    "KmsConfigError",
    "KmsServiceError",
    "KmsSimConfig",
    "KmsSimError",
    "SimulatedKey",
    "SimulatedKms",
    "load_config",
]
