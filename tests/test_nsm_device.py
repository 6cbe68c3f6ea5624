"""The /dev/nsm client against a stand-in for the kernel side (the device cannot exist here).

The stand-in is called exactly like fcntl.ioctl: it reads the 32-byte struct the client built, reads the
request from the address it names, writes a response to the response address (truncating like the kernel
driver) and stores the response length back into the struct. Behind it, by default, a SimulatedNsm answers.
"""

from __future__ import annotations

import ctypes
import errno
import gc
import os
import struct
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import cbor2
import pytest

from nitrokit.attestation import Policy, Verifier
from nitrokit.enclave.nsm import (
    DeviceNsm,
    ErrorCode,
    NsmError,
    NsmInputTooLargeError,
    NsmResponseError,
    NsmUnavailableError,
    SimulatedNsm,
    _codec,
    open_nsm,
)
from nitrokit.enclave.nsm.device import NSM_IOCTL_RAW, IoVec, NsmRawMessage
from tests.conftest import FIXTURES

T0 = datetime(2025, 6, 1, 12, tzinfo=UTC)
LAYOUT = struct.Struct("=QQQQ")  # request.addr, request.len, response.addr, response.len


class FakeKernel:
    """fcntl.ioctl's (fd, request, buffer, mutate) with the NSM driver's behaviour behind it."""

    def __init__(self, backend: Callable[[bytes], bytes] | None = None) -> None:
        self.backend = backend or SimulatedNsm(clock=lambda: T0).handle
        self.calls: list[dict[str, object]] = []
        self.report_length: Callable[[int], int] | None = None  # change the length written back
        self.fill: bytes = b""  # written after the response, inside the buffer, but beyond its length
        self.fail_with: int | None = None

    def __call__(self, fd: int, request: int, buffer: bytearray, mutate: bool) -> int:
        gc.collect()  # the client's buffers must still be referenced now
        request_addr, request_len, response_addr, response_cap = LAYOUT.unpack_from(buffer)
        data = ctypes.string_at(request_addr, request_len)
        self.calls.append({"fd": fd, "code": request, "mutate": mutate, "size": len(buffer), "request": data,
                           "response_cap": response_cap})
        if self.fail_with is not None:
            raise OSError(self.fail_with, os.strerror(self.fail_with))
        if request_len > 4096:  # what the real driver does
            raise OSError(errno.EMSGSIZE, os.strerror(errno.EMSGSIZE))
        response = self.backend(data) + self.fill
        written = min(len(response), response_cap)  # the driver truncates to the buffer
        ctypes.memmove(response_addr, response, written)
        length = written - len(self.fill) if self.fill else written
        if self.report_length is not None:
            length = self.report_length(length)
        struct.pack_into("=Q", buffer, 24, length)
        return 0


@pytest.fixture
def kernel() -> FakeKernel:
    return FakeKernel()


@pytest.fixture
def device_path(tmp_path: Path) -> str:
    path = tmp_path / "nsm"
    path.write_bytes(b"")
    return str(path)


@pytest.fixture
def device(device_path: str, kernel: FakeKernel) -> DeviceNsm:
    return DeviceNsm(path=device_path, ioctl=kernel)


# --- the ioctl and its struct ---------------------------------------------------------------------------


def test_request_code_and_struct_layout() -> None:
    assert NSM_IOCTL_RAW == 0xC0200A00
    assert ctypes.sizeof(IoVec) == 16 and ctypes.sizeof(NsmRawMessage) == 32
    assert (IoVec.addr.offset, IoVec.len.offset) == (0, 8)
    assert (NsmRawMessage.request.offset, NsmRawMessage.response.offset) == (0, 16)


def test_the_kernel_sees_the_encoded_request_and_a_12_kib_response_buffer(device: DeviceNsm,
                                                                           kernel: FakeKernel) -> None:
    device.describe_pcr(3)
    (call,) = kernel.calls
    assert call["code"] == 0xC0200A00
    assert call["mutate"] is True
    assert call["size"] == 32
    assert call["request"] == cbor2.dumps({"DescribePCR": {"index": 3}})
    assert call["response_cap"] == 12288
    assert isinstance(call["fd"], int) and call["fd"] >= 0


def test_every_operation_through_the_device_client(device: DeviceNsm) -> None:
    assert device.describe_nsm().max_pcrs == 32
    value = device.extend_pcr(16, b"x")
    device.lock_pcr(16)
    assert device.describe_pcr(16) == (True, value)
    device.lock_pcrs(18)
    assert device.describe_nsm().locked_pcrs == tuple(range(18))
    assert len(device.get_random()) == 256
    document = device.attestation(nonce=b"device nonce")
    result = Verifier(root=str(FIXTURES / "pki" / "root.pem")).verify(document, at=T0,
                                                                      policy=Policy.any_enclave_image())
    assert result.document.nonce == b"device nonce"
    assert result.document.pcrs[16] == value


# --- the response length the kernel writes back ---------------------------------------------------------


