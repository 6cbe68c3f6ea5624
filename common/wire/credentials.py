"""The credentials channel on the wire: ``GetCredentials``, the parent handing AWS credentials to an enclave.

In tunnel mode the enclave signs its own KMS requests (SigV4 inside TLS), so it needs AWS credentials; the
parent, which holds them already (its instance role), hands them over this channel (``nitrokit parent --mode
tunnel`` listens on :data:`DEFAULT_CREDENTIALS_PORT`). Same frames and messages as the KMS relay, with its
own allow-list, :data:`CREDENTIALS_OPERATIONS`::

    with CredentialsClient("vsock://3:8001") as channel:
        credentials = channel.fetch()                  # AwsCredentials; secrets kept out of repr()
        if credentials.expires_within(300):
            ...                                        # fetch again before signing with them

- ``GetCredentials``: request ``{}``; response ``{"AccessKeyId": ..., "SecretAccessKey": ...,
  "SessionToken": ... (optional), "Expiration": epoch seconds (optional)}``.

The credentials are the parent's: whoever runs the parent can read them, and can use them without the enclave.
Values are printable ASCII without spaces (they go into HTTP headers); neither the secret key nor the session
token ever appears in a repr, a log line or an error message.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from nitrokit.wire.address import VMADDR_CID_PARENT, Address
from nitrokit.wire.client import DEFAULT_CONNECT_TIMEOUT, WireClient
from nitrokit.wire.errors import InvalidResponseError
from nitrokit.wire.kms import Integer, Operation, String, Structure

__all__ = [
    "CREDENTIALS_OPERATIONS",
    "DEFAULT_CREDENTIALS_PORT",
    "ENCLAVE_CREDENTIALS_ADDRESS",
    "GET_CREDENTIALS",
    "AwsCredentials",
    "CredentialsClient",
    "credentials_response",
    "parse_credentials_response",
]

#: The parent's credentials channel port (an enclave reaches it as vsock://3:8001).
DEFAULT_CREDENTIALS_PORT = 8001
#: The credentials channel as an enclave reaches it: the parent (CID 3) on that port.
ENCLAVE_CREDENTIALS_ADDRESS = f"vsock://{VMADDR_CID_PARENT}:{DEFAULT_CREDENTIALS_PORT}"
#: How long a fetch waits for its answer: the parent's credential source has a timeout below this.
DEFAULT_TIMEOUT = 10.0
_MAX_EXPIRATION = 2**40

_ACCESS_KEY_ID = re.compile(r"[A-Za-z0-9_]+")  # the IAM model's [\w]+
_HEADER_TOKEN = re.compile(r"[\x21-\x7e]+")     # printable ASCII, no spaces: safe in an HTTP header

GET_CREDENTIALS = Operation(
    name="GetCredentials",
    request=Structure(members={}),
    response=Structure(
        members={
            "AccessKeyId": String(16, 128, _ACCESS_KEY_ID),
            "SecretAccessKey": String(1, 256, _HEADER_TOKEN),
            "SessionToken": String(1, 8192, _HEADER_TOKEN),
            "Expiration": Integer(0, _MAX_EXPIRATION),
        },
        required=frozenset({"AccessKeyId", "SecretAccessKey"}),
    ),
    plaintext_member="SecretAccessKey",
)

#: The credentials channel's allow-list.
CREDENTIALS_OPERATIONS: Mapping[str, Operation] = {GET_CREDENTIALS.name: GET_CREDENTIALS}


@dataclass(frozen=True, kw_only=True)
class AwsCredentials:
    """AWS credentials for SigV4. ``expiration`` is in epoch seconds; None means they do not expire."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)
    expiration: float | None = None

    def expires_within(self, seconds: float, *, now: float | None = None) -> bool:
        """True if the credentials expire within ``seconds`` from ``now`` (default: the current time)."""
        if self.expiration is None:
            return False
        return self.expiration - (time.time() if now is None else now) <= seconds


def credentials_response(credentials: AwsCredentials) -> dict[str, Any]:
    """The JSON of a GetCredentials response (checked: an :class:`InvalidResponseError` names a bad member)."""
    if not isinstance(credentials, AwsCredentials):
        raise InvalidResponseError(f"GetCredentials response: a credential source returned a "
                                   f"{type(credentials).__name__}, not AwsCredentials")
    result: dict[str, Any] = {"AccessKeyId": credentials.access_key_id,
                              "SecretAccessKey": credentials.secret_access_key}
    if credentials.session_token is not None:
        result["SessionToken"] = credentials.session_token
    if credentials.expiration is not None:
        expiration = credentials.expiration
        if isinstance(expiration, bool) or not isinstance(expiration, int | float) or math.isnan(expiration):
            raise InvalidResponseError("GetCredentials response: Expiration must be a number of epoch seconds")
        # Rounded down: a client then refreshes a little early, never late.
        result["Expiration"] = int(max(0, min(expiration, _MAX_EXPIRATION)))
    return GET_CREDENTIALS.encode_response(result)


def parse_credentials_response(response: Any) -> AwsCredentials:
    """The credentials in a GetCredentials response's JSON (every member checked)."""
    result = GET_CREDENTIALS.decode_response(response)
    if "AccessKeyId" not in result or "SecretAccessKey" not in result:  # nulls count as absent
        raise InvalidResponseError("GetCredentials response: AccessKeyId and SecretAccessKey are required")
    expiration = result.get("Expiration")
    return AwsCredentials(access_key_id=result["AccessKeyId"], secret_access_key=result["SecretAccessKey"],
                          session_token=result.get("SessionToken"),
                          expiration=float(expiration) if expiration is not None else None)


class CredentialsClient(WireClient):
    """A blocking client of the parent's credentials channel over one (reused) connection: a
    :class:`~nitrokit.wire.client.WireClient` whose only operation is ``GetCredentials``.

    Failures are the wire client's typed errors: :class:`~nitrokit.wire.errors.RemoteError` for an error
    response (``NoCredentials``, retryable, when the parent's credential source failed),
    :class:`~nitrokit.wire.errors.TransportError` when the channel cannot be reached, and
    :class:`~nitrokit.wire.errors.InvalidResponseError` for an answer that is not the operation's shape.
    """

    def __init__(self, address: str | Address, *, connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        super().__init__(address, connect_timeout=connect_timeout, timeout=timeout,
                         operations=CREDENTIALS_OPERATIONS)

    def fetch(self) -> AwsCredentials:
        """The parent's current credentials."""
        return parse_credentials_response(self.call(GET_CREDENTIALS.name, {}))

    def __repr__(self) -> str:
        return f"CredentialsClient({str(self.address)!r})"
