"""The enclave-parent wire protocol: addresses, length-prefixed frames, versioned JSON messages and clients.

An enclave sends a KMS request to the parent instance, which relays it to AWS KMS and sends the answer back.
Each message is one frame: a 4-byte big-endian length, then a UTF-8 JSON body (docs/protocol.md)::

    from nitrokit.wire import WireClient, generate_random_request, parse_generate_random_response

    with WireClient("vsock://3:8000") as client:
        answer = client.call("GenerateRandom", generate_random_request(32, attestation_document=doc))
    ciphertext = parse_generate_random_response(answer).ciphertext_for_recipient

Modules: :mod:`~nitrokit.wire.address` (``parse_address``, ``connect``, ``listen``, ``open_connection``),
:mod:`~nitrokit.wire.framing` (frames over sockets and asyncio streams), :mod:`~nitrokit.wire.messages`
(request/response bodies, error codes), :mod:`~nitrokit.wire.kms` (the operation allow-list and the KMS
request/response shapes), :mod:`~nitrokit.wire.client` (blocking and asyncio clients),
:mod:`~nitrokit.wire.server` (the bounded asyncio server the parent proxy and the enclave service run) and
:mod:`~nitrokit.wire.errors`.
"""

from nitrokit.wire.address import (
    VMADDR_CID_ANY,
    VMADDR_CID_HOST,
    VMADDR_CID_PARENT,
    Address,
    TcpAddress,
    UnixAddress,
    VsockAddress,
    bound_address,
    connect,
    listen,
    open_connection,
    parse_address,
)
from nitrokit.wire.client import AsyncWireClient, WireClient, call
from nitrokit.wire.errors import (
    AddressError,
    ConnectionClosedError,
    ErrorCode,
    FrameTooLargeError,
    IdleTimeoutError,
    InvalidRequestError,
    InvalidResponseError,
    MalformedFrameError,
    ProtocolError,
    RemoteError,
    TransportError,
    TransportUnavailableError,
    UnknownOperationError,
    UnsupportedVersionError,
    WireError,
    WireTimeoutError,
)
from nitrokit.wire.framing import (
    HEADER_SIZE,
    MAX_FRAME_SIZE,
    decode_frame,
    encode_frame,
    frame_length,
    read_frame,
    recv_frame,
    send_frame,
    write_frame,
)
from nitrokit.wire.kms import (
    DECRYPT,
    DERIVE_SHARED_SECRET,
    GENERATE_DATA_KEY,
    GENERATE_DATA_KEY_PAIR,
    GENERATE_RANDOM,
    OPERATIONS,
    RSAES_OAEP_SHA_256,
    GenerateRandomResult,
    Operation,
    generate_random_request,
    parse_generate_random_response,
    recipient_info,
)
from nitrokit.wire.messages import (
    PROTOCOL_VERSION,
    ErrorInfo,
    Request,
    Response,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
    new_request_id,
)
from nitrokit.wire.server import (
    CallFailed,
    Handler,
    ServerLimits,
    ServerThread,
    WireServer,
    run_until_signal,
)

__all__ = [
    "DECRYPT",
    "DERIVE_SHARED_SECRET",
    "GENERATE_DATA_KEY",
    "GENERATE_DATA_KEY_PAIR",
    "GENERATE_RANDOM",
    "HEADER_SIZE",
    "MAX_FRAME_SIZE",
    "OPERATIONS",
    "PROTOCOL_VERSION",
    "RSAES_OAEP_SHA_256",
    "VMADDR_CID_ANY",
    "VMADDR_CID_HOST",
    "VMADDR_CID_PARENT",
    "Address",
    "AddressError",
    "AsyncWireClient",
    "CallFailed",
    "ConnectionClosedError",
    "ErrorCode",
    "ErrorInfo",
    "FrameTooLargeError",
    "GenerateRandomResult",
    "Handler",
    "IdleTimeoutError",
    "InvalidRequestError",
    "InvalidResponseError",
    "MalformedFrameError",
    "Operation",
    "ProtocolError",
    "RemoteError",
    "Request",
    "Response",
    "ServerLimits",
    "ServerThread",
    "TcpAddress",
    "TransportError",
    "TransportUnavailableError",
    "UnixAddress",
    "UnknownOperationError",
    "UnsupportedVersionError",
    "VsockAddress",
    "WireClient",
    "WireError",
    "WireServer",
    "WireTimeoutError",
    "bound_address",
    "call",
    "connect",
    "decode_frame",
    "decode_request",
    "decode_response",
    "encode_frame",
    "encode_request",
    "encode_response",
    "frame_length",
    "generate_random_request",
    "listen",
    "new_request_id",
    "open_connection",
    "parse_address",
    "parse_generate_random_response",
    "read_frame",
    "recipient_info",
    "recv_frame",
    "run_until_signal",
    "send_frame",
    "write_frame",
]
