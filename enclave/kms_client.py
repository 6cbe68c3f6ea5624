"""The enclave's KMS client: GenerateRandom through the parent, answered so that only this enclave can read it.

    with KmsClient(nsm=open_nsm(), parent="vsock://3:8000") as kms:
        seed = kms.generate_random(32)

Each call sends GenerateRandom with a Recipient: an attestation document from the NSM that carries an
ephemeral RSA public key. KMS (reached by the parent) encrypts the bytes to that key as CMS EnvelopedData;
the client checks the answer and decrypts it here. The identity (key pair + document) is reused for a
bounded time and number of calls, then replaced.

The parent is untrusted. The client refuses any answer that carries Plaintext, lacks CiphertextForRecipient,
is addressed to another key, does not decrypt, or holds a different number of bytes than asked. A relaying
parent can still forge an envelope around bytes it chose, because CMS is not authenticated. So by default the
result is HKDF over the KMS bytes and the NSM's own random bytes, which a hostile parent alone cannot
predict (docs/threat-model.md). ``mix_nsm_entropy=False`` returns the KMS bytes as they were decrypted, for
callers that need exactly KMS's output and accept that the parent may have chosen it.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from nitrokit import cms
from nitrokit.enclave.errors import KmsCallError, UntrustedAnswerError
from nitrokit.enclave.keys import DEFAULT_RSA_KEY_SIZE, EphemeralKeyPair, check_key_bits
from nitrokit.enclave.nsm import Nsm
from nitrokit.errors import UsageError
from nitrokit.kms_api import GENERATE_RANDOM_MAX_BYTES, GENERATE_RANDOM_MIN_BYTES
from nitrokit.wire.address import Address, parse_address
from nitrokit.wire.client import WireClient
from nitrokit.wire.errors import RemoteError, WireError
from nitrokit.wire.kms import generate_random_request, parse_generate_random_response

#: The parent instance as an enclave sees it (CID 3), on nitrokit's default port.
DEFAULT_PARENT = "vsock://3:8000"
# The API's NumberOfBytes range (nitrokit.kms_api): the wire protocol and the simulated KMS check the same.
MIN_RANDOM_BYTES = GENERATE_RANDOM_MIN_BYTES
MAX_RANDOM_BYTES = GENERATE_RANDOM_MAX_BYTES
_HKDF_INFO = b"nitrokit GenerateRandom KMS+NSM v1"


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """Bounded retries with exponential backoff and full jitter, for retryable failures only."""

    max_attempts: int = 4
    base_delay: float = 0.1
    max_delay: float = 2.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.base_delay < 0 or self.max_delay < self.base_delay:
            raise UsageError("RetryPolicy needs max_attempts >= 1 and 0 <= base_delay <= max_delay")

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        return random.uniform(0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))  # noqa: S311


@dataclass(frozen=True, kw_only=True)
class IdentityPolicy:
    """How long one key pair and its attestation document are reused before both are replaced."""

    key_bits: int = DEFAULT_RSA_KEY_SIZE
    max_age_seconds: float = 300.0
    max_uses: int = 100

    def __post_init__(self) -> None:
        check_key_bits(self.key_bits)  # refused here, not at the first call that needs a key
        if self.max_age_seconds <= 0 or self.max_uses < 1:
            raise UsageError("IdentityPolicy needs max_age_seconds > 0 and max_uses >= 1")


class _Identity:
    """An ephemeral key pair and the attestation document that carries its public key."""

    __slots__ = ("created", "document", "key_pair", "uses")

    def __init__(self, key_pair: EphemeralKeyPair, document: bytes) -> None:
        self.key_pair = key_pair
        self.document = document
        self.created = time.monotonic()
        self.uses = 0


class KmsClient:
    """GenerateRandom with a Recipient, through the parent proxy. Thread-safe; calls run one at a time.

    ``mix_nsm_entropy`` (default True) derives each result from the KMS bytes and as many NSM GetRandom bytes
    with HKDF-SHA384; False is the explicit opt-out (the bytes are then whatever the envelope held, which a
    hostile parent can choose).
    """

    def __init__(
        self,
        *,
        nsm: Nsm,
        parent: str | Address = DEFAULT_PARENT,
        identity: IdentityPolicy | None = None,
        retry: RetryPolicy | None = None,
        connect_timeout: float = 5.0,
        timeout: float = 30.0,
        mix_nsm_entropy: bool = True,
        trace: Callable[[str], None] | None = None,
    ) -> None:
        self._nsm = nsm
        self._address = parse_address(parent)
        self._identity_policy = identity or IdentityPolicy()
        self._retry = retry or RetryPolicy()
        self._wire = WireClient(self._address, connect_timeout=connect_timeout, timeout=timeout)
        self._mix = mix_nsm_entropy
        self._trace = trace or (lambda _message: None)
        self._identity: _Identity | None = None
        self._lock = threading.Lock()

    @property
    def parent(self) -> Address:
        """The parent proxy's address."""
        return self._address

    @property
    def mixes_nsm_entropy(self) -> bool:
        """Whether results are mixed with NSM entropy (the default) or the KMS bytes as decrypted."""
        return self._mix

    def generate_random(self, number_of_bytes: int, *, custom_key_store_id: str | None = None) -> bytes:
        """``number_of_bytes`` (1..1024) random bytes from KMS that only this enclave could decrypt."""
        if type(number_of_bytes) is not int or not MIN_RANDOM_BYTES <= number_of_bytes <= MAX_RANDOM_BYTES:
            raise UsageError(f"the number of bytes must be an integer from {MIN_RANDOM_BYTES} to {MAX_RANDOM_BYTES}")
        with self._lock:
            identity = self._current_identity()
            request = generate_random_request(number_of_bytes, attestation_document=identity.document,
                                              custom_key_store_id=custom_key_store_id)
            answer = self._call_with_retries(request)
            identity.uses += 1
            try:
                kms_bytes = self._open(answer, identity, number_of_bytes)
            except UntrustedAnswerError:
                # Never try a second envelope with a key that has seen a bad one: whether decryption
                # succeeds is visible to the parent, and unauthenticated CBC turns repeated tries with one
                # key into a padding oracle against earlier answers.
                self._identity = None
                raise
        if not self._mix:
            return kms_bytes
        return self._mix_with_nsm(kms_bytes, number_of_bytes)

    def close(self) -> None:
        self._wire.close()
        self._identity = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _current_identity(self) -> _Identity:
        policy = self._identity_policy
        identity = self._identity
        if (identity is None or identity.uses >= policy.max_uses
                or time.monotonic() - identity.created >= policy.max_age_seconds):
            key_pair = EphemeralKeyPair.generate(bits=policy.key_bits)
            document = self._nsm.attestation(public_key=key_pair.public_key_der)
            identity = self._identity = _Identity(key_pair, document)
            self._trace(f"new identity: RSA-{key_pair.bits} key, attestation document of {len(document)} bytes "
                        "from the NSM carrying its public key")
        return identity

    def _call_with_retries(self, request: dict[str, object]) -> dict[str, object]:
        attempt = 0
        while True:
            attempt += 1
            try:
                self._trace(f"GenerateRandom -> parent {self._address} (attempt {attempt})")
                return self._wire.call("GenerateRandom", request)
            except WireError as exc:
                code = exc.code if isinstance(exc, RemoteError) else type(exc).__name__
                detail = exc.remote_message if isinstance(exc, RemoteError) else str(exc)
                if not exc.retryable or attempt >= self._retry.max_attempts:
                    raise KmsCallError(detail, code=code, retryable=exc.retryable, attempts=attempt) from None
                delay = self._retry.delay(attempt)
                self._trace(f"retryable failure {code}; retrying in {delay * 1000:.0f} ms")
                time.sleep(delay)

    def _open(self, answer: dict[str, object], identity: _Identity, number_of_bytes: int) -> bytes:
        try:
            result = parse_generate_random_response(answer)
        except WireError as exc:
            raise UntrustedAnswerError(f"the answer is not a GenerateRandom response: {exc}") from None
        if result.plaintext is not None:
            raise UntrustedAnswerError("the answer carries Plaintext although a Recipient was sent: refused")
        if result.ciphertext_for_recipient is None:
            raise UntrustedAnswerError("the answer has no CiphertextForRecipient")
        try:
            plaintext = cms.decrypt(result.ciphertext_for_recipient, identity.key_pair.private_key)
        except cms.RecipientMismatchError:
            raise UntrustedAnswerError("CiphertextForRecipient is addressed to another key, not ours") from None
        except cms.CmsError as exc:
            raise UntrustedAnswerError(f"CiphertextForRecipient cannot be opened: {exc}") from None
        if len(plaintext) != number_of_bytes:
            raise UntrustedAnswerError(f"CiphertextForRecipient holds {len(plaintext)} bytes, "
                                       f"{number_of_bytes} were asked for")
        self._trace(f"CiphertextForRecipient ({len(result.ciphertext_for_recipient)} bytes of CMS) decrypted "
                    f"inside the enclave: {number_of_bytes} bytes")
        return plaintext

    def _mix_with_nsm(self, kms_bytes: bytes, number_of_bytes: int) -> bytes:
        nsm_bytes = b""
        while len(nsm_bytes) < number_of_bytes:
            nsm_bytes += self._nsm.get_random()
        self._trace("mixed with NSM GetRandom output through HKDF-SHA384")
        return HKDF(algorithm=hashes.SHA384(), length=number_of_bytes, salt=None,
                    info=_HKDF_INFO).derive(kms_bytes + nsm_bytes[:number_of_bytes])
