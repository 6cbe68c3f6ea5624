"""Errors of the enclave's KMS client.

- :class:`KmsCallError`: the call failed (KMS refused it, the parent refused it, or the connection kept
  failing after the allowed retries). ``code`` and ``retryable`` come from the last failure. In tunnel mode,
  code "CredentialsError" (not retryable): your ``credentials=`` provider or callable raised (the message names
  its exception's class, never its text).
- :class:`TlsError` (a :class:`KmsCallError`, tunnel mode): TLS refused the KMS server (its certificate or
  host name does not verify) or the bytes between here and it (altered, injected, out of order). ``code``
  "TlsError", never retried: whoever stands between (the parent's relay) is tampering, or the endpoint is not
  KMS. No byte of such an answer is used.
- :class:`UntrustedAnswerError`: an answer arrived but breaks the contract. It carries the secret in the clear
  (Plaintext, PrivateKeyPlaintext, SharedSecret), has no CiphertextForRecipient, the envelope is not for our
  key, it does not decrypt, its secret has the wrong size, it names another key than the one asked for, echoes
  another algorithm or spec, or (GenerateDataKeyPair) its private key does not match the spec or PublicKey.
  The parent is untrusted: treat this as a possible attack, not a transient fault.

NSM failures raise :class:`nitrokit.enclave.nsm.NsmError`. All of these are :class:`~nitrokit.errors.NitrokitError`.
"""

from __future__ import annotations

from nitrokit.errors import NitrokitError
from nitrokit.wire.errors import WireError


class TlsFailure(WireError):
    """Internal: what the tunnel transport raises when TLS refused the connection or its records. Not retried
    and nothing of the answer used; :class:`~nitrokit.enclave.kms_client.KmsClient` raises it as
    :class:`TlsError`. (Here, not in the transport's module, so the client can catch it without loading TLS.)"""

    retryable = False
    code = "TlsError"


class EnclaveKmsError(NitrokitError):
    """Base class of the enclave KMS client's errors."""


class KmsCallError(EnclaveKmsError):
    """The KMS call did not succeed; ``code`` names why (a KMS exception name or a parent error code)."""

    def __init__(self, message: str, *, code: str, retryable: bool, attempts: int) -> None:
        super().__init__(f"{code}: {message} (after {attempts} attempt{'s' if attempts != 1 else ''})")
        self.code = code
        self.retryable = retryable
        self.attempts = attempts


class TlsError(KmsCallError):
    """Tunnel mode: TLS refused the server or the records in transit; ``code`` "TlsError", not retryable."""


class UntrustedAnswerError(EnclaveKmsError):
    """The answer is not a well-formed CiphertextForRecipient for our key with what the request fixes."""
