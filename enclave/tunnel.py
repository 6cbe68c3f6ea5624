"""Tunnel mode: the enclave talks to KMS itself, over TLS through the parent's byte relay.

In relay mode (the default) the parent calls KMS and hands the answer over, so a hostile parent can forge
an answer (CMS EnvelopedData is not authenticated). In tunnel mode the parent (``nitrokit parent --mode
tunnel``) only moves bytes: the enclave runs TLS to the KMS endpoint on a vsock connection to it, checks the
server's certificate and host name against a CA bundle it carries, signs each request with SigV4 and speaks
AWS JSON 1.1. The parent sees TLS records and can delay, cut or alter them; TLS turns an alteration into a
:class:`~nitrokit.enclave.errors.TlsError`, never into different answer bytes.

:class:`~nitrokit.enclave.kms_client.KmsClient` uses this with ``mode="tunnel"``; most code needs nothing
else from here::

    KmsClient(nsm=nsm, mode="tunnel", region="eu-west-1")   # relay vsock://3:8000, credentials vsock://3:8001

The parts:

- :class:`TunnelTransport`: ``call(operation, request_json) -> response_json`` over HTTPS, as the relay
  mode's :class:`~nitrokit.wire.client.WireClient` does over the parent's protocol; a KMS error answer
  becomes a :class:`~nitrokit.wire.errors.RemoteError` with KMS's code.
- :class:`CredentialsCache`: AWS credentials to sign with, from the parent's credentials channel
  (:class:`~nitrokit.wire.credentials.CredentialsClient`), static :class:`~nitrokit.wire.credentials.AwsCredentials`,
  a zero-argument callable returning them, or any :class:`CredentialsProvider`, fetched on first
  use and again before they expire. They are the parent's credentials: the parent can read and use them.
- :data:`DEFAULT_CA_FILE`: the Amazon Trust Services roots shipped in the package (``ca/``).
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Protocol, Self, runtime_checkable

from nitrokit import __version__, strict_json
from nitrokit.enclave._https import HttpAnswer, HttpsConnection
from nitrokit.enclave._sigv4 import SigV4Signer
from nitrokit.errors import UsageError
from nitrokit.kms_api import check_region, kms_endpoint_host
from nitrokit.text import escaped
from nitrokit.wire.address import Address, is_host_name, is_ipv4_literal, parse_address
from nitrokit.wire.credentials import (
    ENCLAVE_CREDENTIALS_ADDRESS,
    AwsCredentials,
    CredentialsClient,
    credentials_response,
)
from nitrokit.wire.errors import (
    ConnectionClosedError,
    InvalidResponseError,
    ProtocolError,
    RemoteError,
    WireError,
    WireTimeoutError,
)
from nitrokit.wire.kms import MAX_KMS_ANSWER_BYTES
from nitrokit.wire.messages import ErrorInfo

__all__ = [
    "DEFAULT_CA_FILE",
    "DEFAULT_CREDENTIALS",
    "CredentialsCache",
    "CredentialsProvider",
    "TunnelTransport",
    "tls_context",
]

#: The parent's credentials channel as an enclave sees it.
DEFAULT_CREDENTIALS = ENCLAVE_CREDENTIALS_ADDRESS
#: Amazon Root CA 1-4 and Starfield Services Root CA G2: the roots KMS's certificates chain to.
DEFAULT_CA_FILE = Path(str(resources.files("nitrokit.enclave").joinpath("ca/amazon-trust-services.pem")))

#: AWS JSON 1.1, what KMS speaks
CONTENT_TYPE = "application/x-amz-json-1.1"
_TARGET_PREFIX = "TrentService."
_USER_AGENT = f"nitrokit/{__version__} (enclave tunnel)"
#: credentials are fetched again when they expire within this many seconds...
REFRESH_BEFORE_EXPIRY = 300.0
#: ...or, when they carry no expiration, once they are this old
REFRESH_WITHOUT_EXPIRY = 900.0
# An early refresh that fails keeps the credentials in hand while they are good for a minute more, and is
# tried again after this long (not on every call: a stalled channel would cost each call its timeout).
_MUST_REFRESH_BEFORE_EXPIRY = 60.0
_RETRY_FAILED_REFRESH = 30.0
# KMS's answers to credentials it no longer takes: fetch fresh ones and try once more.
_STALE_CREDENTIALS = frozenset({"ExpiredTokenException", "UnrecognizedClientException"})


@runtime_checkable
class CredentialsProvider(Protocol):
    """Anything that returns the AWS credentials to sign with (tests, or your own source)."""

    def credentials(self) -> AwsCredentials: ...


#: Credentials from elsewhere than the parent's channel: a provider, a zero-argument callable, or static ones.
CredentialsSource = CredentialsProvider | Callable[[], AwsCredentials] | AwsCredentials


class CredentialsError(WireError):
    """The caller's credentials provider (or callable) raised: not retried. The message names the exception's
    class only, never its text (which may hold a secret)."""

    retryable = False


def _fetcher(source: CredentialsSource) -> Callable[[], AwsCredentials]:
    if isinstance(source, AwsCredentials):
        return lambda: source
    if isinstance(source, CredentialsProvider):
        return source.credentials
    if callable(source):
        return source
    raise UsageError(f"credentials must be an address, AwsCredentials, a CredentialsProvider or a callable "
                     f"returning AwsCredentials, not a {type(source).__name__}")


def _check_host(host: object) -> str:
    """A DNS name (no trailing dot: SNI takes none) or an IPv4 literal, which ssl checks against IP SANs."""
    if not isinstance(host, str) or host.endswith(".") or not (is_host_name(host) or is_ipv4_literal(host)):
        shown = escaped(host, 60) if isinstance(host, str) else type(host).__name__
        raise UsageError(f"KMS host {shown!r} is not a DNS host name")
    return host


def tls_context(ca_file: str | Path | None = None) -> ssl.SSLContext:
    """A client context: TLS 1.2 or later, the certificate and host name verified against ``ca_file`` (PEM;
    default :data:`DEFAULT_CA_FILE`) and nothing else: the system's store is not consulted."""
    path = Path(ca_file) if ca_file is not None else DEFAULT_CA_FILE
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # check_hostname and CERT_REQUIRED by default
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    shown = escaped(str(path), 200)
    try:
        context.load_verify_locations(cafile=str(path))
    except ssl.SSLError:  # not PEM, or no certificate in it
        raise UsageError(f"CA file {shown}: no PEM certificate in it") from None
    except OSError as exc:  # missing, a directory, unreadable
        raise UsageError(f"CA file {shown}: {_os_problem(exc)}") from None
    if not context.get_ca_certs():
        raise UsageError(f"CA file {shown}: no PEM CA certificate in it")
    return context


