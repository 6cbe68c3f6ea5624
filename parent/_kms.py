"""The parent's side of a KMS call: a boto3 client, the call itself, and the mapping of its failures.

Everything here is synchronous and runs in the proxy's worker threads. Failures become
:class:`~nitrokit.wire.server.CallFailed` (the server's error-response exception, re-exported here) carrying
the ``{code, message, retryable}`` the enclave receives; nothing of a request or response body is put in a
message or a log.

Two bounds botocore does not give: its read timeout is per read, so a KMS that drips a byte at a time holds
a call without end, and it buffers an answer of any size before parsing it. So the parent sends KMS requests
itself, from a ``before-send`` hook, through botocore's own HTTP session: it reads the answer with a cap
(:data:`MAX_KMS_ANSWER_BYTES`) and against the call's deadline (a :class:`KmsCall`). The sockets a call uses
are registered with its ``KmsCall``, so the event loop can abandon the call at its deadline, or at the end of
a graceful stop, by shutting them down: the worker thread then ends at once instead of waiting on KMS.
"""

from __future__ import annotations

import contextlib
import functools
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

from nitrokit._extras import extra_required
from nitrokit.errors import NitrokitError, UsageError
from nitrokit.kms_api import RETRYABLE_KMS_CODES
from nitrokit.text import escaped
from nitrokit.wire import ErrorCode, ErrorInfo, InvalidResponseError, Operation
from nitrokit.wire.kms import MAX_KMS_ANSWER_BYTES
from nitrokit.wire.messages import MAX_KMS_MESSAGE_CHARS
from nitrokit.wire.server import CallFailed

__all__ = ["MAX_KMS_ANSWER_BYTES", "RETRYABLE_KMS_CODES", "CallFailed", "KmsCall", "KmsRelay", "check_result",
           "error_for_exception"]


_READ_CHUNK = 16384



class _AnswerTooLarge(NitrokitError):
    """KMS's answer is over :data:`MAX_KMS_ANSWER_BYTES` (internal: mapped to an error response)."""


class _CallAbandoned(NitrokitError):
    """The call passed its deadline or was abandoned (internal: mapped to an error response)."""


class KmsCall:
    """One KMS call's deadline, and the sockets it uses, so that another thread can abandon it.

    :meth:`abandon` (from the event loop, at the deadline or at the end of a graceful stop) shuts down every
    socket the call has registered, which ends a read blocked on KMS at once; the call then raises instead of
    retrying. Thread-safe.
    """

    __slots__ = ("_lock", "_sockets", "abandoned", "deadline")

    def __init__(self, timeout: float) -> None:
        self.deadline = time.monotonic() + timeout
        self.abandoned = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def expired(self) -> bool:
        return self.abandoned or time.monotonic() >= self.deadline

    def watch(self, sock: socket.socket | None) -> None:
        if sock is None:
            return
        with self._lock:
            if self.abandoned:
                _shut(sock)
            elif sock not in self._sockets:
                self._sockets.append(sock)

    def abandon(self) -> None:
        with self._lock:
            self.abandoned = True
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            _shut(sock)

    def finish(self) -> None:
        """The call is over: its sockets (back in botocore's pool) are no longer its to shut down."""
        with self._lock:
            self._sockets = []


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the plain socket's, also under TLS: no TLS state touched


_CURRENT = threading.local()  # the KmsCall the worker thread is running, for the hooks below


def _current_call() -> KmsCall | None:
    call = getattr(_CURRENT, "call", None)
    return call if isinstance(call, KmsCall) else None


class KmsRelay:
    """A boto3 KMS client and the one method the proxy needs: ``invoke(operation, params, call) -> result``."""

    def __init__(
        self, *, region: str | None, endpoint_url: str | None, profile: str | None, connect_timeout: float,
        read_timeout: float, max_attempts: int, max_pool_connections: int, client: Any | None = None,
    ) -> None:
        self.client = client if client is not None else _make_client(
            region=region, endpoint_url=endpoint_url, profile=profile, connect_timeout=connect_timeout,
            read_timeout=read_timeout, max_attempts=max_attempts, max_pool_connections=max_pool_connections)
        self._methods: dict[str, Any] = {}
        _install_bounds(self.client)

    @property
    def endpoint(self) -> str:
        return str(self.client.meta.endpoint_url)

    @property
    def region(self) -> str:
        return str(self.client.meta.region_name)

    def invoke(self, operation: Operation, params: Mapping[str, Any], call: KmsCall) -> dict[str, Any]:
        """Call KMS within ``call``'s deadline; return boto3's result or raise :class:`CallFailed`."""
        method = self._methods.get(operation.name)
        if method is None:
            from botocore import xform_name

            method = self._methods[operation.name] = getattr(self.client, xform_name(operation.name))
        _CURRENT.call = call
        try:
            result: dict[str, Any] = method(**params)
        except Exception as exc:  # every failure becomes an error response; the parent keeps serving
            info = error_for_exception(exc)
            raise CallFailed(info.code, info.message, retryable=info.retryable) from None
        finally:
            _CURRENT.call = None
            call.finish()
        return result


