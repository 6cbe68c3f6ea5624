"""The enclave side of nitrokit: NSM access, ephemeral keys and the KMS client that runs inside an enclave.

    from nitrokit.enclave import KmsClient, open_nsm

    with open_nsm() as nsm, KmsClient(nsm=nsm, parent="vsock://3:8000") as kms:
        secret = kms.generate_random(32)

It imports from the core (``nitrokit``) only, never from :mod:`nitrokit.parent`, and needs no boto3: the
enclave image carries cbor2, cryptography and asn1crypto alone. Names load on first use, so importing this
package (as nitrokit's pytest plugin does in every test session) costs nothing.
"""

from typing import TYPE_CHECKING

from nitrokit._lazy import lazy_exports

if TYPE_CHECKING:
    from nitrokit.enclave.errors import EnclaveKmsError, KmsCallError, UntrustedAnswerError
    from nitrokit.enclave.keys import EphemeralKeyPair
    from nitrokit.enclave.kms_client import IdentityPolicy, KmsClient, RetryPolicy
    from nitrokit.enclave.nsm import Nsm, NsmError, open_nsm
    from nitrokit.enclave.service import EnclaveService

_EXPORTS = {
    "EnclaveKmsError": "nitrokit.enclave.errors",
    "KmsCallError": "nitrokit.enclave.errors",
    "UntrustedAnswerError": "nitrokit.enclave.errors",
    "EphemeralKeyPair": "nitrokit.enclave.keys",
    "IdentityPolicy": "nitrokit.enclave.kms_client",
    "KmsClient": "nitrokit.enclave.kms_client",
    "RetryPolicy": "nitrokit.enclave.kms_client",
    "Nsm": "nitrokit.enclave.nsm",
    "NsmError": "nitrokit.enclave.nsm",
    "open_nsm": "nitrokit.enclave.nsm",
    "EnclaveService": "nitrokit.enclave.service",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = [
    "EnclaveKmsError",
    "EnclaveService",
    "EphemeralKeyPair",
    "IdentityPolicy",
    "KmsCallError",
    "KmsClient",
    "Nsm",
    "NsmError",
    "RetryPolicy",
    "UntrustedAnswerError",
    "open_nsm",
]