def _os_problem(exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    if isinstance(exc, IsADirectoryError):
        return "it is a directory, not a PEM file"
    if isinstance(exc, PermissionError):
        return "permission denied (cannot read it)"
    return f"cannot read it ({escaped(exc.strerror or type(exc).__name__, 80)})"


def _roots(ca_file: str | Path | None) -> str:
    """What a TLS context of :func:`tls_context` trusts, in words (for a refused certificate's message)."""
    if ca_file is None:
        return "the Amazon Trust Services roots shipped with nitrokit; pass ca_file / --ca-file for another CA"
    return f"the CA file {escaped(str(ca_file), 200)}"


class CredentialsCache:
    """The credentials to sign with: fetched on first use, then again when they expire within
    :data:`REFRESH_BEFORE_EXPIRY` seconds (or, without an expiration, every :data:`REFRESH_WITHOUT_EXPIRY`
    seconds) and when :meth:`invalidate` says KMS refused them. When such an early refresh fails, the
    credentials in hand are kept while they are good for a minute more (the refresh tried again 30 s later).
    Thread-safe: one fetch at a time."""

    def __init__(self, source: CredentialsSource, *, clock: Callable[[], float] = time.time) -> None:
        self._fetch = _fetcher(source)
        self._clock = clock
        self._lock = threading.Lock()
        self._current: AwsCredentials | None = None
        self._fetched_at = 0.0
        self._retry_at = 0.0  # after a failed early refresh
        #: how many times the source was asked (for tests and traces)
        self.fetches = 0

    def credentials(self) -> AwsCredentials:
        with self._lock:
            now = self._clock()
            current = self._current
            if current is None or self._stale(current, now):
                try:
                    current = self._ask()
                except WireError:
                    if current is None or current.expires_within(_MUST_REFRESH_BEFORE_EXPIRY, now=now):
                        raise
                    self._retry_at = now + _RETRY_FAILED_REFRESH
                    return current
                if not isinstance(current, AwsCredentials):
                    raise UsageError(f"the credentials provider returned a {type(current).__name__}, not "
                                     "AwsCredentials")
                try:  # the channel's checks for any provider: the values go into HTTP headers (no CR/LF)
                    credentials_response(current)
                except InvalidResponseError as exc:  # names the member, never its value
                    raise UsageError(f"the credentials provider's credentials are unusable: {exc}") from None
                self._current, self._fetched_at = current, now
                self.fetches += 1
            return current

    def _ask(self) -> AwsCredentials:
        try:
            return self._fetch()
        except WireError:  # the channel's, typed already
            raise
        except Exception as exc:  # the caller's provider: typed here, its text left out (it may hold a secret)
            failed = type(exc).__name__
        # raised outside the handler, so that the provider's exception is not even its __context__
        raise CredentialsError(f"the credentials provider raised {failed} (its message is not shown: it may hold "
                               "a secret)")

    def invalidate(self) -> None:
        """Forget the credentials: the next :meth:`credentials` fetches fresh ones."""
        with self._lock:
            self._current = None

    def _stale(self, current: AwsCredentials, now: float) -> bool:
        if current.expires_within(_MUST_REFRESH_BEFORE_EXPIRY, now=now):
            return True
        if now < self._retry_at:
            return False
        if current.expiration is None:
            return now - self._fetched_at >= REFRESH_WITHOUT_EXPIRY
        return current.expires_within(REFRESH_BEFORE_EXPIRY, now=now)

    def __repr__(self) -> str:
        return f"CredentialsCache(fetches={self.fetches})"


class _ChannelProvider:
    """The parent's credentials channel as a :class:`CredentialsProvider` (one kept connection)."""

    def __init__(self, address: Address, *, connect_timeout: float, timeout: float) -> None:
        self._client = CredentialsClient(address, connect_timeout=connect_timeout, timeout=timeout)
        self._connect_timeout, self._timeout = connect_timeout, timeout

    def until(self, deadline: float) -> None:
        """Make the next fetch end by ``deadline`` (:func:`time.monotonic`): the KMS call's own."""
        left = max(0.001, deadline - time.monotonic())
        self._client.connect_timeout = min(self._connect_timeout, left)
        self._client.timeout = min(self._timeout, left)

    def credentials(self) -> AwsCredentials:
        try:
            return self._client.fetch()
        except WireError as exc:  # named as the credentials channel's, not the tunnel's
            _name_channel(exc, self._client.address)
            raise

    def close(self) -> None:
        self._client.close()


def _name_channel(exc: WireError, address: Address) -> None:
    """Prefix ``exc``'s message with the channel's address, and for bytes that are not the channel's
    protocol, say what the likely mistake is."""
    hint = (": is --credentials the parent's credentials channel (not its tunnel address)?"
            if isinstance(exc, ConnectionClosedError | ProtocolError) else "")
    if isinstance(exc, RemoteError):
        exc.remote_message = f"credentials channel {address}: {exc.remote_message}"
        exc.args = (f"{exc.code}: {exc.remote_message}",)
    else:
        exc.args = (f"credentials channel {address}: {exc}{hint}",)


class TunnelTransport:
    """KMS calls over HTTPS through the parent's byte relay at ``relay``: the transport of tunnel mode.
    Thread-safe; calls run one at a time on one kept-alive connection.

    ``call`` raises what the relay mode's wire client raises: :class:`~nitrokit.wire.errors.RemoteError` for
    a KMS error answer (KMS's code; retryable for throttling, KMS's transient errors and HTTP 5xx),
    :class:`~nitrokit.wire.errors.TransportError` subclasses when the connection fails (retryable),
    :class:`~nitrokit.wire.errors.InvalidResponseError` for an answer that is not HTTP or JSON within the
    bounds, and a TLS failure (not retryable; :class:`~nitrokit.enclave.errors.TlsError` from the client) when
    TLS refuses the server or its records. Credentials
    KMS no longer accepts (ExpiredTokenException, UnrecognizedClientException) are fetched again and the call
    made once more.
    """

    def __init__(
        self, relay: str | Address, *, region: str, kms_host: str | None = None, ca_file: str | Path | None = None,
        credentials: str | Address | CredentialsSource | None = None, connect_timeout: float = 5.0,
        timeout: float = 30.0,
    ) -> None:
        self.region = check_region(region)
        self.kms_host = _check_host(kms_host if kms_host is not None else kms_endpoint_host(region))
        self.relay = parse_address(relay)
        self._channel: _ChannelProvider | None = None
        source: CredentialsSource
        if credentials is None or isinstance(credentials, str | Address):
            address = parse_address(credentials if credentials is not None else DEFAULT_CREDENTIALS)
            source = self._channel = _ChannelProvider(address, connect_timeout=connect_timeout,
                                                      timeout=min(timeout, 10.0))
        else:
            source = credentials
        self.credentials = CredentialsCache(source)
        self._signer = SigV4Signer(self.region)
        self._timeout = timeout
        self._http = HttpsConnection(self.relay, host=self.kms_host, context=tls_context(ca_file),
                                     connect_timeout=connect_timeout, timeout=timeout, max_body=MAX_KMS_ANSWER_BYTES,
                                     roots=_roots(ca_file))
        self._lock = threading.Lock()  # one exchange at a time on the one connection

    @property
    def connections(self) -> int:
        """TLS connections opened so far (one per call would mean keep-alive is not working)."""
        return self._http.connections

    @property
    def resumed(self) -> int:
        """How many of those resumed an earlier TLS session (no full handshake)."""
        return self._http.resumed

    def call(self, operation: str, request: Mapping[str, Any]) -> dict[str, Any]:
        """Send ``request`` (the operation's KMS JSON) to KMS; return KMS's JSON answer."""
        body = json.dumps(request, separators=(",", ":"), ensure_ascii=True).encode("ascii")
        with self._lock:
            # One deadline for the whole call: the credentials fetched, the exchange, and its one repeat.
            deadline = time.monotonic() + self._timeout
            try:
                return self._send(operation, body, deadline)
            except RemoteError as exc:
                if exc.code not in _STALE_CREDENTIALS:
                    raise
            self.credentials.invalidate()
            return self._send(operation, body, deadline)

    def close(self) -> None:
        with self._lock:
            self._http.close()
            if self._channel is not None:
                self._channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, operation: str, body: bytes, deadline: float) -> dict[str, Any]:
        if self._channel is not None:
            self._channel.until(deadline)
        credentials = self.credentials.credentials()
        if time.monotonic() >= deadline:
            raise WireTimeoutError(f"the KMS call took longer than {self._timeout:g} s (fetching the credentials)")
        headers = self._signer.sign(
            host=self.kms_host, body=body, credentials=credentials,
            headers={"content-type": CONTENT_TYPE, "x-amz-target": _TARGET_PREFIX + operation})
        headers["user-agent"] = _USER_AGENT  # not signed (as botocore leaves it out)
        return _kms_answer(self._http.post(headers, body, until=deadline))

    def __repr__(self) -> str:
        return f"TunnelTransport({str(self.relay)!r}, kms_host={self.kms_host!r})"


def _kms_answer(answer: HttpAnswer) -> dict[str, Any]:
    """KMS's JSON for a 200; a :class:`RemoteError` for an error answer (AWS JSON 1.1's ``__type``)."""
    try:
        document = strict_json.loads(answer.body, what="KMS's answer", max_bytes=MAX_KMS_ANSWER_BYTES)
    except strict_json.StrictJsonError as exc:
        if answer.status == 200:
            raise InvalidResponseError(str(exc)) from None
        document = None
    if answer.status == 200:
        if not isinstance(document, dict):
            raise InvalidResponseError("KMS's answer is not a JSON object")
        return document
    fields = document if isinstance(document, dict) else {}
    raw_code = fields.get("__type") or answer.headers.get("x-amzn-errortype", "").partition(":")[0]
    code = raw_code.rpartition("#")[2] if isinstance(raw_code, str) else None  # botocore's namespace rule
    error = ErrorInfo.from_kms(code, fields.get("message", fields.get("Message")), status=answer.status)
    raise RemoteError(error.code, error.message, retryable=error.retryable)
