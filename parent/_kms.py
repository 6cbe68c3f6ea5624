"""The parent's side of a KMS call: a boto3 client, the call itself, and the mapping of its failures.

Everything here is synchronous and runs in the proxy's worker threads. Failures become
:class:`~nitrokit.wire.server.CallFailed` (the server's error-response exception, re-exported here) carrying
the ``{code, message, retryable}`` the enclave receives; nothing of a request or response body is put in a
message or a log.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from nitrokit._extras import extra_required
from nitrokit.errors import UsageError
from nitrokit.text import escaped
from nitrokit.wire import ErrorCode, ErrorInfo, InvalidResponseError, Operation
from nitrokit.wire.server import CallFailed

__all__ = ["RETRYABLE_KMS_CODES", "CallFailed", "KmsRelay", "check_result", "error_for_exception"]

#: KMS (and generic AWS) error codes worth retrying later: KMS's own transient errors and every throttling
#: code botocore's standard retry mode knows. Any HTTP 5xx answer is retryable too. LimitExceededException is
#: not: in KMS it means a quota on resources, which waiting does not lift.
RETRYABLE_KMS_CODES = frozenset({
    "DependencyTimeoutException",
    "KMSInternalException",
    "ThrottlingException",
    "Throttling",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "SlowDown",
    "ProvisionedThroughputExceededException",
    "BandwidthLimitExceeded",
    "EC2ThrottledException",
    "PriorRequestNotComplete",
    "TransactionInProgressException",
    "RequestTimeout",
    "RequestTimeoutException",
    "InternalFailure",
    "InternalError",
    "ServiceUnavailable",
    "ServiceUnavailableException",
})

_SAFE_CODE = re.compile(r"[A-Za-z][A-Za-z0-9._:-]{0,127}")  # not an HTTP status botocore made up
_MAX_KMS_MESSAGE = 512


class KmsRelay:
    """A boto3 KMS client and the one method the proxy needs: ``invoke(operation, params) -> result``."""

    def __init__(
        self, *, region: str | None, endpoint_url: str | None, profile: str | None, connect_timeout: float,
        read_timeout: float, max_attempts: int, max_pool_connections: int, client: Any | None = None,
    ) -> None:
        self.client = client if client is not None else _make_client(
            region=region, endpoint_url=endpoint_url, profile=profile, connect_timeout=connect_timeout,
            read_timeout=read_timeout, max_attempts=max_attempts, max_pool_connections=max_pool_connections)
        self._methods: dict[str, Any] = {}

    @property
    def endpoint(self) -> str:
        return str(self.client.meta.endpoint_url)

    @property
    def region(self) -> str:
        return str(self.client.meta.region_name)

    def invoke(self, operation: Operation, params: Mapping[str, Any]) -> dict[str, Any]:
        """Call KMS; return boto3's result or raise :class:`CallFailed` with the mapped error."""
        method = self._methods.get(operation.name)
        if method is None:
            from botocore import xform_name

            method = self._methods[operation.name] = getattr(self.client, xform_name(operation.name))
        try:
            result: dict[str, Any] = method(**params)
        except Exception as exc:  # every failure becomes an error response; the parent keeps serving
            info = error_for_exception(exc)
            raise CallFailed(info.code, info.message, retryable=info.retryable) from None
        return result


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
        detail = escaped(str(exc), _MAX_KMS_MESSAGE)
        raise UsageError(f"cannot create the KMS client: {type(exc).__name__}: {detail}") from None


def error_for_exception(exc: BaseException) -> ErrorInfo:
    """The error response for a boto3/botocore failure, with its ``retryable`` flag."""
    from botocore import exceptions as bce
    from botocore.parsers import ResponseParserError

    if isinstance(exc, bce.ClientError):
        error = exc.response.get("Error", {}) if isinstance(exc.response, dict) else {}
        meta = exc.response.get("ResponseMetadata", {}) if isinstance(exc.response, dict) else {}
        code = str(error.get("Code") or "")
        status = meta.get("HTTPStatusCode")
        if not _SAFE_CODE.fullmatch(code):
            code = ErrorCode.KMS_ERROR
        retryable = code in RETRYABLE_KMS_CODES or (isinstance(status, int) and status >= 500)
        message = escaped(str(error.get("Message") or f"KMS answered HTTP {status}"), _MAX_KMS_MESSAGE)
        return ErrorInfo(code=code, message=message, retryable=retryable)
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
    if isinstance(exc, ResponseParserError):
        return ErrorInfo(code=ErrorCode.INVALID_KMS_RESPONSE, message="KMS's answer could not be parsed",
                         retryable=False)
    return ErrorInfo(code=ErrorCode.INTERNAL_ERROR, message=f"the KMS call failed ({type(exc).__name__})",
                     retryable=False)


def check_result(operation: Operation, params: Mapping[str, Any], result: Mapping[str, Any]) -> dict[str, Any]:
    """The KMS JSON to send back for boto3's ``result``, after the parent's own checks.

    With a Recipient in the request, the answer must hold CiphertextForRecipient and no Plaintext: a Plaintext
    is dropped and refused (it must never cross the parent). Sizes and types are checked by the operation.
    A result holding nothing but ``ResponseMetadata`` (an empty or cut-off body) is KMS being unavailable,
    retryable.
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
    if recipient and result.get("Plaintext") is not None:
        raise CallFailed(ErrorCode.PLAINTEXT_REFUSED,
                         "KMS answered with Plaintext although a Recipient was sent; the answer was dropped")
    try:
        response = operation.encode_response(result)
    except InvalidResponseError as exc:
        raise CallFailed(ErrorCode.INVALID_KMS_RESPONSE, str(exc)) from None
    if recipient and "CiphertextForRecipient" not in response:
        raise CallFailed(ErrorCode.INVALID_KMS_RESPONSE,
                         f"{operation.name} response has no CiphertextForRecipient although a Recipient was sent")
    if not recipient and "Plaintext" not in response:
        raise CallFailed(ErrorCode.INVALID_KMS_RESPONSE, f"{operation.name} response has no Plaintext")
    return response