def _install_bounds(client: Any) -> None:
    """Make ``client`` register its sockets with the current :class:`KmsCall` and read answers through
    :func:`_send`. A client that is not botocore's (a test double) is left as it is."""
    endpoint = getattr(client, "_endpoint", None)
    session = getattr(endpoint, "http_session", None)
    pools = getattr(session, "_pool_classes_by_scheme", None)  # botocore's URLLib3Session (tests pin it)
    if session is None or not isinstance(pools, dict):
        if hasattr(getattr(client, "meta", None), "events"):  # botocore, but not laid out as this code knows
            raise UsageError("this botocore's HTTP session has no pool classes to watch: the parent cannot "
                             "bound its KMS calls with it (a botocore the parent was not tested with?)")
        return
    for scheme, pool in list(pools.items()):  # the same dict its pool managers read: pools are made lazily
        if not getattr(pool, "_nitrokit_watched", False):
            pools[scheme] = _watched_pool(pool)
    client.meta.events.register("before-send.kms", functools.partial(_send, session),
                                unique_id="nitrokit-bounded-send")  # once per client, however many proxies


def _watched_pool(pool: Any) -> type:
    base: Any = pool.ConnectionCls

    class WatchedConnection(base):  # type: ignore[misc]
        def connect(self) -> None:
            super().connect()
            call = _current_call()
            if call is not None:
                call.watch(self.sock)

        def getresponse(self, *args: Any, **kwargs: Any) -> Any:
            call = _current_call()
            if call is not None:
                call.watch(self.sock)  # a pooled connection: registered when the call starts reading from it
            return super().getresponse(*args, **kwargs)

    return type(pool.__name__, (pool,), {"ConnectionCls": WatchedConnection, "_nitrokit_watched": True})


class _Body:
    """What botocore's AWSResponse reads its content from: the body already read."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


def _send(session: Any, request: Any, **_: Any) -> Any:
    """The ``before-send`` hook: send with botocore's session, read the answer capped and against the deadline."""
    call = _current_call()
    if call is None:
        return None  # not a call of ours: botocore sends it as usual
    if call.expired():
        raise _CallAbandoned()  # also stops botocore's retries once the deadline has passed
    from botocore.awsrequest import AWSResponse
    from botocore.exceptions import ConnectionClosedError, ReadTimeoutError
    from urllib3.exceptions import ProtocolError
    from urllib3.exceptions import ReadTimeoutError as Urllib3ReadTimeout

    request.stream_output = True  # botocore would read the whole body at once, of any size
    response = session.send(request)
    raw = response.raw
    chunks: list[bytes] = []
    try:
        declared = str(response.headers.get("content-length", ""))
        if declared.isdigit() and int(declared) > MAX_KMS_ANSWER_BYTES:
            raise _AnswerTooLarge()
        size = 0
        while chunk := raw.read1(_READ_CHUNK):  # what has arrived, so a drip is checked against the deadline
            size += len(chunk)
            if size > MAX_KMS_ANSWER_BYTES:
                raise _AnswerTooLarge()
            if call.expired():
                raise _CallAbandoned()
            chunks.append(chunk)
        if call.abandoned:
            raise _CallAbandoned()  # its socket was shut down under it: what was read is not the answer
        # The whole body is read, and the connection is back in botocore's pool for other calls: it is no
        # longer this call's to shut down (a retry registers the connection it then uses).
        call.finish()
    except Urllib3ReadTimeout as exc:
        raw.close()
        raise ReadTimeoutError(endpoint_url=request.url, error=exc) from None
    except ProtocolError as exc:
        raw.close()
        if call.abandoned:
            raise _CallAbandoned() from None
        raise ConnectionClosedError(error=exc, request=request, endpoint_url=request.url) from None
    except BaseException:
        raw.close()  # never hand a half-read connection back to the pool
        raise
    finally:
        raw.release_conn()
    return AWSResponse(request.url, response.status_code, response.headers, _Body(b"".join(chunks)))


def _make_client(
    *, region: str | None, endpoint_url: str | None, profile: str | None, connect_timeout: float,
    read_timeout: float, max_attempts: int, max_pool_connections: int,
) -> Any:
    with extra_required("parent"):
        import boto3
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError, NoRegionError, ProfileNotFound

    config = Config(
        retries={"mode": "standard", "total_max_attempts": max_attempts},
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        max_pool_connections=max_pool_connections,
        user_agent_extra="nitrokit-parent",
    )
    try:
        session = boto3.session.Session(profile_name=profile, region_name=region)
        return session.client("kms", endpoint_url=endpoint_url, config=config)
    except ProfileNotFound:
        raise UsageError(f"AWS profile {profile!r} not found") from None
    except NoRegionError:
        raise UsageError("no AWS region: pass --region or set AWS_REGION (or a region in the profile)") from None
    except (BotoCoreError, ValueError) as exc:
        detail = escaped(str(exc), MAX_KMS_MESSAGE_CHARS)
        raise UsageError(f"cannot create the KMS client: {type(exc).__name__}: {detail}") from None


