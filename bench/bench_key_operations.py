"""Decrypt, GenerateDataKey, GenerateDataKeyPair and DeriveSharedSecret with a Recipient: through the parent,
straight to KMS with boto3, and each operation's crypto floor, in one run.

    python bench/bench_key_operations.py [--seconds S]

The rig is bench_generate_random.py's (bench/_roundtrip.py): the simulated KMS (``nitrokit kms-sim``) and the
parent (``nitrokit parent`` on a Unix socket) as child processes on loopback, the enclaves as threads of this
process, each a :class:`~nitrokit.enclave.kms_client.KmsClient` with its own simulated NSM and RSA-2048
identity (kept for the whole run). The keys are made with boto3 CreateKey before timing: a symmetric key, and
an ECC_NIST_P256 KEY_AGREEMENT key for DeriveSharedSecret; Decrypt opens a data key made by GenerateDataKey.

For each operation, at 1 and 8 concurrent enclaves calling back to back:

- through the parent: the enclave client's call (enclave -> parent -> KMS and back, the envelope opened and
  the answer checked: key id, sizes, and for a key pair its private key loaded and matched to PublicKey);
- direct: the same enclaves' work without the parent: boto3 calls the simulated KMS with the same kind of
  Recipient, the envelope is opened the same way (and a key pair checked with the client's own check);
- the floor, measured in the same run: the crypto the operation cannot avoid, one after another on one core:
  the envelope (KMS's RSA-2048 OAEP encryption, the enclave's OAEP decryption) and KMS's P-384 check of the
  document (warm chain), plus the operation's own: AES-256-GCM open of the ciphertext blob (Decrypt), AES-GCM
  seal of the new blob (GenerateDataKey, GenerateDataKeyPair), the key pair's generation (GenerateDataKeyPair),
  one P-256 ECDH (DeriveSharedSecret). Ratios are against it.

Calls/s is the best of 5 interleaved rounds per path (a disturbance hits both paths alike); the notes give
every round's range and the through/direct ratio of each round; p50/p99 pool every round's calls.
``--seconds`` is the time per operation and concurrency, shared by the two paths (4 times that for
GenerateDataKeyPair RSA_2048, whose KMS-side key generation varies from key to key). The enclave client's
check of an RSA-2048 pair (loading the private key, which OpenSSL validates, and matching PublicKey) is
timed alone too: both paths do it, the floor leaves it out.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._harness import Row, best_rates, print_table, rate, row
from bench._roundtrip import (
    KEEP_IDENTITY,
    Caller,
    Direct,
    Measured,
    boto3_client,
    cpu_rows,
    envelope_primitives,
    machine,
    measure,
    path_rows,
    processes,
)
from nitrokit.enclave.kms_client import KmsClient, _check_key_pair
from nitrokit.enclave.nsm import SimulatedNsm

CONCURRENCY = (1, 8)
ROUNDS = 5
ENVELOPE = ("encrypt", "verify", "decrypt")


@dataclass(frozen=True)
class Operation:
    """One benchmarked call: how the enclave client and the direct path make it, and its floor's parts."""

    name: str
    title: str
    through: Callable[[KmsClient], object]
    direct: Callable[[Direct], object]
    floor: tuple[str, ...]
    #: its share of the time budget: more for a call whose time varies a lot (an RSA key generation)
    weight: float = 1.0


def _keys(url: str, session: Any) -> tuple[str, str, bytes]:
    """(symmetric key ARN, P-256 key agreement key ARN, a data key's CiphertextBlob), made with boto3."""
    client = boto3_client(url, session)
    symmetric = client.create_key(Description="bench")["KeyMetadata"]["Arn"]
    agreement = client.create_key(KeySpec="ECC_NIST_P256", KeyUsage="KEY_AGREEMENT")["KeyMetadata"]["Arn"]
    blob = client.generate_data_key(KeyId=symmetric, KeySpec="AES_256")["CiphertextBlob"]
    return str(symmetric), str(agreement), bytes(blob)


