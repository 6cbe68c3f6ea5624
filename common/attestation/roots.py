"""Trust roots for attestation: the pinned AWS Nitro Enclaves root G1, or one the caller supplies.

The AWS root ships inside the package and is checked against its published SHA-256 fingerprint every time
it is loaded, so a modified file is refused rather than trusted. :func:`load_root` is the one place a root
is resolved from what a user wrote: ``"aws"``, ``"fixture"`` (nitrokit's TEST PKI, loaded only when asked
for), a certificate, PEM/DER bytes or a path (a file really named ``aws`` is ``./aws``).
"""

from __future__ import annotations

import functools
import hashlib
from importlib import resources
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from nitrokit.attestation.errors import TrustRootError

AWS_NITRO_ROOT_G1_SHA256 = "641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b"
_AWS_ROOT_RESOURCE = "roots/aws-nitro-enclaves-root-g1.pem"
MAX_ROOT_FILE_BYTES = 64 * 1024

RootSource = x509.Certificate | bytes | str | Path
ROOT_NAMES = ("aws", "fixture")


@functools.cache
def aws_nitro_root() -> x509.Certificate:
    """The AWS Nitro Enclaves root G1, loaded from the package and fingerprint-checked."""
    pem = resources.files("nitrokit.attestation").joinpath(_AWS_ROOT_RESOURCE).read_bytes()
    root = _load_certificate_bytes(pem, what="packaged AWS Nitro root")
    fingerprint = hashlib.sha256(root.public_bytes(serialization.Encoding.DER)).hexdigest()
    if fingerprint != AWS_NITRO_ROOT_G1_SHA256:
        raise TrustRootError(f"SHA-256 {fingerprint} does not match the pinned {AWS_NITRO_ROOT_G1_SHA256}",
                             field="packaged AWS Nitro root")
    return root


def load_root(source: RootSource) -> x509.Certificate:
    """A trust root from ``"aws"``, ``"fixture"``, a Certificate, PEM or DER bytes, or a PEM/DER file's path."""
    if isinstance(source, x509.Certificate):
        return source
    if isinstance(source, bytes):
        return _load_certificate_bytes(source, what="root")
    if source == "aws":
        return aws_nitro_root()
    if source == "fixture":
        from nitrokit.testing.pki import fixture_root  # test support: imported only when asked for

        return fixture_root()
    if isinstance(source, str | Path):
        path = Path(source)
        try:
            with path.open("rb") as handle:
                data = handle.read(MAX_ROOT_FILE_BYTES + 1)
        except OSError as exc:
            raise TrustRootError(f"cannot read {path}: {exc.strerror or exc}") from None
        if len(data) > MAX_ROOT_FILE_BYTES:
            raise TrustRootError(f"{path} is larger than {MAX_ROOT_FILE_BYTES} bytes")
        return _load_certificate_bytes(data, what=f"root {path}")
    raise TrustRootError(f"expected a Certificate, bytes or a path, got {type(source).__name__}")


def _load_certificate_bytes(data: bytes, *, what: str) -> x509.Certificate:
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError:
        raise TrustRootError("not a PEM or DER X.509 certificate", field=what) from None