def error_for_exception(exc: BaseException) -> ErrorInfo:
    """The error response for a boto3/botocore failure, with its ``retryable`` flag."""
    from botocore import exceptions as bce
    from botocore.parsers import ResponseParserError

    if isinstance(exc, bce.ClientError):
        error = exc.response.get("Error", {}) if isinstance(exc.response, dict) else {}
        meta = exc.response.get("ResponseMetadata", {}) if isinstance(exc.response, dict) else {}
        return ErrorInfo.from_kms(error.get("Code"), error.get("Message"), status=meta.get("HTTPStatusCode"))
    if isinstance(exc, bce.ConnectTimeoutError | bce.ReadTimeoutError):
        kind = "connecting to" if isinstance(exc, bce.ConnectTimeoutError) else "waiting for an answer from"
        return ErrorInfo(code=ErrorCode.KMS_TIMEOUT, message=f"timed out {kind} KMS", retryable=True)
    if isinstance(exc, bce.EndpointConnectionError | bce.ConnectionError | bce.HTTPClientError):
        return ErrorInfo(code=ErrorCode.KMS_UNAVAILABLE, message=f"cannot reach KMS ({type(exc).__name__})",
                         retryable=True)
    if isinstance(exc, bce.NoCredentialsError | bce.PartialCredentialsError | bce.CredentialRetrievalError):
        return ErrorInfo(code=ErrorCode.NO_CREDENTIALS, message="the parent has no usable AWS credentials",
                         retryable=False)
    if isinstance(exc, bce.ParamValidationError):
        # Its message can quote parameter values: say only that botocore refused them.
        return ErrorInfo(code=ErrorCode.INVALID_REQUEST, message="botocore refused the request parameters",
                         retryable=False)
    if isinstance(exc, _AnswerTooLarge):
        return ErrorInfo(code=ErrorCode.INVALID_KMS_RESPONSE,
                         message=f"KMS's answer is larger than {MAX_KMS_ANSWER_BYTES} bytes; refused, the rest unread",
                         retryable=False)
    if isinstance(exc, _CallAbandoned):
        return ErrorInfo(code=ErrorCode.KMS_TIMEOUT, message="the KMS call passed its deadline", retryable=True)
    if isinstance(exc, ResponseParserError):
        return ErrorInfo(code=ErrorCode.INVALID_KMS_RESPONSE, message="KMS's answer could not be parsed",
                         retryable=False)
    if isinstance(exc, UnicodeDecodeError):  # botocore decodes the body before parsing it (e.g. a gzip body)
        return ErrorInfo(code=ErrorCode.INVALID_KMS_RESPONSE, message="KMS's answer is not UTF-8 text",
                         retryable=False)
    return ErrorInfo(code=ErrorCode.INTERNAL_ERROR, message=f"the KMS call failed ({type(exc).__name__})",
                     retryable=False)


def check_result(operation: Operation, params: Mapping[str, Any], result: Mapping[str, Any]) -> dict[str, Any]:
    """The KMS JSON to send back for boto3's ``result``, after the parent's own checks.

    With a Recipient in the request, the answer must hold CiphertextForRecipient and not the operation's
    secret member (``Plaintext``, ``PrivateKeyPlaintext`` or ``SharedSecret``): an answer carrying it is
    dropped and refused, so the secret never crosses the parent. Sizes and types are checked by the
    operation. A result holding nothing but ``ResponseMetadata`` (an empty or cut-off body) is KMS being
    unavailable, retryable.
    """
    if not result.keys() - {"ResponseMetadata"}:
        # What a 200 whose connection was cut before (or inside) the body parses to: botocore does not enforce
        # Content-Length and parses a body that is not JSON to nothing. E.g. KMS going away mid-answer. No
        # answer was received: retry later.
        status = result.get("ResponseMetadata", {}).get("HTTPStatusCode")
        raise CallFailed(ErrorCode.KMS_UNAVAILABLE,
                         f"KMS answered HTTP {status} without a usable body (connection cut?); nothing was received",
                         retryable=True)
    recipient = "Recipient" in params
    secret = operation.plaintext_member
    if recipient and result.get(secret) is not None:
        raise CallFailed(ErrorCode.PLAINTEXT_REFUSED,
                         f"KMS answered {operation.name} with {secret} although a Recipient was sent; "
                         "the answer was dropped")
    try:
        response = operation.encode_response(result)
    except InvalidResponseError as exc:
        raise CallFailed(ErrorCode.INVALID_KMS_RESPONSE, str(exc)) from None
    if recipient and "CiphertextForRecipient" not in response:
        raise CallFailed(ErrorCode.INVALID_KMS_RESPONSE,
                         f"{operation.name} response has no CiphertextForRecipient although a Recipient was sent")
    if not recipient and secret not in response:
        raise CallFailed(ErrorCode.INVALID_KMS_RESPONSE, f"{operation.name} response has no {secret}")
    return response
