"""The enclave's KMS client: the five Recipient operations through the parent, answered so that only this
enclave can read the secret.

    with KmsClient(nsm=open_nsm(), parent="vsock://3:8000") as kms:        # relay mode (the default)
        seed = kms.generate_random(32)
        data_key = kms.generate_data_key("alias/app", key_spec="AES_256")   # .plaintext, .ciphertext_blob
        again = kms.decrypt(data_key.ciphertext_blob)                       # .plaintext, .key_id
        pair = kms.generate_data_key_pair("alias/app", "ECC_NIST_P256")      # .private_key_plaintext (DER)
        shared = kms.derive_shared_secret("alias/ecdh", peer_public_key_der) # .shared_secret

Each call sends its operation with a Recipient: an attestation document from the NSM that carries an
ephemeral RSA public key. KMS (reached by the parent) encrypts the secret to that key as CMS EnvelopedData
(CiphertextForRecipient); the client checks the answer and decrypts it here. Each result holds the opened
secret and the answer's other members (:class:`DecryptResult`, :class:`DataKey`, :class:`DataKeyPair`,
:class:`SharedSecret`; ``repr()`` never shows a secret). The identity (key pair + document) is reused for a
bounded time and number of calls, then replaced.

The parent is untrusted. The client refuses (:class:`~nitrokit.enclave.errors.UntrustedAnswerError`) any answer
that carries the secret in the clear (Plaintext, PrivateKeyPlaintext, SharedSecret), lacks
CiphertextForRecipient, is addressed to another key, does not decrypt, or breaks what the request fixes: the
KeyId where KMS echoes it (a key id or key ARN asked for must come back; an alias cannot be checked), the
secret's size (NumberOfBytes/KeySpec, the curve of the PublicKey sent), the echoed EncryptionAlgorithm,
KeyPairSpec or KeyAgreementAlgorithm, and for a key pair that the private key is of the spec and its public
half is the PublicKey answered. A relaying parent can still forge an envelope around a secret it chose,
because CMS is not authenticated; docs/threat-model.md says per operation what that allows. For GenerateRandom
the result is therefore by default HKDF over the KMS bytes and the NSM's own random bytes, which a hostile
parent alone cannot predict. ``mix_nsm_entropy=False`` returns the KMS bytes as they were decrypted, for
callers that need exactly KMS's output and accept that the parent may have chosen it.

``mode="tunnel"`` (:mod:`nitrokit.enclave.tunnel`) takes the parent out of the answer: the client runs TLS to
the KMS endpoint itself, through the parent's byte relay (``nitrokit parent --mode tunnel``), signs with
SigV4 using credentials the parent hands over (``credentials``, default vsock://3:8001), and verifies the
server against a CA bundle (``ca_file``, default the Amazon Trust Services roots shipped here). The answer is
then KMS's own; altered or injected bytes fail as :class:`~nitrokit.enclave.errors.TlsError`, never as
another answer. Both modes share everything after the transport: the same Recipient, the same checks::

    KmsClient(nsm=nsm, mode="tunnel", region="eu-west-1")   # relay vsock://3:8000; kms.eu-west-1.amazonaws.com
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Protocol, Self

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from nitrokit import cms
from nitrokit.enclave.errors import KmsCallError, TlsError, TlsFailure, UntrustedAnswerError
from nitrokit.enclave.keys import DEFAULT_RSA_KEY_SIZE, EphemeralKeyPair, check_key_bits
from nitrokit.enclave.nsm import Nsm
from nitrokit.errors import UsageError
from nitrokit.kms_api import (
    DATA_KEY_SPEC_BYTES,
    GENERATE_RANDOM_MAX_BYTES,
    GENERATE_RANDOM_MIN_BYTES,
    KEY_AGREEMENT_ALGORITHMS,
    SYMMETRIC_DEFAULT,
    region_from_environment,
)
from nitrokit.text import escaped
from nitrokit.wire.address import Address, parse_address
from nitrokit.wire.client import WireClient
from nitrokit.wire.errors import RemoteError, WireError
from nitrokit.wire.kms import (
    DECRYPT,
    DERIVE_SHARED_SECRET,
    GENERATE_DATA_KEY,
    GENERATE_DATA_KEY_PAIR,
    GENERATE_RANDOM,
    Operation,
    recipient_info,
)

if TYPE_CHECKING:
    from nitrokit.enclave.tunnel import CredentialsSource

__all__ = [
    "DEFAULT_PARENT",
    "MAX_RANDOM_BYTES",
    "MIN_RANDOM_BYTES",
    "SUPPORTED_KEY_PAIR_SPECS",
    "DataKey",
    "DataKeyPair",
    "DecryptResult",
    "IdentityPolicy",
    "KmsClient",
    "KmsResult",
    "RetryPolicy",
    "SharedSecret",
]

#: The parent instance as an enclave sees it (CID 3), on nitrokit's default port.
DEFAULT_PARENT = "vsock://3:8000"
# The API's NumberOfBytes range (nitrokit.kms_api): the wire protocol and the simulated KMS check the same.
MIN_RANDOM_BYTES = GENERATE_RANDOM_MIN_BYTES
MAX_RANDOM_BYTES = GENERATE_RANDOM_MAX_BYTES
_HKDF_INFO = b"nitrokit GenerateRandom KMS+NSM v1"


# -- results ----------------------------------------------------------------------------------------------------


def _member(kms_name: str, *, secret: bool = False) -> Any:
    return field(default=None, repr=not secret, metadata={"kms": kms_name, "secret": secret})


@dataclass(frozen=True, kw_only=True)
class KmsResult:
    """What every result shares: its fields named as KMS names them, the secret ones out of ``repr()``."""

    def kms_members(self) -> dict[str, Any]:
        """The members present, by their KMS names (``Plaintext``, ``KeyId``...): bytes stay bytes."""
        return {f.metadata["kms"]: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    def secret_members(self) -> frozenset[str]:
        """The KMS names of the members that hold a secret (opened from CiphertextForRecipient)."""
        return frozenset(f.metadata["kms"] for f in fields(self) if f.metadata["secret"])

    @property
    def secret(self) -> bytes:
        """The one secret the answer carried for the enclave (opened from CiphertextForRecipient)."""
        value = next(getattr(self, f.name) for f in fields(self) if f.metadata["secret"])
        assert isinstance(value, bytes)
        return value


@dataclass(frozen=True, kw_only=True)
class DecryptResult(KmsResult):
    """A Decrypt answer: the plaintext, the KMS key that decrypted it (key ARN) and the algorithm."""

    plaintext: bytes = _member("Plaintext", secret=True)
    key_id: str | None = _member("KeyId")
    encryption_algorithm: str | None = _member("EncryptionAlgorithm")
    key_material_id: str | None = _member("KeyMaterialId")


@dataclass(frozen=True, kw_only=True)
class DataKey(KmsResult):
    """A GenerateDataKey answer: the data key, and the same key under the KMS key (keep that, drop this)."""

    plaintext: bytes = _member("Plaintext", secret=True)
    ciphertext_blob: bytes = _member("CiphertextBlob")
    key_id: str | None = _member("KeyId")
    key_material_id: str | None = _member("KeyMaterialId")


@dataclass(frozen=True, kw_only=True)
class DataKeyPair(KmsResult):
    """A GenerateDataKeyPair answer: the private key (PKCS#8 DER), its public key (DER SPKI) and the private
    key under the KMS key."""

    private_key_plaintext: bytes = _member("PrivateKeyPlaintext", secret=True)
    public_key: bytes = _member("PublicKey")
    private_key_ciphertext_blob: bytes = _member("PrivateKeyCiphertextBlob")
    key_id: str | None = _member("KeyId")
    key_pair_spec: str | None = _member("KeyPairSpec")
    key_material_id: str | None = _member("KeyMaterialId")


@dataclass(frozen=True, kw_only=True)
class SharedSecret(KmsResult):
    """A DeriveSharedSecret answer: the raw ECDH shared secret (derive keys from it with a KDF)."""

    shared_secret: bytes = _member("SharedSecret", secret=True)
    key_id: str | None = _member("KeyId")
    key_agreement_algorithm: str | None = _member("KeyAgreementAlgorithm")
    key_origin: str | None = _member("KeyOrigin")


def _rsa_check(bits: int) -> Callable[[object], bool]:
    return lambda key: isinstance(key, rsa.RSAPrivateKey) and key.key_size == bits


def _ec_check(curve: type[ec.EllipticCurve]) -> Callable[[object], bool]:
    return lambda key: isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, curve)


# The KeyPairSpecs whose private key this client can parse and check against the spec and the PublicKey.
# SM2 and ML-KEM keys are not among them (cryptography reads neither), so the client refuses to ask for them.
_KEY_PAIR_CHECKS: Mapping[str, Callable[[object], bool]] = {
    "RSA_2048": _rsa_check(2048),
    "RSA_3072": _rsa_check(3072),
    "RSA_4096": _rsa_check(4096),
    "ECC_NIST_P256": _ec_check(ec.SECP256R1),
    "ECC_NIST_P384": _ec_check(ec.SECP384R1),
    "ECC_NIST_P521": _ec_check(ec.SECP521R1),
    "ECC_SECG_P256K1": _ec_check(ec.SECP256K1),
    "ECC_NIST_EDWARDS25519": lambda key: isinstance(key, ed25519.Ed25519PrivateKey),
}
#: The KeyPairSpecs :meth:`KmsClient.generate_data_key_pair` accepts.
SUPPORTED_KEY_PAIR_SPECS = tuple(_KEY_PAIR_CHECKS)
# ECDH on these curves gives a shared secret as long as a field element (SEC 1, 3.3.1).
_SHARED_SECRET_BYTES: Mapping[type[ec.EllipticCurve], int] = {
    ec.SECP256R1: 32, ec.SECP384R1: 48, ec.SECP521R1: 66, ec.SECP256K1: 32}


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
    """The Recipient operations through the parent proxy. Thread-safe; calls run one at a time.

    ``mode`` ``"relay"`` (default): the parent at ``parent`` calls KMS. ``"tunnel"``: ``parent`` is the
    parent's byte relay and this client talks to KMS over TLS through it; ``region`` (default ``AWS_REGION``
    or ``AWS_DEFAULT_REGION``), ``kms_host`` (TLS server name and Host header; default
    ``kms.<region>.amazonaws.com``), ``ca_file`` (PEM roots; default the shipped Amazon Trust Services
    roots) and ``credentials`` (the parent's credentials channel address, default vsock://3:8001; or static
    :class:`~nitrokit.wire.credentials.AwsCredentials`, a zero-argument callable returning them, or a
    :class:`~nitrokit.enclave.tunnel.CredentialsProvider`: what these raise fails the call as a
    :class:`~nitrokit.enclave.errors.KmsCallError` with code "CredentialsError") are for tunnel mode only (a
    :class:`~nitrokit.errors.UsageError` in relay mode).

    ``mix_nsm_entropy`` (default True) derives each result from the KMS bytes and as many NSM GetRandom bytes
    with HKDF-SHA384; False is the explicit opt-out (the bytes are then whatever the envelope held, which a
    hostile parent can choose).
    """

    def __init__(
        self,
        *,
        nsm: Nsm,
        parent: str | Address = DEFAULT_PARENT,
        mode: Literal["relay", "tunnel"] = "relay",
        region: str | None = None,
        kms_host: str | None = None,
        ca_file: str | Path | None = None,
        credentials: str | Address | CredentialsSource | None = None,
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
        self._transport = _transport(self._address, mode=mode, region=region, kms_host=kms_host, ca_file=ca_file,
                                     credentials=credentials, connect_timeout=connect_timeout, timeout=timeout)
        self._mode = mode
        self._mix = mix_nsm_entropy
        self._trace = trace or (lambda _message: None)
        self._identity: _Identity | None = None
        self._lock = threading.Lock()

    @property
    def parent(self) -> Address:
        """The parent's address: its KMS proxy in relay mode, its byte relay (``nitrokit parent --mode tunnel``)
        in tunnel mode."""
        return self._address

    @property
    def mode(self) -> Literal["relay", "tunnel"]:
        """``relay``: the parent calls KMS; ``tunnel``: this client does, over TLS through the parent's relay."""
        return self._mode

    @property
    def mixes_nsm_entropy(self) -> bool:
        """Whether results are mixed with NSM entropy (the default) or the KMS bytes as decrypted."""
        return self._mix

    def generate_random(self, number_of_bytes: int, *, custom_key_store_id: str | None = None) -> bytes:
        """``number_of_bytes`` (1..1024) random bytes from KMS that only this enclave could decrypt."""
        if type(number_of_bytes) is not int or not MIN_RANDOM_BYTES <= number_of_bytes <= MAX_RANDOM_BYTES:
            raise UsageError(f"the number of bytes must be an integer from {MIN_RANDOM_BYTES} to {MAX_RANDOM_BYTES}")
        params: dict[str, Any] = {"NumberOfBytes": number_of_bytes}
        if custom_key_store_id is not None:
            params["CustomKeyStoreId"] = custom_key_store_id
        _, kms_bytes = self._exchange(GENERATE_RANDOM, params, number_of_bytes)
        if not self._mix:
            return kms_bytes
        return self._mix_with_nsm(kms_bytes, number_of_bytes)

    def decrypt(
        self, ciphertext_blob: bytes, *, key_id: str | None = None,
        encryption_context: Mapping[str, str] | None = None, encryption_algorithm: str | None = None,
        grant_tokens: Sequence[str] | None = None,
    ) -> DecryptResult:
        """Decrypt ``ciphertext_blob`` (from Encrypt or GenerateDataKey) with KMS; the plaintext opens only here.

        ``key_id`` (required by KMS for asymmetric keys) is checked against the KeyId KMS answers when it is a
        key id or key ARN. The answer's EncryptionAlgorithm must be the one asked (SYMMETRIC_DEFAULT if none).
        """
        params = _params(CiphertextBlob=ciphertext_blob, KeyId=key_id, EncryptionContext=encryption_context,
                         EncryptionAlgorithm=encryption_algorithm, GrantTokens=grant_tokens)

        def check(members: dict[str, Any], _: bytes) -> None:
            _check_key_id(key_id, members)
            _check_echo(members, "EncryptionAlgorithm", encryption_algorithm or SYMMETRIC_DEFAULT)

        members, plaintext = self._exchange(DECRYPT, params, None, check)
        return DecryptResult(plaintext=plaintext, key_id=members.get("KeyId"),
                             encryption_algorithm=members.get("EncryptionAlgorithm"),
                             key_material_id=members.get("KeyMaterialId"))

    def generate_data_key(
        self, key_id: str, *, key_spec: str | None = None, number_of_bytes: int | None = None,
        encryption_context: Mapping[str, str] | None = None, grant_tokens: Sequence[str] | None = None,
    ) -> DataKey:
        """A data key from KMS under ``key_id``: exactly one of ``key_spec`` (AES_256, AES_128) and
        ``number_of_bytes`` (1..1024). The plaintext key opens only here; keep ``ciphertext_blob`` to get it
        back with :meth:`decrypt`."""
        params = _params(KeyId=key_id, KeySpec=key_spec, NumberOfBytes=number_of_bytes,
                         EncryptionContext=encryption_context, GrantTokens=grant_tokens)
        GENERATE_DATA_KEY.encode_request(params)  # the usage errors before any NSM or parent work
        size = DATA_KEY_SPEC_BYTES[key_spec] if key_spec is not None else number_of_bytes

        def check(members: dict[str, Any], _: bytes) -> None:
            _check_key_id(key_id, members)
            _required(members, "CiphertextBlob", GENERATE_DATA_KEY)

        members, plaintext = self._exchange(GENERATE_DATA_KEY, params, size, check)
        return DataKey(plaintext=plaintext, ciphertext_blob=members["CiphertextBlob"], key_id=members.get("KeyId"),
                       key_material_id=members.get("KeyMaterialId"))

    def generate_data_key_pair(
        self, key_id: str, key_pair_spec: str, *, encryption_context: Mapping[str, str] | None = None,
        grant_tokens: Sequence[str] | None = None,
    ) -> DataKeyPair:
        """A data key pair of ``key_pair_spec`` (:data:`SUPPORTED_KEY_PAIR_SPECS`), its private key under
        ``key_id``. The private key (PKCS#8 DER) opens only here and is checked: of the spec, and the private
        half of the PublicKey KMS answered."""
        if key_pair_spec not in _KEY_PAIR_CHECKS:
            raise UsageError(f"key pair spec must be one of {', '.join(SUPPORTED_KEY_PAIR_SPECS)} (the ones whose "
                             "private key this client can check)")
        params = _params(KeyId=key_id, KeyPairSpec=key_pair_spec, EncryptionContext=encryption_context,
                         GrantTokens=grant_tokens)

        def check(members: dict[str, Any], private_der: bytes) -> None:
            _check_key_id(key_id, members)
            _check_echo(members, "KeyPairSpec", key_pair_spec)
            public_key = _required(members, "PublicKey", GENERATE_DATA_KEY_PAIR)
            _required(members, "PrivateKeyCiphertextBlob", GENERATE_DATA_KEY_PAIR)
            _check_key_pair(private_der, public_key, key_pair_spec)

        members, private_der = self._exchange(GENERATE_DATA_KEY_PAIR, params, None, check)
        return DataKeyPair(private_key_plaintext=private_der, public_key=members["PublicKey"],
                           private_key_ciphertext_blob=members["PrivateKeyCiphertextBlob"], key_id=members.get("KeyId"),
                           key_pair_spec=members.get("KeyPairSpec"), key_material_id=members.get("KeyMaterialId"))

    def derive_shared_secret(
        self, key_id: str, public_key: bytes, *, key_agreement_algorithm: str = KEY_AGREEMENT_ALGORITHMS[0],
        grant_tokens: Sequence[str] | None = None,
    ) -> SharedSecret:
        """The ECDH shared secret of the KMS key pair ``key_id`` and the peer's ``public_key`` (DER SPKI on
        P-256, P-384, P-521 or secp256k1); it opens only here and must be as long as the curve gives."""
        size = _shared_secret_size(public_key)
        params = _params(KeyId=key_id, PublicKey=public_key, KeyAgreementAlgorithm=key_agreement_algorithm,
                         GrantTokens=grant_tokens)

        def check(members: dict[str, Any], _: bytes) -> None:
            _check_key_id(key_id, members)
            _check_echo(members, "KeyAgreementAlgorithm", key_agreement_algorithm)

        members, secret = self._exchange(DERIVE_SHARED_SECRET, params, size, check)
        return SharedSecret(shared_secret=secret, key_id=members.get("KeyId"),
                            key_agreement_algorithm=members.get("KeyAgreementAlgorithm"),
                            key_origin=members.get("KeyOrigin"))

    def close(self) -> None:
        self._transport.close()
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

    def _exchange(
        self, operation: Operation, params: dict[str, Any], size: int | None,
        check: Callable[[dict[str, Any], bytes], None] | None = None,
    ) -> tuple[dict[str, Any], bytes]:
        """Send ``operation`` with a Recipient; return the answer's members and the opened secret, checked to
        be ``size`` bytes when given and then by ``check`` (which raises :class:`UntrustedAnswerError`)."""
        operation.encode_request(params)  # usage errors first, before any key or document is made
        with self._lock:
            identity = self._current_identity()
            request = operation.encode_request({**params, "Recipient": recipient_info(identity.document)})
            answer = self._call_with_retries(operation.name, request)
            identity.uses += 1
            try:
                members, secret = self._open(operation, answer, identity, size)
                if check is not None:
                    check(members, secret)
            except UntrustedAnswerError:
                # Never try a second envelope with a key that has seen a bad one: whether decryption
                # succeeds is visible to the parent, and unauthenticated CBC turns repeated tries with one
                # key into a padding oracle against earlier answers.
                self._identity = None
                raise
        return members, secret

    def _call_with_retries(self, operation: str, request: dict[str, object]) -> dict[str, object]:
        attempt = 0
        kms_host = getattr(self._transport, "kms_host", None)  # the tunnel transport's
        where = (f"KMS {kms_host} over TLS through the relay {self._address}" if kms_host is not None
                 else f"parent {self._address}")
        while True:
            attempt += 1
            try:
                self._trace(f"{operation} -> {where} (attempt {attempt})")
                return self._transport.call(operation, request)
            except TlsFailure as exc:
                # Never retried: the relay altered the bytes, or the server is not the KMS we trust.
                raise TlsError(str(exc), code=exc.code, retryable=False, attempts=attempt) from None
            except WireError as exc:
                code = exc.code if isinstance(exc, RemoteError) else type(exc).__name__
                detail = exc.remote_message if isinstance(exc, RemoteError) else str(exc)
                if not exc.retryable or attempt >= self._retry.max_attempts:
                    raise KmsCallError(detail, code=code, retryable=exc.retryable, attempts=attempt) from None
                delay = self._retry.delay(attempt)
                self._trace(f"retryable failure {code}; retrying in {delay * 1000:.0f} ms")
                time.sleep(delay)

    def _open(self, operation: Operation, answer: dict[str, object], identity: _Identity,
              size: int | None) -> tuple[dict[str, Any], bytes]:
        try:
            members = operation.decode_response(answer)
        except WireError as exc:
            raise UntrustedAnswerError(f"the answer is not a {operation.name} response: {exc}") from None
        clear = operation.plaintext_member
        if members.get(clear) is not None:
            raise UntrustedAnswerError(f"the answer carries {clear} although a Recipient was sent: refused")
        envelope = members.get("CiphertextForRecipient")
        if envelope is None:
            raise UntrustedAnswerError("the answer has no CiphertextForRecipient")
        try:
            secret = cms.decrypt(envelope, identity.key_pair.private_key)
        except cms.RecipientMismatchError:
            raise UntrustedAnswerError("CiphertextForRecipient is addressed to another key, not ours") from None
        except cms.CmsError as exc:
            raise UntrustedAnswerError(f"CiphertextForRecipient cannot be opened: {exc}") from None
        if size is not None and len(secret) != size:
            raise UntrustedAnswerError(f"CiphertextForRecipient holds {len(secret)} bytes, {size} were asked for")
        if not secret:
            raise UntrustedAnswerError(f"CiphertextForRecipient holds no bytes (KMS's {clear} is 1 byte or more)")
        self._trace(f"CiphertextForRecipient ({len(envelope)} bytes of CMS) decrypted inside the enclave: "
                    f"{len(secret)} bytes")
        return members, secret

    def _mix_with_nsm(self, kms_bytes: bytes, number_of_bytes: int) -> bytes:
        nsm_bytes = b""
        while len(nsm_bytes) < number_of_bytes:
            nsm_bytes += self._nsm.get_random()
        self._trace("mixed with NSM GetRandom output through HKDF-SHA384")
        return HKDF(algorithm=hashes.SHA384(), length=number_of_bytes, salt=None,
                    info=_HKDF_INFO).derive(kms_bytes + nsm_bytes[:number_of_bytes])


