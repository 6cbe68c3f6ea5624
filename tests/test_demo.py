"""`nitrokit demo`: the default (GenerateRandom) output keeps its shape; `--operation` shows each of the other
flows (simulated KMS with the key made by boto3, a real parent process, the enclave client), text and --json."""

from __future__ import annotations

import base64
import hashlib
import json
import re

import pytest

from nitrokit import cli
from tests.cli_helpers import run_cli

STEP = r"\[ *[0-9.]+ ms\] "
#: the default run, line by line, as it has always printed
DEFAULT_LINES = [
    STEP + r"simulated KMS listening at http://127\.0\.0\.1:[0-9]+ \(attestation checked against the fixture root\)",
    STEP + r"parent proxy \(pid [0-9]+\) listening at unix://\S+/parent\.sock, relaying to KMS with boto3",
    STEP + r"enclave: simulated NSM, module \S+",
    STEP + r"new identity: RSA-2048 key, attestation document of [0-9]+ bytes from the NSM carrying its public key",
    STEP + r"GenerateRandom -> parent unix://\S+ \(attempt 1\)",
    STEP + r"CiphertextForRecipient \([0-9]+ bytes of CMS\) decrypted inside the enclave: 32 bytes",
    STEP + r"mixed with NSM GetRandom output through HKDF-SHA384",
    STEP + r"parent stopped \(SIGTERM\); simulated KMS stopped",
    r"random \(32 bytes\): [0-9a-f]{64}",
]
#: per operation: the step that shows what the KMS side made, the wire call, the last line, the --json members
FLOWS = {
    "decrypt": ("KMS: Encrypt of a 34-byte sample plaintext", "Decrypt -> parent",
                r"plaintext \(34 bytes\): " + b"a secret only the enclave may read".hex(),
                {"operation", "plaintext", "bytes", "KeyId", "EncryptionAlgorithm", "mode", "steps"}),
    "generate-data-key": ("KMS: CreateKey made a SYMMETRIC_DEFAULT key", "GenerateDataKey -> parent",
                          r"data key \(32 bytes\): [0-9a-f]{64}",
                          {"operation", "plaintext", "bytes", "CiphertextBlob", "KeyId", "mode", "steps"}),
    "generate-data-key-pair": ("KMS: CreateKey made a SYMMETRIC_DEFAULT key", "GenerateDataKeyPair -> parent",
                               r"key pair ECC_NIST_P256: public key SHA-256 [0-9a-f]{64}; private key [0-9]+ bytes "
                               r"\(PKCS#8 DER, opened inside the enclave, not shown\)",
                               {"operation", "KeyPairSpec", "PublicKey", "public_key_sha256", "private_key_bytes",
                                "PrivateKeyCiphertextBlob", "KeyId", "mode", "steps"}),
    "derive-shared-secret": ("KMS: CreateKey made an ECC_NIST_P256 KEY_AGREEMENT key", "DeriveSharedSecret -> parent",
                             r"shared secret \(32 bytes\): [0-9a-f]{64}",
                             {"operation", "shared_secret", "bytes", "KeyId", "KeyAgreementAlgorithm", "mode",
                              "steps"}),
}


def _demo(capsys: pytest.CaptureFixture[str], *args: str) -> list[str]:
    capsys.readouterr()
    assert cli.main(["demo", *args]) == 0
    return capsys.readouterr().out.splitlines()


def test_the_default_output_is_unchanged(capsys: pytest.CaptureFixture[str]) -> None:
    for default in ((), ("--operation", "generate-random")):
        lines = _demo(capsys, *default)
        assert len(lines) == len(DEFAULT_LINES), lines
        for line, pattern in zip(lines, DEFAULT_LINES, strict=True):
            assert re.fullmatch(pattern, line), (line, pattern)
    report = json.loads("\n".join(_demo(capsys, "--bytes", "5", "--json")))
    assert set(report) == {"random", "bytes", "mode", "steps"} and report["bytes"] == 5
    assert len(base64.b64decode(report["random"])) == 5
    assert [re.sub(STEP, "", step).split(" ")[0] for step in report["steps"]] == [
        "simulated", "parent", "enclave:", "new", "GenerateRandom", "CiphertextForRecipient", "mixed", "parent"]


