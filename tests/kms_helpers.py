"""Helpers for the tests that drive the simulated KMS with boto3: its errors, unchecked clients, openssl."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives import serialization

from tests.test_kms_support import rsa_key

#: a client that sends what it is given (botocore's own checks off), to reach the server's validation
NO_CLIENT_VALIDATION = Config(parameter_validation=False)


def client_error(call: Any, **kwargs: Any) -> ClientError:
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    return caught.value


def error_of(call: Any, **kwargs: Any) -> tuple[str, str]:
    """(code, message) of the ClientError ``call(**kwargs)`` raises."""
    error = client_error(call, **kwargs).response["Error"]
    return error["Code"], error["Message"]


def openssl_open(envelope: bytes, tmp_path: Path) -> bytes:
    """``openssl cms -decrypt`` of a CiphertextForRecipient to the fixture RSA key: an independent peer."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl not installed")
    key_path, in_path, out_path = tmp_path / "key.pem", tmp_path / "ct.ber", tmp_path / "out.bin"
    key_path.write_bytes(rsa_key().private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption()))
    in_path.write_bytes(envelope)
    subprocess.run([openssl, "cms", "-decrypt", "-inform", "DER", "-in", str(in_path), "-inkey", str(key_path),
                    "-binary", "-out", str(out_path)], check=True, capture_output=True, timeout=30)
    return out_path.read_bytes()


def make_keys(kms: Any, *, alias: str) -> dict[str, str]:
    """With boto3 on ``kms`` (a SimulatedKms): a symmetric key with ``alias``, and an ECC_NIST_P256 key-agreement
    key. Keys: id, arn, alias, alias_arn, ecdh (its key id) and ecdh_arn."""
    boto = kms.client()
    symmetric = boto.create_key(Description=alias)["KeyMetadata"]
    boto.create_alias(AliasName=alias, TargetKeyId=symmetric["KeyId"])
    ecdh = boto.create_key(KeySpec="ECC_NIST_P256", KeyUsage="KEY_AGREEMENT")["KeyMetadata"]
    return {"id": symmetric["KeyId"], "arn": symmetric["Arn"], "alias": alias,
            "alias_arn": symmetric["Arn"].rpartition(":key/")[0] + ":" + alias, "ecdh": ecdh["KeyId"],
            "ecdh_arn": ecdh["Arn"]}
