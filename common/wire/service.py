"""The enclave service's operations on the wire: ``Attest`` (a fresh attestation document) and ``Sign``.

The service (``nitrokit enclave serve``) speaks the same frames and messages as the parent proxy, with its own
allow-list, :data:`SERVICE_OPERATIONS`. :class:`ServiceClient` is its client (``nitrokit enclave call`` on the
command line; docs/enclave-service.md)::

    with ServiceClient("vsock://16:5005") as service:
        document = service.attest(nonce)          # unverified: verify it before trusting its public key
        signature = service.sign(b"message")      # check with verify_service_signature(public_key, ...)

- ``Attest``: request ``{"Nonce": base64}`` (1..1024 bytes, the NSM's limit); response
  ``{"AttestationDocument": base64}``, whose ``public_key`` is the service's identity key. A caller verifies
  the document itself (:class:`nitrokit.attestation.Verifier` with ``Policy(nonce=nonce)``): nothing in the
  answer is trusted until then.
- ``Sign``: request ``{"Message": base64}`` (1..16384 bytes); response ``{"Signature": base64}``, an ECDSA
  P-384 / SHA-384 signature (DER) by the identity key over :data:`SIGNATURE_CONTEXT` followed by the message.
  Check it with the public key from a verified ``Attest`` document (:func:`verify_service_signature`).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from nitrokit.attestation import MAX_DOCUMENT_BYTES, MAX_OPTIONAL_FIELD_BYTES
from nitrokit.wire.address import Address
from nitrokit.wire.client import DEFAULT_CONNECT_TIMEOUT, DEFAULT_TIMEOUT, WireClient
from nitrokit.wire.errors import InvalidResponseError
from nitrokit.wire.kms import Blob, Operation, Structure

MAX_NONCE_BYTES = MAX_OPTIONAL_FIELD_BYTES  # the NSM's limit, as the attestation parser states it
MAX_MESSAGE_BYTES = 16384
#: Prefixed to every signed message, so the identity's signatures cannot be mistaken for another protocol's.
SIGNATURE_CONTEXT = b"nitrokit enclave service signature v1\x00"

ATTEST = Operation(
    name="Attest",
    request=Structure(members={"Nonce": Blob(1, MAX_NONCE_BYTES)}, required=frozenset({"Nonce"})),
    response=Structure(members={"AttestationDocument": Blob(1, MAX_DOCUMENT_BYTES)},
                       required=frozenset({"AttestationDocument"})),
)

SIGN = Operation(
    name="Sign",
    request=Structure(members={"Message": Blob(1, MAX_MESSAGE_BYTES)}, required=frozenset({"Message"})),
    response=Structure(members={"Signature": Blob(1, 256)}, required=frozenset({"Signature"})),
)

#: The enclave service's allow-list.
SERVICE_OPERATIONS: Mapping[str, Operation] = {ATTEST.name: ATTEST, SIGN.name: SIGN}


def attest_request(nonce: bytes) -> dict[str, Any]:
    """The JSON of an Attest request."""
    return ATTEST.encode_request({"Nonce": nonce})


def parse_attest_response(response: Any) -> bytes:
    """The attestation document in an Attest response (unverified: verify it before trusting it)."""
    document = ATTEST.decode_response(response).get("AttestationDocument")
    if not isinstance(document, bytes):
        raise InvalidResponseError("Attest response: AttestationDocument is missing")
    return document


def sign_request(message: bytes) -> dict[str, Any]:
    """The JSON of a Sign request."""
    return SIGN.encode_request({"Message": message})


def parse_sign_response(response: Any) -> bytes:
    """The DER signature in a Sign response (check it with :func:`verify_service_signature`)."""
    signature = SIGN.decode_response(response).get("Signature")
    if not isinstance(signature, bytes):
        raise InvalidResponseError("Sign response: Signature is missing")
    return signature


def verify_service_signature(public_key_der: bytes, message: bytes, signature: bytes) -> bool:
    """True if ``signature`` is the service identity's signature of ``message``.

    ``public_key_der`` must come from a *verified* attestation document of the service.
    """
    key = serialization.load_der_public_key(public_key_der)
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP384R1):
        return False
    try:
        key.verify(signature, SIGNATURE_CONTEXT + message, ec.ECDSA(hashes.SHA384()))
    except InvalidSignature:
        return False
    return True


class ServiceClient:
    """A blocking client of the enclave service over one (reused) connection.

    Failures are the wire client's typed errors: :class:`~nitrokit.wire.errors.RemoteError` for an error
    response (``InvalidRequest`` for a nonce or message outside its limits, ``InternalError`` if the NSM
    refused), :class:`~nitrokit.wire.errors.TransportError` when the service cannot be reached, and
    :class:`~nitrokit.wire.errors.InvalidResponseError` for an answer that is not the operation's shape.
    """

    def __init__(self, address: str | Address, *, connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        self._wire = WireClient(address, connect_timeout=connect_timeout, timeout=timeout,
                                operations=SERVICE_OPERATIONS)

    def attest(self, nonce: bytes) -> bytes:
        """A fresh attestation document carrying ``nonce`` and the service's public key (unverified)."""
        return parse_attest_response(self._wire.call(ATTEST.name, attest_request(nonce)))

    def sign(self, message: bytes) -> bytes:
        """The service identity's DER signature over :data:`SIGNATURE_CONTEXT` followed by ``message``."""
        return parse_sign_response(self._wire.call(SIGN.name, sign_request(message)))

    def close(self) -> None:
        self._wire.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