def _pair(spec: str, key: str) -> Callable[[Direct], object]:
    def call(direct: Direct) -> object:
        answer, private_der = direct.call("generate_data_key_pair", "PrivateKeyPlaintext", KeyId=key, KeyPairSpec=spec)
        _check_key_pair(private_der, answer["PublicKey"], spec)  # what the enclave client checks
        return private_der
    return call


def _operations(symmetric: str, agreement: str, blob: bytes, peer: bytes) -> list[Operation]:
    return [
        Operation("Decrypt", "Decrypt of a data key", lambda e: e.decrypt(blob, key_id=symmetric).plaintext,
                  lambda d: d.call("decrypt", "Plaintext", CiphertextBlob=blob, KeyId=symmetric)[1],
                  ("aes-gcm open", *ENVELOPE)),
        Operation("DataKey AES_256", "GenerateDataKey, KeySpec AES_256",
                  lambda e: e.generate_data_key(symmetric, key_spec="AES_256").plaintext,
                  lambda d: d.call("generate_data_key", "Plaintext", KeyId=symmetric, KeySpec="AES_256")[1],
                  ("aes-gcm seal", *ENVELOPE)),
        Operation("KeyPair RSA_2048", "GenerateDataKeyPair, KeyPairSpec RSA_2048",
                  lambda e: e.generate_data_key_pair(symmetric, "RSA_2048").private_key_plaintext,
                  _pair("RSA_2048", symmetric), ("RSA-2048 key generation", "aes-gcm seal", *ENVELOPE), weight=4),
        Operation("KeyPair P-256", "GenerateDataKeyPair, KeyPairSpec ECC_NIST_P256",
                  lambda e: e.generate_data_key_pair(symmetric, "ECC_NIST_P256").private_key_plaintext,
                  _pair("ECC_NIST_P256", symmetric), ("P-256 key generation", "aes-gcm seal", *ENVELOPE)),
        Operation("SharedSecret P-256", "DeriveSharedSecret, an ECC_NIST_P256 key",
                  lambda e: e.derive_shared_secret(agreement, peer).shared_secret,
                  lambda d: d.call("derive_shared_secret", "SharedSecret", KeyId=agreement,
                                   KeyAgreementAlgorithm="ECDH", PublicKey=peer)[1],
                  ("P-256 ECDH", *ENVELOPE)),
    ]


def _floor(seconds: float) -> dict[str, float]:
    """Each primitive's best rate (ops/s); the RSA key generation, whose time varies from key to key, as the
    mean over its whole budget."""
    aead = AESGCM(AESGCM.generate_key(bit_length=256))
    nonce, aad = b"n" * 12, b"h" * 29 + b"{}"  # a blob's header (version, key id, nonce) + its context
    sealed = aead.encrypt(nonce, b"k" * 32, aad)
    own = ec.generate_private_key(ec.SECP256R1())
    peer = ec.generate_private_key(ec.SECP256R1()).public_key()
    rates = best_rates({
        **envelope_primitives(),
        "aes-gcm open": lambda: aead.decrypt(nonce, sealed, aad),
        "aes-gcm seal": lambda: aead.encrypt(nonce, b"k" * 32, aad),
        "P-256 key generation": lambda: ec.generate_private_key(ec.SECP256R1()),
        "P-256 ECDH": lambda: own.exchange(ec.ECDH(), peer),
    }, seconds=seconds)
    rates["RSA-2048 key generation"] = rate(lambda: rsa.generate_private_key(65537, 2048), seconds=seconds,
                                            warmup=1)
    return rates


