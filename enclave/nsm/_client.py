"""The one NSM interface: each operation is a CBOR request sent to a transport and a strictly decoded response.

The transport is the only difference between the real device (one ioctl on /dev/nsm) and the simulator (an
in-process ``handle(request) -> response``), so both exercise the same encoding and decoding.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, NamedTuple, Self

from nitrokit.attestation import PCR_BYTES as ATTESTATION_PCR_BYTES
from nitrokit.attestation import PCR_LENGTHS
from nitrokit.attestation._parse import PCR_LENGTHS_TEXT
from nitrokit.enclave.nsm import _codec
from nitrokit.enclave.nsm.errors import NsmResponseError
from nitrokit.errors import UsageError

# Every NSM has PCR_COUNT (32) SHA-384 PCRs of PCR_BYTES (48), both nitrokit.attestation's; 0..15 are set at
# boot and locked (AWS's NSM API).
PCR_BYTES = ATTESTATION_PCR_BYTES
BOOT_LOCKED_PCRS = 16


class PcrState(NamedTuple):
    """One PCR as DescribePCR reports it: whether it is locked (read-only) and its value."""

    locked: bool
    data: bytes


@dataclass(frozen=True, kw_only=True)
class NsmDescription:
    """What DescribeNSM reports: API version, module id, PCR count, locked PCRs and the PCR digest."""

    version_major: int
    version_minor: int
    version_patch: int
    module_id: str
    max_pcrs: int
    locked_pcrs: tuple[int, ...]
    digest: str

    @property
    def version(self) -> str:
        return f"{self.version_major}.{self.version_minor}.{self.version_patch}"


class Nsm(abc.ABC):
    """A Nitro Secure Module: :class:`~nitrokit.enclave.nsm.DeviceNsm` or :class:`~nitrokit.enclave.nsm.SimulatedNsm`.

    Every method sends one request; an ``{"Error": code}`` answer raises :class:`~nitrokit.enclave.nsm.errors.NsmError`
    with that code, a malformed answer :class:`~nitrokit.enclave.nsm.errors.NsmResponseError`. Arguments that cannot
    even be encoded (an index outside 0..65535, data that is not bytes) raise :class:`UsageError`; everything
    else, including sizes, is the NSM's to judge, as on the real device.
    """

    @abc.abstractmethod
    def _exchange(self, request: bytes) -> bytes:
        """Send one encoded request and return the raw response bytes."""

    def close(self) -> None:
        """Release the transport (the device's file descriptor); the simulator has nothing to release."""
        return

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def attestation(self, *, user_data: bytes | None = None, nonce: bytes | None = None,
                    public_key: bytes | None = None) -> bytes:
        """A signed attestation document (COSE_Sign1 bytes) carrying the given optional fields."""
        fields = {
            "user_data": _optional_bytes(user_data, "user_data"),
            "nonce": _optional_bytes(nonce, "nonce"),
            "public_key": _optional_bytes(public_key, "public_key"),
        }
        document: bytes = self._call(_codec.ATTESTATION, fields)["document"]
        if not document:
            raise NsmResponseError("empty attestation document")
        return document

    def describe_pcr(self, index: int) -> PcrState:
        """Whether PCR ``index`` is locked, and its value."""
        response = self._call(_codec.DESCRIBE_PCR, {"index": _u16(index, "PCR index")})
        return PcrState(locked=response["lock"], data=_pcr_value(response["data"], _codec.DESCRIBE_PCR))

    def extend_pcr(self, index: int, data: bytes) -> bytes:
        """Extend PCR ``index`` with ``data`` (new = H(old || data)); return the new value."""
        fields = {"index": _u16(index, "PCR index"), "data": _required_bytes(data, "data")}
        return _pcr_value(self._call(_codec.EXTEND_PCR, fields)["data"], _codec.EXTEND_PCR)

    def lock_pcr(self, index: int) -> None:
        """Make PCR ``index`` read-only until the enclave stops."""
        self._call(_codec.LOCK_PCR, {"index": _u16(index, "PCR index")})

    def lock_pcrs(self, count: int) -> None:
        """Lock PCRs ``0 .. count-1`` (the NSM's ``range``); already locked ones stay locked."""
        self._call(_codec.LOCK_PCRS, {"range": _u16(count, "PCR range")})

    def describe_nsm(self) -> NsmDescription:
        response = self._call(_codec.DESCRIBE_NSM)
        return NsmDescription(
            version_major=response["version_major"], version_minor=response["version_minor"],
            version_patch=response["version_patch"], module_id=response["module_id"],
            max_pcrs=response["max_pcrs"], locked_pcrs=tuple(sorted(set(response["locked_pcrs"]))),
            digest=response["digest"],
        )

    def get_random(self) -> bytes:
        """Random bytes from the NSM (256 on real NSMs)."""
        random: bytes = self._call(_codec.GET_RANDOM)["random"]
        if not random:
            raise NsmResponseError("GetRandom returned no bytes")
        return random

    def _call(self, operation: str, fields: Mapping[str, object] | None = None) -> Mapping[str, Any]:
        response = self._exchange(_codec.encode(operation, fields))
        return _codec.decode_response(response, operation=operation, context=_context(fields))


def _context(fields: Mapping[str, object] | None) -> str:
    """What error messages add to the request name: the PCR or range concerned, never data."""
    if fields and "index" in fields:
        return f"PCR {fields['index']}"
    if fields and "range" in fields:
        return f"range {fields['range']}"
    return ""


def _u16(value: object, what: str) -> int:
    if type(value) is not int or not 0 <= value <= _codec.U16_MAX:
        raise UsageError(f"{what} must be an integer 0..{_codec.U16_MAX}, got {value!r}")
    return value


def _required_bytes(value: object, what: str) -> bytes:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise UsageError(f"{what} must be bytes, got {type(value).__name__}")
    return bytes(value)


def _optional_bytes(value: object, what: str) -> bytes | None:
    return None if value is None else _required_bytes(value, what)


def _pcr_value(data: bytes, operation: str) -> bytes:
    if len(data) not in PCR_LENGTHS:
        raise NsmResponseError(f"{operation} returned a {len(data)}-byte PCR value, expected {PCR_LENGTHS_TEXT}")
    return data
