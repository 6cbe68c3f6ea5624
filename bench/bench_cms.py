"""CMS envelopes (KMS CiphertextForRecipient) opened and built per second, beside the raw RSA they rest on.

    python bench/bench_cms.py [--seconds S]

Opening an envelope is one RSA-2048 OAEP decryption plus parsing, a recipient check, AES-256-CBC and
unpadding; the target (issue 3) is >= 0.9 x raw RSA-2048 OAEP decryptions per second measured in the same
run. Building is one RSA public-key operation plus AES and framing, shown beside raw OAEP encryptions.
Every figure is the best of several interleaved rounds, so a burst of load elsewhere hits all alike.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common.cms import decrypt, encrypt_for_recipient, parse_enveloped_data
from common.cms._build import OAEP_SHA256
from common.cms._parse import _parse_general

Row = dict[str, Any]
OPEN_TARGET = 0.9


def _rate(operation: Callable[[], object], seconds: float) -> float:
    operation()  # warm-up
    calls = 0
    start = time.perf_counter()
    while True:
        operation()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return calls / elapsed


def _best_rates(operations: dict[str, Callable[[], object]], seconds: float, rounds: int = 5) -> dict[str, float]:
    best = dict.fromkeys(operations, 0.0)
    for _ in range(rounds):
        for name, operation in operations.items():
            best[name] = max(best[name], _rate(operation, seconds / rounds))
    return best


def _row(name: str, value: float, unit: str, *, ratio: float | None = None, note: str = "") -> Row:
    return {"name": name, "value": value, "unit": unit, "ratio": ratio, "note": note}


def run(seconds: float = 2.0) -> list[Row]:
    """Measure, spending about ``seconds`` on each figure; return the table's rows."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key()
    spki = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    envelope = encrypt_for_recipient(b"k" * 32, spki)  # a GenerateDataKey-sized payload
    envelope_4k = encrypt_for_recipient(b"r" * 4096, spki)
    wrapped_key = parse_enveloped_data(envelope).encrypted_key
    content_key = b"c" * 32

    rates = _best_rates({
        "raw_decrypt": lambda: key.decrypt(wrapped_key, OAEP_SHA256),
        "open": lambda: decrypt(envelope, key),
        "open_4k": lambda: decrypt(envelope_4k, key),
        "open_general": lambda: decrypt(_parse_general(envelope), key),
        "raw_encrypt": lambda: public.encrypt(content_key, OAEP_SHA256),
        "build": lambda: encrypt_for_recipient(b"k" * 32, spki),
        "build_4k": lambda: encrypt_for_recipient(b"r" * 4096, public),
    }, seconds=7 * seconds)
    raw_decrypt, raw_encrypt = rates["raw_decrypt"], rates["raw_encrypt"]
    return [
        _row("raw RSA-2048 OAEP-SHA256 decrypt", raw_decrypt, "ops/s", note="cryptography (OpenSSL)"),
        _row("envelope open, 32 B", rates["open"], "env/s", ratio=rates["open"] / raw_decrypt,
             note=f"target >= {OPEN_TARGET:.2f}x raw decrypt"),
        _row("envelope open, 4 KiB", rates["open_4k"], "env/s", ratio=rates["open_4k"] / raw_decrypt),
        _row("envelope open, 32 B, general BER path", rates["open_general"], "env/s",
             ratio=rates["open_general"] / raw_decrypt, note="asn1crypto parse (non-KMS layouts)"),
        _row("raw RSA-2048 OAEP-SHA256 encrypt", raw_encrypt, "ops/s", note="cryptography (OpenSSL)"),
        _row("envelope build, 32 B, DER SPKI", rates["build"], "env/s", ratio=rates["build"] / raw_encrypt),
        _row("envelope build, 4 KiB, key object", rates["build_4k"], "env/s",
             ratio=rates["build_4k"] / raw_encrypt),
    ]


def print_table(title: str, rows: list[Row]) -> None:
    print(f"\n{title}")
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        ratio = f"{r['ratio']:.2f}x" if r["ratio"] is not None else ""
        print(f"  {r['name']:<{width}}  {r['value']:>10,.0f} {r['unit']:<6} {ratio:>6}  {r['note']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0, help="time budget per figure")
    args = parser.parse_args()
    print_table("CMS envelopes (CiphertextForRecipient), RSA-2048", run(args.seconds))


if __name__ == "__main__":
    main()
