"""AWS Signature Version 4 for the enclave's own KMS requests (tunnel mode), with the standard library only.

The enclave image carries no botocore (30 MB, almost all of it service models nitrokit never uses), so the
one request shape tunnel mode sends is signed here: ``POST /`` with no query string, the headers
:func:`sign` is given plus ``host``, ``x-amz-date`` and (temporary credentials) ``x-amz-security-token``, all
of them signed, and the SHA-256 of the body. tests/test_sigv4_signer.py checks the result byte for byte
against :class:`botocore.auth.SigV4Auth` and against the simulated KMS, whose verifier is botocore's.

The derived signing key (four HMACs from the secret) is cached for one (secret, date, region) at a time.
Neither the secret nor the key appears in a repr or an error.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections.abc import Mapping
from datetime import UTC, datetime

from nitrokit.wire.credentials import AwsCredentials

__all__ = ["ALGORITHM", "SERVICE", "SigV4Signer"]

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "kms"
_TIMESTAMP = "%Y%m%dT%H%M%SZ"  # ISO 8601 basic format, as botocore's SIGV4_TIMESTAMP


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest()


def _trim(value: str) -> str:
    """SigV4's Trimall: no surrounding white space, inner runs of spaces as one."""
    return " ".join(value.split())


class SigV4Signer:
    """Signs ``POST /`` requests to one service in one region. Thread-safe."""

    def __init__(self, region: str, *, service: str = SERVICE) -> None:
        self.region = region
        self.service = service
        self._lock = threading.Lock()
        self._cached: tuple[bytes, str, bytes] | None = None  # (secret, date, signing key)

    def sign(
        self, *, host: str, headers: Mapping[str, str], body: bytes, credentials: AwsCredentials,
        now: datetime | None = None,
    ) -> dict[str, str]:
        """The headers to send: ``headers`` (names lower-case), ``host``, ``x-amz-date``, the session token
        if any, and ``authorization``. Every one of them but ``authorization`` is signed."""
        moment = (now or datetime.now(UTC)).astimezone(UTC)
        amz_date = moment.strftime(_TIMESTAMP)
        signed: dict[str, str] = {name.lower(): value for name, value in headers.items()}
        signed["host"] = host
        signed["x-amz-date"] = amz_date
        if credentials.session_token is not None:
            signed["x-amz-security-token"] = credentials.session_token
        names = sorted(signed)
        signed_headers = ";".join(names)
        canonical = "\n".join([
            "POST", "/", "",
            *(f"{name}:{_trim(signed[name])}" for name in names), "",
            signed_headers,
            hashlib.sha256(body).hexdigest(),
        ])
        scope = f"{amz_date[:8]}/{self.region}/{self.service}/aws4_request"
        string_to_sign = "\n".join([ALGORITHM, amz_date, scope,
                                    hashlib.sha256(canonical.encode("utf-8")).hexdigest()])
        key = self._signing_key(credentials.secret_access_key, amz_date[:8])
        signature = hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
        signed["authorization"] = (f"{ALGORITHM} Credential={credentials.access_key_id}/{scope}, "
                                   f"SignedHeaders={signed_headers}, Signature={signature}")
        return signed

    def _signing_key(self, secret: str, date: str) -> bytes:
        secret_bytes = secret.encode("utf-8")
        with self._lock:
            cached = self._cached
            if cached is not None and cached[1] == date and hmac.compare_digest(cached[0], secret_bytes):
                return cached[2]
        key = _hmac(_hmac(_hmac(_hmac(b"AWS4" + secret_bytes, date), self.region), self.service), "aws4_request")
        with self._lock:
            self._cached = (secret_bytes, date, key)
        return key

    def __repr__(self) -> str:
        return f"SigV4Signer(region={self.region!r}, service={self.service!r})"