#: each floor primitive: its row's name, and what it stands for
_FLOOR_ROWS = {
    "decrypt": ("RSA-2048 OAEP decrypt", "the enclave opens the envelope"),
    "encrypt": ("RSA-2048 OAEP encrypt", "KMS builds the envelope"),
    "verify": ("P-384 ECDSA verify", "KMS checks the document (warm chain)"),
    "aes-gcm open": ("AES-256-GCM open, 32 B", "KMS opens a CiphertextBlob (Decrypt)"),
    "aes-gcm seal": ("AES-256-GCM seal, 32 B", "KMS seals a new CiphertextBlob"),
    "P-256 key generation": ("P-256 key generation", "a data key pair"),
    "RSA-2048 key generation": ("RSA-2048 key generation", "a data key pair; mean over the budget (it varies)"),
    "P-256 ECDH": ("P-256 ECDH", "KMS derives the shared secret"),
}


def run(seconds: float = 2.0) -> list[Row]:
    """Measure, spending about ``seconds`` on each operation and concurrency (both paths); return the rows."""
    import boto3

    floor = _floor(seconds)
    rows = [row(f"floor: {_FLOOR_ROWS[name][0]}", ops, "ops/s", note=_FLOOR_ROWS[name][1])
            for name, ops in floor.items()]
    results: dict[tuple[str, int], Measured] = {}
    peer = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    rsa_key = rsa.generate_private_key(65537, 2048)
    rsa_pair = (rsa_key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()),
                rsa_key.public_key().public_bytes(serialization.Encoding.DER,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo), "RSA_2048")
    with processes() as (kms, parent):
        session = boto3.session.Session()
        operations = _operations(*_keys(kms.first_line, session), peer)
        most = max(CONCURRENCY)
        enclaves = [KmsClient(nsm=SimulatedNsm(), parent=parent.first_line, identity=KEEP_IDENTITY)
                    for _ in range(most)]
        directs = [Direct(kms.first_line, session) for _ in range(most)]
        try:
            for operation in operations:  # identities made, connections open, models loaded, each call once
                for enclave, direct in zip(enclaves, directs, strict=True):
                    operation.through(enclave)
                    operation.direct(direct)
            for operation in operations:
                for concurrency in CONCURRENCY:
                    paths: dict[str, list[Caller]] = {
                        "parent": [_bind(operation.through, enclave) for enclave in enclaves[:concurrency]],
                        "direct": [_bind(operation.direct, direct) for direct in directs[:concurrency]],
                    }
                    results[operation.name, concurrency] = measure(paths, seconds=seconds * operation.weight / 2,
                                                                   rounds=ROUNDS,
                                                                   kms=kms, parent=parent)
        finally:
            for enclave in enclaves:
                enclave.close()

    for operation in operations:
        floor_us = sum(1e6 / floor[name] for name in operation.floor)
        rows.append(row(f"{operation.name}: floor", 1e6 / floor_us, "calls/s", ratio=1.0,
                        note=f"{floor_us / 1000:.2f} ms on one core: {' + '.join(operation.floor)}; "
                             f"{operation.title}"))
        for concurrency in CONCURRENCY:
            rows += path_rows(f"{operation.name} x{concurrency}", results[operation.name, concurrency], floor_us,
                              spread=True)
        if "RSA-2048 key generation" in operation.floor:
            check = rate(lambda: _check_key_pair(*rsa_pair), seconds=seconds / 2)
            rows.append(row(f"{operation.name}: the client's key-pair check", 1000 / check, "ms",
                            ratio=1e6 / check / floor_us, note="load_der_private_key + PublicKey match; in both "
                            "paths, not in the floor"))
        measured = [results[operation.name, concurrency] for concurrency in CONCURRENCY]
        cpu = {name: sum(m.cpu[name] for m in measured) for name in ("parent", "kms")}
        rows += cpu_rows(f"{operation.name}: ", cpu, sum(len(m.paths["parent"].latencies) for m in measured),
                         floor_us)
    return rows


def _bind(call: Callable[[Any], object], target: object) -> Caller:
    return lambda: call(target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0,
                        help="time budget per operation and concurrency (both paths)")
    args = parser.parse_args()
    rows: list[Any] = run(args.seconds)
    print_table(f"Key operations with Recipient ({machine()})", rows)


if __name__ == "__main__":
    main()
