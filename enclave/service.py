"""The enclave service: an identity seeded from KMS, proven by attestation documents on request.

At start the service asks KMS for a 32-byte seed through the parent (GenerateRandom with a Recipient, so
the parent cannot read it). It then derives a P-384 identity key pair from the seed. After that it answers
``Attest`` requests over the wire protocol. Each answer is a fresh NSM attestation document carrying the
caller's nonce and the service's public key, so a caller who verifies the document knows that this key
lives in an enclave with those PCRs. ``Sign`` requests put that key to use: the service signs the caller's
message (with a fixed context prefix), and the signature proves the message went through this enclave,
though not who asked for it. The seed and the private key never leave the process.

By default the seed is mixed with the NSM's own random bytes through HKDF. A hostile parent can forge a
CMS envelope (docs/threat-model.md), and without mixing it could then choose the seed, and so the
identity key.

Logs go to the ``nitrokit.enclave`` logger: a line when the seed is asked for, the "listening on" line
(with the identity's public-key fingerprint, never the key or seed), then one line per call as every wire
server writes them (docs/protocol.md). The operations, their limits and errors: docs/enclave-service.md.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from nitrokit.enclave.kms_client import KmsClient
from nitrokit.enclave.nsm import Nsm, NsmError
from nitrokit.errors import UsageError
from nitrokit.wire.address import Address
from nitrokit.wire.errors import ErrorCode, InvalidRequestError
from nitrokit.wire.messages import Request
from nitrokit.wire.server import CallFailed, ServerLimits, WireServer
from nitrokit.wire.service import ATTEST, SERVICE_OPERATIONS, SIGN, SIGNATURE_CONTEXT

SEED_BYTES = 32
DEFAULT_LISTEN = "vsock://any:5005"
_IDENTITY_INFO = b"nitrokit enclave identity P-384 v1"
_P384_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973


def derive_identity_key(seed: bytes) -> ec.EllipticCurvePrivateKey:
    """A P-384 private key determined by ``seed`` (HKDF-SHA384 to 64 bytes, reduced into 1..n-1)."""
    if len(seed) < SEED_BYTES:
        raise UsageError(f"an identity seed needs at least {SEED_BYTES} bytes")
    okm = HKDF(algorithm=hashes.SHA384(), length=64, salt=None, info=_IDENTITY_INFO).derive(seed)
    scalar = int.from_bytes(okm, "big") % (_P384_ORDER - 1) + 1
    return ec.derive_private_key(scalar, ec.SECP384R1())


class EnclaveService:
    """Serve ``Attest`` over the wire protocol with a KMS-seeded identity. See the module docstring."""

    def __init__(self, *, nsm: Nsm, kms: KmsClient, listen: str | Address = DEFAULT_LISTEN,
                 limits: ServerLimits | None = None) -> None:
        self._listen = listen
        self._nsm = nsm
        self._kms = kms
        self._nsm_lock = threading.Lock()  # one NSM request at a time, as on the device's single descriptor
        self._server = WireServer(limits or ServerLimits(), self._handle, operations=SERVICE_OPERATIONS,
                                  name="enclave")
        self._identity: ec.EllipticCurvePrivateKey | None = None
        self._public_key_der: bytes | None = None

    @property
    def public_key_der(self) -> bytes:
        """The identity's public key (DER SubjectPublicKeyInfo), once started."""
        if self._public_key_der is None:
            raise UsageError("the service is not started")
        return self._public_key_der

    @property
    def address(self) -> Address:
        return self._server.address

    async def start(self) -> Address:
        """Get the seed from KMS, derive the identity, then listen. KMS failures propagate (typed)."""
        mixing = "mixed with NSM entropy" if self._kms.mixes_nsm_entropy else "KMS bytes alone, not mixed"
        self._server.logger.info("asking KMS for the identity seed through the parent at %s (%s)",
                                 self._kms.parent, mixing)
        seed = await asyncio.get_running_loop().run_in_executor(None, self._kms.generate_random, SEED_BYTES)
        identity = self._identity = derive_identity_key(seed)
        del seed
        self._public_key_der = identity.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        fingerprint = hashlib.sha256(self._public_key_der).hexdigest()[:16]
        return await self._server.start(self._listen, detail=f"identity P-384 key sha256:{fingerprint}..., "
                                                             f"operations {', '.join(SERVICE_OPERATIONS)}")

    async def serve(self) -> None:
        await self._server.serve()

    def request_stop(self) -> None:
        self._server.request_stop()

    async def stop(self) -> None:
        await self._server.stop()
        self._kms.close()

    def __repr__(self) -> str:
        return f"EnclaveService(listen={self._listen!s})"  # never the identity key

    async def _handle(self, request: Request) -> Mapping[str, Any]:
        operation = SERVICE_OPERATIONS[request.operation]
        try:
            params = operation.decode_request(request.request)
        except InvalidRequestError as exc:
            raise CallFailed(ErrorCode.INVALID_REQUEST, str(exc)) from None
        if operation is SIGN:
            return SIGN.encode_response({"Signature": self._sign(params["Message"])})
        document = await asyncio.get_running_loop().run_in_executor(None, self._attest, params["Nonce"])
        return ATTEST.encode_response({"AttestationDocument": document})

    def _sign(self, message: bytes) -> bytes:
        if self._identity is None:
            raise CallFailed(ErrorCode.INTERNAL_ERROR, "the service has no identity yet")
        return self._identity.sign(SIGNATURE_CONTEXT + message, ec.ECDSA(hashes.SHA384()))

    def _attest(self, nonce: bytes) -> bytes:
        try:
            with self._nsm_lock:
                return self._nsm.attestation(nonce=nonce, public_key=self.public_key_der)
        except NsmError as exc:
            raise CallFailed(ErrorCode.INTERNAL_ERROR, f"the NSM refused the attestation: {exc}") from None
