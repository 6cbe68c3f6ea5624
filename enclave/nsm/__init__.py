"""The Nitro Secure Module (NSM): the real device inside an enclave, or a simulated one anywhere.

    from nitrokit.enclave.nsm import open_nsm

    with open_nsm("simulated") as nsm:                     # or open_nsm() inside a real enclave
        document = nsm.attestation(public_key=spki_der, nonce=nonce)
        locked, value = nsm.describe_pcr(0)

Both implementations speak the NSM's CBOR protocol (docs/nsm.md, "The protocol") through the same codec; they
differ only in the transport: one ioctl on /dev/nsm (:class:`DeviceNsm`) or an in-process handler
(:class:`SimulatedNsm`). Errors are in :mod:`nitrokit.enclave.nsm.errors`, all subclasses of :class:`NsmError`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from nitrokit._lazy import lazy_exports
from nitrokit.enclave.nsm._client import BOOT_LOCKED_PCRS, PCR_BYTES, Nsm, NsmDescription, PcrState
from nitrokit.enclave.nsm._codec import REQUEST_MAX_BYTES, RESPONSE_MAX_BYTES
from nitrokit.enclave.nsm.device import DEFAULT_DEVICE_PATH, DeviceNsm
from nitrokit.enclave.nsm.errors import (
    ErrorCode,
    NsmError,
    NsmInputTooLargeError,
    NsmResponseError,
    NsmUnavailableError,
)
from nitrokit.errors import UsageError

# The simulated NSM signs with the fixture PKI (test support): loaded only when asked for.
if TYPE_CHECKING:
    from nitrokit.enclave.nsm.simulated import SimulatedNsm
__getattr__, __dir__ = lazy_exports(__name__, {"SimulatedNsm": "nitrokit.enclave.nsm.simulated"})

NSM_KINDS = ("device", "simulated")


def open_nsm(kind: Literal["device", "simulated"] = "device", **options: Any) -> Nsm:
    """Open the NSM of ``kind``; ``options`` go to :class:`DeviceNsm` or :class:`SimulatedNsm`."""
    if kind == "device":
        return DeviceNsm(**options)
    if kind == "simulated":
        from nitrokit.enclave.nsm.simulated import SimulatedNsm

        return SimulatedNsm(**options)
    raise UsageError(f"unknown NSM kind {kind!r}: expected one of {', '.join(NSM_KINDS)}")


__all__ = [
    "BOOT_LOCKED_PCRS",
    "DEFAULT_DEVICE_PATH",
    "NSM_KINDS",
    "PCR_BYTES",
    "REQUEST_MAX_BYTES",
    "RESPONSE_MAX_BYTES",
    "DeviceNsm",
    "ErrorCode",
    "Nsm",
    "NsmDescription",
    "NsmError",
    "NsmInputTooLargeError",
    "NsmResponseError",
    "NsmUnavailableError",
    "PcrState",
    "SimulatedNsm",
    "open_nsm",
]
