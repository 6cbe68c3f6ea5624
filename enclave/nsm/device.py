"""The real NSM: /dev/nsm inside a Nitro enclave, through its one ioctl, in pure Python (ctypes + fcntl).

The ioctl takes ``struct nsm_raw { struct { u64 addr; u64 len; } request, response; }`` (32 bytes), so its
number is ``_IOWR(0x0A, 0, 32)`` = 0xC0200A00. The kernel copies ``request.len`` bytes from ``request.addr``
(more than 4096: EMSGSIZE), writes the response into ``response.addr`` (truncated to ``response.len``) and
stores the response's length back into ``response.len``. Only that many bytes are read back.

The device only exists inside an enclave; elsewhere :class:`DeviceNsm` raises :class:`NsmUnavailableError`.
Tests drive it with a stand-in ``ioctl`` function (see tests/test_nsm_device.py).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import threading
from collections.abc import Callable

from nitrokit.enclave.nsm import _codec
from nitrokit.enclave.nsm._client import Nsm
from nitrokit.enclave.nsm.errors import (
    ErrorCode,
    NsmError,
    NsmInputTooLargeError,
    NsmResponseError,
    NsmUnavailableError,
)

DEFAULT_DEVICE_PATH = "/dev/nsm"
NSM_IOCTL_MAGIC = 0x0A

# The ioctl callable: fcntl.ioctl's (fd, request, mutable buffer, mutate_flag) form.
IoctlFunction = Callable[[int, int, bytearray, bool], object]


class IoVec(ctypes.Structure):
    """``{u64 addr; u64 len}``: one buffer handed to the kernel."""

    _fields_ = (("addr", ctypes.c_uint64), ("len", ctypes.c_uint64))


class NsmRawMessage(ctypes.Structure):
    """``struct nsm_raw``: the request and response buffers of one ioctl."""

    _fields_ = (("request", IoVec), ("response", IoVec))


def _iowr(magic: int, number: int, size: int) -> int:
    """Linux's _IOWR(): direction read|write (3) in bits 30-31, size in 16-29, type in 8-15, number in 0-7."""
    return (3 << 30) | (size << 16) | (magic << 8) | number


NSM_IOCTL_RAW = _iowr(NSM_IOCTL_MAGIC, 0, ctypes.sizeof(NsmRawMessage))
assert NSM_IOCTL_RAW == 0xC0200A00


class DeviceNsm(Nsm):
    """The NSM device at ``path`` (default /dev/nsm), opened read-write until :meth:`close`.

    ``ioctl`` replaces :func:`fcntl.ioctl` (for tests: a stand-in for the kernel side). Safe to share between
    threads: every call has its own buffers, and the kernel driver serialises requests.
    """

    def __init__(self, *, path: str = DEFAULT_DEVICE_PATH, ioctl: IoctlFunction | None = None) -> None:
        self._path = path
        self._ioctl = ioctl
        self._fd_lock = threading.Lock()
        try:
            self._fd: int | None = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            raise NsmUnavailableError(
                f"{path} does not exist: not inside a Nitro enclave (use the simulated NSM for offline work)"
            ) from None
        except OSError as exc:
            raise NsmUnavailableError(f"cannot open {path}: {exc.strerror or exc}") from None

    def __repr__(self) -> str:
        return f"DeviceNsm(path={self._path!r}, open={self._fd is not None})"

    def close(self) -> None:
        with self._fd_lock:
            fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def _exchange(self, request: bytes) -> bytes:
        # The kernel would answer EMSGSIZE; refuse before the call, as AWS's own driver library does.
        if len(request) > _codec.REQUEST_MAX_BYTES:
            raise NsmInputTooLargeError(
                f"request is {len(request)} bytes, over the NSM's limit of {_codec.REQUEST_MAX_BYTES}")
        fd = self._fd
        if fd is None:
            raise NsmUnavailableError(f"{self._path} is closed")

        # Both buffers are locals referenced until the function returns, so they outlive the ioctl.
        request_buffer = ctypes.create_string_buffer(request, len(request))
        response_buffer = ctypes.create_string_buffer(_codec.RESPONSE_MAX_BYTES)
        raw = bytearray(ctypes.sizeof(NsmRawMessage))
        message = NsmRawMessage.from_buffer(raw)
        message.request.addr = ctypes.addressof(request_buffer)
        message.request.len = len(request)
        message.response.addr = ctypes.addressof(response_buffer)
        message.response.len = _codec.RESPONSE_MAX_BYTES

        ioctl = self._ioctl or fcntl.ioctl
        try:
            ioctl(fd, NSM_IOCTL_RAW, raw, True)
        except OSError as exc:
            if exc.errno == errno.EMSGSIZE:
                raise NsmInputTooLargeError(f"the NSM driver refused a {len(request)}-byte request (EMSGSIZE)") \
                    from None
            raise NsmError(f"ioctl on {self._path} failed: {exc.strerror or exc}",
                           code=ErrorCode.INTERNAL_ERROR) from None

        length = message.response.len
        if length > _codec.RESPONSE_MAX_BYTES:
            raise NsmResponseError(f"the driver reports a {length}-byte response for a "
                                   f"{_codec.RESPONSE_MAX_BYTES}-byte buffer")
        return ctypes.string_at(response_buffer, length)