class _Transport(Protocol):
    """How a request reaches KMS: the parent's protocol (relay mode) or HTTPS through its relay (tunnel)."""

    def call(self, operation: str, request: Mapping[str, Any]) -> dict[str, Any]: ...

    def close(self) -> None: ...


def _transport(
    address: Address, *, mode: str, region: str | None, kms_host: str | None, ca_file: str | Path | None,
    credentials: str | Address | CredentialsSource | None, connect_timeout: float, timeout: float,
) -> _Transport:
    if mode == "relay":
        given = [name for name, value in (("region", region), ("kms_host", kms_host), ("ca_file", ca_file),
                                          ("credentials", credentials)) if value is not None]
        if given:
            raise UsageError(f"{', '.join(given)}: for mode='tunnel' only (in relay mode the parent calls KMS)")
        return WireClient(address, connect_timeout=connect_timeout, timeout=timeout)
    if mode != "tunnel":
        raise UsageError(f"mode must be 'relay' or 'tunnel', not {escaped(str(mode), 20)!r}")
    region = region if region is not None else region_from_environment()
    if region is None:
        raise UsageError("tunnel mode needs the KMS region: pass region= (or set AWS_REGION)")
    # Loaded only for tunnel mode: TLS, SigV4 and the HTTP client stay out of relay mode's (and --help's) start.
    from nitrokit.enclave.tunnel import TunnelTransport

    return TunnelTransport(address, region=region, kms_host=kms_host, ca_file=ca_file, credentials=credentials,
                           connect_timeout=connect_timeout, timeout=timeout)


