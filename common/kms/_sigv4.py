"""Checking AWS Signature Version 4 on incoming requests, with botocore's own canonicalisation.

The parsing of the ``Authorization`` header and the checks around it (scope, signed headers, clock skew) are
here; the canonical request, string to sign and signature come from :class:`botocore.auth.SigV4Auth`, the
code that signs the requests in the first place, so the two can not disagree on the algorithm.

Errors are the ones AWS JSON services answer, all HTTP 400:

- no ``Authorization`` header: MissingAuthenticationTokenException
- malformed header, missing Credential/SignedHeaders/Signature, missing or malformed X-Amz-Date, another
  algorithm: IncompleteSignatureException
- unknown access key, or a session token that is missing, unexpected or wrong: UnrecognizedClientException
- wrong date/region/service/terminator in the scope, host or x-amz-date not signed, clock skew over 5 minutes,
  signature mismatch: InvalidSignatureException

With ``any_credentials`` (``--any-credentials``, as moto and LocalStack accept any keys) every access key id and
session token is accepted; since the secret is then unknown, the signature cannot be recomputed, so only its
form is checked: the whole header, scope, signed headers, date and skew as above, and a signature of 64
lower-case hex digits. A request that is not SigV4-signed at all is still refused.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import Message

from nitrokit._extras import extra_required
from nitrokit.kms.config import AccessKey
from nitrokit.kms.errors import KmsServiceError

with extra_required("kms-sim"):
    from botocore.auth import SIGV4_TIMESTAMP, SigV4Auth
    from botocore.awsrequest import AWSRequest, HTTPHeaders
    from botocore.credentials import Credentials

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "kms"
MAX_SKEW = timedelta(minutes=5)
_MAX_AUTHORIZATION_LENGTH = 8192
_MAX_SIGNED_HEADERS = 64
_SIGNATURE_RE = re.compile(r"[0-9a-f]{64}")  # hex of an HMAC-SHA256

_MISMATCH = ("The request signature we calculated does not match the signature you provided. Check your AWS "
             "Secret Access Key and signing method. Consult the service documentation for details.")


def _incomplete(message: str) -> KmsServiceError:
    return KmsServiceError("IncompleteSignatureException", message)


def _invalid(message: str, reason: str | None = None) -> KmsServiceError:
    return KmsServiceError("InvalidSignatureException", message, reason=reason)


@dataclass(frozen=True)
class _Authorization:
    access_key_id: str
    date: str
    region: str
    service: str
    terminator: str
    signed_headers: tuple[str, ...]
    signature: str


class _ExactHeadersSigner(SigV4Auth):  # type: ignore[misc]  # botocore ships no type hints
    """botocore's signer, told exactly which headers the client signed (instead of choosing them itself)."""

    def __init__(self, credentials: Credentials, region: str, signed: HTTPHeaders) -> None:
        super().__init__(credentials, SERVICE, region)
        self._signed = signed

    def headers_to_sign(self, request: AWSRequest) -> HTTPHeaders:
        return self._signed


def verify_request(
    *,
    method: str,
    path: str,
    headers: Message,
    body: bytes,
    credentials: Sequence[AccessKey],
    region: str,
    now: datetime | None = None,
    any_credentials: bool = False,
) -> AccessKey | None:
    """Check the request's SigV4 signature; return the matching access key or raise KmsServiceError.

    With ``any_credentials`` no key is looked up (None is returned) and the signature's form is checked instead
    of its value: see the module's docstring.
    """
    now = now or datetime.now(UTC)
    header = headers.get("Authorization")
    if header is None:
        raise KmsServiceError("MissingAuthenticationTokenException", "Request is missing Authentication Token")
    auth = _parse_authorization(header, has_date=headers.get("X-Amz-Date") is not None)
    amz_date = headers["X-Amz-Date"]

    key = None if any_credentials else _find_key(credentials, auth.access_key_id)
    if key is None and not any_credentials:
        raise KmsServiceError("UnrecognizedClientException", "The security token included in the request is invalid.",
                              reason=f"unknown access key {auth.access_key_id}")
    token = headers.get("X-Amz-Security-Token")
    if key is not None and ((token is None) != (key.session_token is None) or (
            token is not None and key.session_token is not None
            and not hmac.compare_digest(token.encode(), key.session_token.encode()))):
        raise KmsServiceError("UnrecognizedClientException", "The security token included in the request is invalid.",
                              reason="session token missing, unexpected or wrong")

    try:
        signed_at = datetime.strptime(amz_date, SIGV4_TIMESTAMP).replace(tzinfo=UTC)
    except ValueError:
        raise _incomplete(f"Date must be in ISO-8601 'basic format'. Got '{amz_date[:32]}'. See "
                          "http://en.wikipedia.org/wiki/ISO_8601") from None
    if auth.date != amz_date[:8]:
        raise _invalid("Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: "
                       f"'{auth.date[:16]}' != '{amz_date[:8]}', from '{amz_date}'.")
    if auth.region != region:
        raise _invalid(f"Credential should be scoped to a valid region, not '{auth.region[:64]}'. ")
    if auth.service != SERVICE:
        raise _invalid(f"Credential should be scoped to correct service: '{SERVICE}'. ")
    if auth.terminator != "aws4_request":
        raise _invalid(f"Credential should be scoped with a valid terminator: 'aws4_request', not "
                       f"'{auth.terminator[:32]}'. ")
    if "host" not in auth.signed_headers:
        raise _invalid("'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.")
    if "x-amz-date" not in auth.signed_headers:
        raise _invalid("'X-Amz-Date' must be a 'SignedHeader' in the AWS Authorization.")
    _check_skew(signed_at, now)

    signed = HTTPHeaders()
    for name in auth.signed_headers:
        values = headers.get_all(name)
        if not values:
            raise _invalid(_MISMATCH, reason=f"signed header {name} is absent")
        for value in values:
            signed[name] = value
    if key is None:  # any credentials: the secret is unknown, so the signature can only be checked for form
        if not _SIGNATURE_RE.fullmatch(auth.signature):
            raise _invalid(_MISMATCH, reason="the signature is not 64 lower-case hex digits")
        _check_content_hash(headers, body)
        return None
    # The body hash is always computed from the bytes received: the request given to botocore carries no
    # X-Amz-Content-SHA256 header, so a client-supplied hash can not stand in for the real one.
    request = AWSRequest(method=method, url=f"http://{headers.get('Host', '')}{path}", data=body)
    request.context["timestamp"] = amz_date
    signer = _ExactHeadersSigner(Credentials(key.access_key_id, key.secret_access_key), region, signed)
    try:
        canonical = signer.canonical_request(request)
        expected = signer.signature(signer.string_to_sign(request, canonical), request)
    except ValueError:  # botocore's URL parsing: a Host header such as "[" is no host at all
        raise _invalid(_MISMATCH, reason="the Host header is not a valid host") from None
    if not hmac.compare_digest(expected.encode(), auth.signature.encode()):
        raise _invalid(_MISMATCH, reason="signature mismatch")
    _check_content_hash(headers, body)
    return key