def test_only_the_reported_length_is_read(device: DeviceNsm, kernel: FakeKernel) -> None:
    kernel.fill = b"\xff" * 100  # bytes beyond the response would make it undecodable if read
    assert device.describe_pcr(0).locked is True


def test_a_truncated_response_is_an_invalid_response(device: DeviceNsm, kernel: FakeKernel) -> None:
    kernel.report_length = lambda length: length - 10
    with pytest.raises(NsmResponseError) as caught:
        device.attestation()
    assert caught.value.code is ErrorCode.INVALID_RESPONSE


def test_a_response_cut_by_the_buffer_is_an_invalid_response(device: DeviceNsm, kernel: FakeKernel) -> None:
    kernel.backend = lambda _request: cbor2.dumps({"GetRandom": {"random": bytes(20000)}})
    with pytest.raises(NsmResponseError, match="GetRandom"):
        device.get_random()


def test_an_empty_response_is_an_invalid_response(device: DeviceNsm, kernel: FakeKernel) -> None:
    kernel.report_length = lambda _length: 0
    with pytest.raises(NsmResponseError, match="empty response"):
        device.get_random()


def test_a_length_past_the_buffer_is_refused(device: DeviceNsm, kernel: FakeKernel) -> None:
    kernel.report_length = lambda _length: 12289
    with pytest.raises(NsmResponseError, match="12289-byte response"):
        device.get_random()


# --- Error responses and errno --------------------------------------------------------------------------


def test_an_error_response_is_a_typed_error(device: DeviceNsm, kernel: FakeKernel) -> None:
    with pytest.raises(NsmError) as caught:
        device.extend_pcr(0, b"x")
    assert caught.value.code is ErrorCode.READ_ONLY_INDEX
    kernel.backend = lambda _request: cbor2.dumps({"Error": "InternalError"})
    with pytest.raises(NsmError) as caught:
        device.describe_nsm()
    assert caught.value.code is ErrorCode.INTERNAL_ERROR


def extend_of_size(size: int) -> bytes:
    """ExtendPCR data making the encoded request exactly ``size`` bytes."""
    for data_size in range(size, 0, -1):
        if len(_codec.encode("ExtendPCR", {"index": 16, "data": bytes(data_size)})) == size:
            return bytes(data_size)
    raise AssertionError(size)


def test_oversize_requests_are_refused_before_the_ioctl(device: DeviceNsm, kernel: FakeKernel) -> None:
    device.extend_pcr(16, extend_of_size(4096))  # the largest request still goes through
    assert len(kernel.calls) == 1
    with pytest.raises(NsmInputTooLargeError, match="4097 bytes, over the NSM's limit of 4096"):
        device.extend_pcr(16, extend_of_size(4097))
    assert len(kernel.calls) == 1  # never reached the kernel


def test_emsgsize_from_the_driver_is_input_too_large(device: DeviceNsm, kernel: FakeKernel) -> None:
    kernel.fail_with = errno.EMSGSIZE
    with pytest.raises(NsmInputTooLargeError) as caught:
        device.get_random()
    assert caught.value.code is ErrorCode.INPUT_TOO_LARGE


def test_other_errnos_are_internal_errors(device: DeviceNsm, kernel: FakeKernel) -> None:
    kernel.fail_with = errno.EIO
    with pytest.raises(NsmError, match=r"ioctl on .* failed") as caught:
        device.get_random()
    assert caught.value.code is ErrorCode.INTERNAL_ERROR


def test_the_real_ioctl_on_a_file_that_is_not_the_nsm(device_path: str) -> None:
    # A real syscall with the real struct: a regular file has no such ioctl (ENOTTY).
    with DeviceNsm(path=device_path) as device, pytest.raises(NsmError) as caught:
        device.get_random()
    assert caught.value.code is ErrorCode.INTERNAL_ERROR


# --- opening and closing --------------------------------------------------------------------------------


@pytest.mark.skipif(os.path.exists("/dev/nsm"), reason="this machine has an NSM")
def test_no_device_here_is_nsm_unavailable() -> None:
    with pytest.raises(NsmUnavailableError, match="/dev/nsm does not exist: not inside a Nitro enclave"):
        open_nsm("device")


def test_an_unopenable_path_is_nsm_unavailable(tmp_path: Path) -> None:
    with pytest.raises(NsmUnavailableError, match="cannot open"):
        DeviceNsm(path=str(tmp_path))  # a directory cannot be opened read-write


def test_close_releases_the_descriptor(device_path: str, kernel: FakeKernel) -> None:
    with DeviceNsm(path=device_path, ioctl=kernel) as device:
        device.get_random()
        fd = kernel.calls[0]["fd"]
        assert isinstance(fd, int)
        os.fstat(fd)
    with pytest.raises(OSError):
        os.fstat(fd)
    with pytest.raises(NsmUnavailableError, match="closed"):
        device.get_random()
    device.close()  # closing twice is harmless
    assert "open=False" in repr(device)