# -- the checks an answer must pass (UntrustedAnswerError) -----------------------------------------------------


def _params(**members: Any) -> dict[str, Any]:
    """The request members given (None means absent); the operation's shapes check the rest."""
    return {name: value for name, value in members.items() if value is not None}


def _required(members: Mapping[str, Any], name: str, operation: Operation) -> Any:
    value = members.get(name)
    if value is None:
        raise UntrustedAnswerError(f"the {operation.name} answer has no {name}")
    return value


def _check_echo(members: Mapping[str, Any], name: str, expected: str) -> None:
    answered = members.get(name)
    if answered is not None and answered != expected:
        raise UntrustedAnswerError(f"the answer's {name} is {answered}, {expected} was asked for")


def _check_key_id(requested: str | None, members: Mapping[str, Any]) -> None:
    """KMS answers KeyId as the key ARN: a key ARN asked for must come back as it is, a key id as the end of it,
    and an alias ARN as a key ARN of the alias's partition, region and account.

    An alias name (``alias/...``) names a key this client cannot see: any key ARN passes. The account check
    matters most in tunnel mode, where the answer is KMS's own: the parent hands out the credentials, and a
    parent handing out those of its own account must not get a secret made under its account's key unnoticed.
    """
    answered = members.get("KeyId")
    if answered is None:
        raise UntrustedAnswerError("the answer has no KeyId (KMS always names the key it used)")
    if requested is None or requested.startswith("alias/"):
        return
    if requested.startswith("arn:") and ":alias/" in requested:
        # arn:PARTITION:kms:REGION:ACCOUNT:alias/NAME -> arn:PARTITION:kms:REGION:ACCOUNT:key/ID
        matches = answered.startswith(requested.partition(":alias/")[0] + ":key/")
    elif requested.startswith("arn:"):
        matches = answered == requested
    else:
        matches = answered == requested or answered.endswith(f":key/{requested}")
    if not matches:
        # The answer's KeyId is the parent's words: escaped, so it cannot drive a terminal or forge a log line.
        raise UntrustedAnswerError(f"the answer names key {escaped(answered, 120)}, not the key "
                                   f"{escaped(requested, 120)} asked for")