def _check_content_hash(headers: Message, body: bytes) -> None:
    claimed = headers.get("X-Amz-Content-SHA256")
    if claimed is not None and not hmac.compare_digest(claimed.encode(), hashlib.sha256(body).hexdigest().encode()):
        raise _invalid(_MISMATCH, reason="x-amz-content-sha256 does not match the body")


def _parse_authorization(header: str, *, has_date: bool) -> _Authorization:
    if len(header) > _MAX_AUTHORIZATION_LENGTH:
        raise _incomplete("Authorization header is too long.")
    algorithm, _, rest = header.strip().partition(" ")
    fields: dict[str, str] = {}
    if algorithm.startswith("AWS4-") and algorithm != ALGORITHM:
        raise _incomplete(f"Unsupported AWS 'algorithm': '{algorithm[:32]}'.")
    if algorithm == ALGORITHM:
        for raw_part in rest.split(","):
            part = raw_part.strip()
            if not part:
                continue
            name, equals, value = part.partition("=")
            if not equals:
                raise _incomplete(f"'{part[:64]}' not a valid key=value pair (missing equal-sign) in Authorization "
                                  "header.")
            fields[name.strip()] = value.strip()
    missing = [f"Authorization header requires '{name}' parameter." for name in ("Credential", "Signature",
                                                                                  "SignedHeaders")
               if not fields.get(name)]
    if not has_date:
        missing.append("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.")
    if missing:
        raise _incomplete(" ".join(missing))
    scope = fields["Credential"].split("/")
    if len(scope) != 5 or not all(scope):
        raise _incomplete("Credential must have exactly 5 slash-delimited elements, e.g. "
                          "keyid/date/region/service/term.")
    signed_headers = tuple(fields["SignedHeaders"].split(";"))
    if len(signed_headers) > _MAX_SIGNED_HEADERS or not all(signed_headers) or \
            any(name != name.lower() for name in signed_headers):
        raise _incomplete("SignedHeaders must be a ';'-separated list of lower-case header names.")
    return _Authorization(access_key_id=scope[0], date=scope[1], region=scope[2], service=scope[3],
                          terminator=scope[4], signed_headers=signed_headers, signature=fields["Signature"])


def _find_key(credentials: Sequence[AccessKey], access_key_id: str) -> AccessKey | None:
    for key in credentials:
        if hmac.compare_digest(key.access_key_id.encode(), access_key_id.encode()):
            return key
    return None


def _check_skew(signed_at: datetime, now: datetime) -> None:
    def stamp(moment: datetime) -> str:
        return moment.strftime(SIGV4_TIMESTAMP)

    if signed_at < now - MAX_SKEW:
        raise _invalid(f"Signature expired: {stamp(signed_at)} is now earlier than {stamp(now - MAX_SKEW)} "
                       f"({stamp(now)} - 5 min.)")
    if signed_at > now + MAX_SKEW:
        raise _invalid(f"Signature not yet current: {stamp(signed_at)} is still later than "
                       f"{stamp(now + MAX_SKEW)} ({stamp(now)} + 5 min.)")