@pytest.mark.parametrize("operation", sorted(FLOWS))
def test_each_operation_text(capsys: pytest.CaptureFixture[str], operation: str) -> None:
    made, call, last, _ = FLOWS[operation]
    lines = _demo(capsys, "--operation", operation)
    assert re.fullmatch(last, lines[-1]), lines[-1]
    steps = [re.sub(STEP, "", line) for line in lines[:-1]]
    assert all(re.match(STEP, line) for line in lines[:-1])
    assert any(step.startswith(made) for step in steps), steps
    assert any(step.startswith(call) for step in steps), steps
    assert any(step.startswith("parent proxy (pid ") for step in steps)
    assert any("decrypted inside the enclave" in step for step in steps)
    assert not any("NOT" in step for step in steps)  # the sample plaintext / the peer's ECDH matched
    assert steps[-1] == "parent stopped (SIGTERM); simulated KMS stopped"


@pytest.mark.parametrize("mode", ["relay", "tunnel"])
@pytest.mark.parametrize("operation", sorted(FLOWS))
def test_each_operation_json(capsys: pytest.CaptureFixture[str], operation: str, mode: str) -> None:
    made, call, _, members = FLOWS[operation]
    out = _demo(capsys, "--operation", operation, "--mode", mode, "--json")
    assert len(out) == 1
    report = json.loads(out[0])
    assert set(report) == members and report["operation"] == operation and report["mode"] == mode
    assert report["KeyId"].startswith("arn:aws:kms:us-east-1:111122223333:key/")
    if mode == "tunnel":  # the enclave called KMS itself, over TLS through the byte relay
        call = call.replace("-> parent", "-> KMS kms.us-east-1.amazonaws.com over TLS through the relay")
    assert any(made in step for step in report["steps"]) and any(call in step for step in report["steps"])
    if operation == "generate-data-key-pair":
        public_key = base64.b64decode(report["PublicKey"])
        assert report["public_key_sha256"] == hashlib.sha256(public_key).hexdigest()
        assert report["private_key_bytes"] > 100 and "PrivateKeyPlaintext" not in report
    else:
        secret = report["plaintext" if "plaintext" in report else "shared_secret"]
        assert len(base64.b64decode(secret)) == report["bytes"]


#: the tunnel-mode run of the default flow, line by line
TUNNEL_LINES = [
    STEP + r"simulated KMS listening at https://127\.0\.0\.1:[0-9]+ \(attestation checked against the fixture root; "
           r"TLS certificate from the fixture TLS CA \S+tls-ca\.pem\)",
    STEP + r"parent byte relay \(pid [0-9]+\) listening at unix://\S+/tunnel\.sock, relaying TLS records to the "
           r"simulated KMS; credentials channel at unix://\S+/credentials\.sock",
    STEP + r"enclave: simulated NSM, module \S+",
    STEP + r"new identity: RSA-2048 key, attestation document of [0-9]+ bytes from the NSM carrying its public key",
    STEP + r"GenerateRandom -> KMS kms\.us-east-1\.amazonaws\.com over TLS through the relay unix://\S+ \(attempt 1\)",
    STEP + r"CiphertextForRecipient \([0-9]+ bytes of CMS\) decrypted inside the enclave: 32 bytes",
    STEP + r"mixed with NSM GetRandom output through HKDF-SHA384",
    STEP + r"parent stopped \(SIGTERM\); simulated KMS stopped",
    r"random \(32 bytes\): [0-9a-f]{64}",
]


def test_the_tunnel_mode_output(capsys: pytest.CaptureFixture[str]) -> None:
    lines = _demo(capsys, "--mode", "tunnel")
    assert len(lines) == len(TUNNEL_LINES), lines
    for line, pattern in zip(lines, TUNNEL_LINES, strict=True):
        assert re.fullmatch(pattern, line), (line, pattern)


def test_bytes_sizes_the_data_key_and_is_refused_elsewhere(capsys: pytest.CaptureFixture[str]) -> None:
    report = json.loads(_demo(capsys, "--operation", "generate-data-key", "--bytes", "16", "--json")[0])
    assert report["bytes"] == 16 and len(base64.b64decode(report["plaintext"])) == 16
    refused = run_cli("demo", "--operation", "decrypt", "--bytes", "16")
    assert refused.returncode == 2 and b"--bytes is for generate-random and generate-data-key" in refused.stderr
    assert b"Traceback" not in refused.stderr and refused.stdout == b""