def _check_key_pair(private_der: bytes, public_der: bytes, spec: str) -> None:
    try:
        private_key = serialization.load_der_private_key(private_der, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise UntrustedAnswerError("the private key in CiphertextForRecipient is not a PKCS#8 DER key") from None
    if not _KEY_PAIR_CHECKS[spec](private_key):
        raise UntrustedAnswerError(f"the private key in CiphertextForRecipient is not a {spec} key")
    ours = private_key.public_key().public_bytes(serialization.Encoding.DER,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)
    if ours != public_der:
        raise UntrustedAnswerError("the answer's PublicKey is not the public half of the private key it holds")


def _shared_secret_size(public_key: object) -> int:
    if not isinstance(public_key, bytes | bytearray | memoryview):
        raise UsageError(f"the public key must be DER SubjectPublicKeyInfo bytes, not {type(public_key).__name__}")
    try:
        key = serialization.load_der_public_key(bytes(public_key))
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise UsageError("the public key is not a DER SubjectPublicKeyInfo") from None
    size = _SHARED_SECRET_BYTES.get(type(key.curve)) if isinstance(key, ec.EllipticCurvePublicKey) else None
    if size is None:
        raise UsageError("the public key must be an EC key on P-256, P-384, P-521 or secp256k1")
    return size
