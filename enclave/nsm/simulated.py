"""A simulated NSM: the real device's CBOR protocol, PCR rules and limits, in process, for offline work and tests.

:meth:`SimulatedNsm.handle` takes request bytes and returns response bytes exactly as /dev/nsm would, and the
:class:`~nitrokit.enclave.nsm.Nsm` methods go through it, so the simulator exercises the same codec as the device.

- 32 PCRs of 48 bytes (SHA-384). PCR0..15 are locked from the start with configurable values (all zero in
  debug mode); PCR16..31 start as zeros, unlocked. Extend is ``new = SHA-384(old || data)``.
- Error codes as the real NSM: ``InvalidIndex`` for a PCR index >= 32 or a LockPCRs range > 32,
  ``ReadOnlyIndex`` to extend or LockPCR a locked PCR, ``InputTooLarge`` for a request over 4096 bytes or an
  attestation field over 1024 bytes, ``InvalidOperation`` for an unknown request, ``InvalidArgument`` for
  undecodable CBOR or a malformed known request (stricter than the device: unknown fields are refused too).
- Attestation documents have the real shape (untagged COSE_Sign1, protected {1: -35}, empty unprotected map,
  every locked PCR, cabundle root + 3 intermediates) and are signed through the fixture PKI
  (:mod:`nitrokit.testing`): they verify against fixtures/pki/root.pem, NEVER against the AWS root, and prove
  nothing about any real enclave.

Signing certificates: like a real NSM, the simulator signs many documents with one leaf. It issues a fresh
3-hour leaf from the fixture instance CA on the first attestation and whenever the current one has less than
:data:`LEAF_REUSE_MARGIN` of validity left, so every document stays verifiable "now" for at least an hour and
attestation costs one P-384 signature instead of a certificate issuance plus a key generation.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from nitrokit.attestation import PCR_COUNT
from nitrokit.attestation._parse import MAX_OPTIONAL_FIELD_BYTES
from nitrokit.enclave.nsm import _codec
from nitrokit.enclave.nsm._client import BOOT_LOCKED_PCRS, PCR_BYTES, Nsm
from nitrokit.enclave.nsm.errors import ErrorCode, NsmError, NsmInputTooLargeError
from nitrokit.errors import UsageError
from nitrokit.testing.documents import DEFAULT_MODULE_ID, build_payload, sign_payload
from nitrokit.testing.pki import FixturePki, fixture_pki

# The real NSM's numbers, as the attestation parser states them.
MAX_PCRS = PCR_COUNT
MAX_ATTESTATION_FIELD_BYTES = MAX_OPTIONAL_FIELD_BYTES
RANDOM_BYTES = 256
VERSION = (1, 0, 0)
# The module id also names the signing certificate, whose CN (at most 64 characters) appends 22 more.
MAX_MODULE_ID_CHARS = 42
LEAF_REUSE_MARGIN = timedelta(hours=1)

_ZERO_PCR = bytes(PCR_BYTES)


def default_pcrs() -> dict[int, bytes]:
    """PCR0..15 as a non-debug enclave reports them: 0, 1, 2 (image) and 4 (parent instance) set, others zero."""
    pcrs = dict.fromkeys(range(BOOT_LOCKED_PCRS), _ZERO_PCR)
    for index in (0, 1, 2, 4):
        pcrs[index] = hashlib.sha384(f"nitrokit simulated PCR{index}".encode()).digest()
    return pcrs


class SimulatedNsm(Nsm):
    """An in-process NSM (see the module documentation). Thread-safe; its state lives as long as the object.

    ``pcrs`` sets PCR0..15 (48-byte values; those not given keep :func:`default_pcrs`), ``debug`` makes them all
    zero like a debug-mode enclave, ``module_id`` names the module, ``pki`` replaces the fixture PKI and ``clock``
    (returning an aware datetime) the time used for document timestamps and leaf certificates.
    """

    def __init__(
        self,
        *,
        pcrs: Mapping[int, bytes] | None = None,
        module_id: str = DEFAULT_MODULE_ID,
        debug: bool = False,
        pki: FixturePki | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if debug and pcrs:
            raise UsageError("debug mode reports PCR0..15 as zeros: do not also give PCR values")
        if not isinstance(module_id, str) or not 0 < len(module_id) <= MAX_MODULE_ID_CHARS \
                or not module_id.isprintable():
            raise UsageError(f"module_id must be 1..{MAX_MODULE_ID_CHARS} printable characters")
        boot = dict.fromkeys(range(BOOT_LOCKED_PCRS), _ZERO_PCR) if debug else default_pcrs()
        for index, value in (pcrs or {}).items():
            if type(index) is not int or not 0 <= index < BOOT_LOCKED_PCRS:
                raise UsageError(f"PCR {index!r}: only PCR0..{BOOT_LOCKED_PCRS - 1} have start values")
            if not isinstance(value, bytes) or len(value) != PCR_BYTES:
                raise UsageError(f"PCR {index} must be {PCR_BYTES} bytes")
            boot[index] = value

        self._module_id = module_id
        self._pki = pki or fixture_pki()
        self._cabundle = self._pki.cabundle
        self._clock = clock or (lambda: datetime.now(UTC))
        self._pcrs = [boot.get(index, _ZERO_PCR) for index in range(MAX_PCRS)]
        self._locked = [index < BOOT_LOCKED_PCRS for index in range(MAX_PCRS)]
        self._signer: tuple[x509.Certificate, bytes, ec.EllipticCurvePrivateKey] | None = None
        self._lock = threading.Lock()

    @property
    def module_id(self) -> str:
        return self._module_id

    def __repr__(self) -> str:
        locked = sum(self._locked)
        return f"SimulatedNsm(module_id={self._module_id!r}, locked_pcrs={locked})"

    def handle(self, request: object) -> bytes:
        """Answer one encoded request with encoded response bytes; garbage gets an Error response, never raises."""
        try:
            message = _codec.decode_request(request)
            with self._lock:
                return self._dispatch(message)
        except NsmError as exc:
            return _codec.encode_error(exc.code or ErrorCode.INTERNAL_ERROR)
        except Exception:  # a simulator bug must still look like an NSM answer, not escape into the caller
            return _codec.encode_error(ErrorCode.INTERNAL_ERROR)

    def _exchange(self, request: bytes) -> bytes:
        return self.handle(request)

    # --- the operations (called with the lock held) ------------------------------------------------------

    def _dispatch(self, message: _codec.Message) -> bytes:
        name, fields = message
        if name == _codec.ATTESTATION:
            document = self._attest(fields["user_data"], fields["nonce"], fields["public_key"])
            return _codec.encode(name, {"document": document})
        if name == _codec.DESCRIBE_PCR:
            index = self._index(fields["index"])
            return _codec.encode(name, {"lock": self._locked[index], "data": self._pcrs[index]})
        if name == _codec.EXTEND_PCR:
            index = self._unlocked_index(fields["index"])
            self._pcrs[index] = hashlib.sha384(self._pcrs[index] + fields["data"]).digest()
            return _codec.encode(name, {"data": self._pcrs[index]})
        if name == _codec.LOCK_PCR:
            self._locked[self._unlocked_index(fields["index"])] = True
            return _codec.encode(name)
        if name == _codec.LOCK_PCRS:
            if fields["range"] > MAX_PCRS:
                raise NsmError("range over the PCR count", code=ErrorCode.INVALID_INDEX)
            for index in range(fields["range"]):
                self._locked[index] = True
            return _codec.encode(name)
        if name == _codec.DESCRIBE_NSM:
            major, minor, patch = VERSION
            return _codec.encode(name, {
                "version_major": major, "version_minor": minor, "version_patch": patch,
                "module_id": self._module_id, "max_pcrs": MAX_PCRS,
                "locked_pcrs": [index for index in range(MAX_PCRS) if self._locked[index]], "digest": "SHA384",
            })
        if name == _codec.GET_RANDOM:
            return _codec.encode(name, {"random": os.urandom(RANDOM_BYTES)})
        raise NsmError(f"no handler for {name}", code=ErrorCode.INVALID_OPERATION)  # pragma: no cover

    def _index(self, index: int) -> int:
        if index >= MAX_PCRS:
            raise NsmError(f"PCR index {index}", code=ErrorCode.INVALID_INDEX)
        return index

    def _unlocked_index(self, index: int) -> int:
        if self._locked[self._index(index)]:
            raise NsmError(f"PCR {index} is locked", code=ErrorCode.READ_ONLY_INDEX)
        return index

    def _attest(self, user_data: bytes | None, nonce: bytes | None, public_key: bytes | None) -> bytes:
        for what, value in (("user_data", user_data), ("nonce", nonce), ("public_key", public_key)):
            if value is not None and len(value) > MAX_ATTESTATION_FIELD_BYTES:
                raise NsmInputTooLargeError(f"{what} is {len(value)} bytes, over {MAX_ATTESTATION_FIELD_BYTES}")
        now = self._now()
        leaf_der, key = self._current_signer(now)
        payload = build_payload(
            timestamp=now, certificate=leaf_der, cabundle=self._cabundle, module_id=self._module_id,
            pcrs={index: self._pcrs[index] for index in range(MAX_PCRS) if self._locked[index]},
            public_key=public_key, user_data=user_data, nonce=nonce,
        )
        return sign_payload(payload, key)

    def _current_signer(self, now: datetime) -> tuple[bytes, ec.EllipticCurvePrivateKey]:
        if self._signer is not None:
            leaf, leaf_der, key = self._signer
            if leaf.not_valid_before_utc <= now and now + LEAF_REUSE_MARGIN <= leaf.not_valid_after_utc:
                return leaf_der, key
        # Whole seconds, as X.509 stores them, so the document's timestamp is never before not_before.
        leaf, key = self._pki.issue_leaf(not_before=now.replace(microsecond=0), module_id=self._module_id)
        leaf_der = leaf.public_bytes(serialization.Encoding.DER)
        self._signer = (leaf, leaf_der, key)
        return leaf_der, key

    def _now(self) -> datetime:
        now = self._clock()
        return now if now.tzinfo is not None else now.replace(tzinfo=UTC)
