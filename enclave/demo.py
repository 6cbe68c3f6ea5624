"""``nitrokit demo``: a whole KMS flow with a Recipient, offline, with real processes and sockets.

1. a simulated KMS (the real KMS JSON protocol over HTTP, SigV4, attestation checked against the fixture
   root) on a loopback port, with the KMS key the operation needs made by boto3 (CreateKey, and Encrypt of a
   sample plaintext for Decrypt);
2. the parent as a separate ``nitrokit parent`` process on a Unix socket;
3. the enclave client in this process with a simulated NSM: ephemeral RSA key, attestation document, the
   operation with Recipient through the parent, CiphertextForRecipient decrypted here.

``--mode`` picks how the parent takes part. relay (the default): the parent calls KMS with boto3 for the
enclave. tunnel: the simulated KMS serves HTTPS with a certificate from the fixture TLS CA, the parent only
relays bytes to it (allow-listed in a vsock-proxy YAML file) and hands the enclave credentials over a second
socket, and the enclave runs TLS (trusting the fixture CA), SigV4 and the KMS protocol itself.

``--operation`` picks the flow: generate-random (the default), decrypt, generate-data-key,
generate-data-key-pair or derive-shared-secret. The parent only ever handles the attestation document and the
CMS envelope (in tunnel mode, only TLS records), never the secret. The demo prints the secret it opened (that
is its purpose); for a key pair, only the public key's fingerprint and the private key's size.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from nitrokit._extras import require_extra
from nitrokit.cli._io import EXIT_OK
from nitrokit.enclave.kms_client import KmsClient
from nitrokit.errors import UsageError
from nitrokit.kms_api import NUMBER_OF_BYTES_RANGE

DEFAULT_BYTES = 32
OPERATIONS = ("generate-random", "decrypt", "generate-data-key", "generate-data-key-pair", "derive-shared-secret")
MODES = ("relay", "tunnel")
REGION = "us-east-1"
#: the operations --bytes applies to
_SIZED = ("generate-random", "generate-data-key")
SAMPLE_PLAINTEXT = b"a secret only the enclave may read"
DEMO_CONTEXT = {"purpose": "nitrokit-demo"}
KEY_PAIR_SPEC = "ECC_NIST_P256"

Trace = Callable[[str], None]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "demo", help="run a whole KMS flow offline (GenerateRandom by default): simulated KMS <- parent <- enclave "
                     "client",
        description=(__doc__ or "").replace("``", ""), formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--operation", choices=OPERATIONS, default=OPERATIONS[0],
                        help="which flow to show (default generate-random)")
    parser.add_argument("--mode", choices=MODES, default=MODES[0],
                        help="relay (default): the parent calls KMS for the enclave; tunnel: the enclave runs TLS "
                             "to KMS through the parent's byte relay")
    parser.add_argument("--bytes", type=int, default=None, metavar="N",
                        help=f"how many bytes ({NUMBER_OF_BYTES_RANGE}), default {DEFAULT_BYTES}: generate-random "
                             "and generate-data-key only")
    parser.add_argument("--json", action="store_true", help="print one JSON object (secret: base64)")
    parser.set_defaults(handler=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    operation: str = args.operation
    if args.bytes is not None and operation not in _SIZED:
        raise UsageError(f"--bytes is for {' and '.join(_SIZED)}; {operation} has its own size")
    number_of_bytes = DEFAULT_BYTES if args.bytes is None else args.bytes
    # Test support, loaded only when the demo runs: the simulated KMS and the parent process it starts (the
    # demo extra brings both); a missing extra is named before anything starts.
    require_extra("demo")
    from nitrokit.enclave.nsm.simulated import SimulatedNsm
    from nitrokit.kms import SimulatedKms

    steps: list[str] = []
    started = time.monotonic()

    def trace(message: str) -> None:
        line = f"[{(time.monotonic() - started) * 1000:7.1f} ms] {message}"
        steps.append(line)
        if not args.json:
            print(line, flush=True)

    tunnel = args.mode == "tunnel"
    with tempfile.TemporaryDirectory(prefix="nitrokit-demo-") as scratch, SimulatedKms(tls=tunnel) as kms:
        trace(f"simulated KMS listening at {kms.url} (attestation checked against the fixture root"
              + (f"; TLS certificate from the fixture TLS CA {kms.ca_file})" if tunnel else ")"))
        flow = _FLOWS[operation](kms.client(), trace, number_of_bytes)
        with _parent(Path(scratch), kms, tunnel=tunnel) as (parent, client_options):
            pid = parent.process.pid if parent.process else "?"
            if tunnel:
                trace(f"parent byte relay (pid {pid}) listening at {parent.first_line}, relaying TLS records to the "
                      f"simulated KMS; credentials channel at {parent.lines[1]}")
            else:
                trace(f"parent proxy (pid {pid}) listening at {parent.first_line}, relaying to KMS with boto3")
            with SimulatedNsm() as nsm, KmsClient(nsm=nsm, parent=parent.first_line, trace=trace,
                                                  **client_options) as client:
                trace(f"enclave: simulated NSM, module {nsm.describe_nsm().module_id}")
                report, line = flow(client)
        trace("parent stopped (SIGTERM); simulated KMS stopped")

    if args.json:
        print(json.dumps({**report, "mode": args.mode, "steps": steps}))
    else:
        print(line)
    return EXIT_OK


@contextlib.contextmanager
def _parent(scratch: Path, kms: Any, *, tunnel: bool) -> Iterator[tuple[Any, dict[str, Any]]]:
    """The parent as a ``nitrokit parent`` process for ``kms``; yields it and the enclave client's options."""
    from nitrokit.testing.processes import NitrokitProcess, simulator_environment

    env = simulator_environment()
    if not tunnel:
        with NitrokitProcess("parent", "--listen", f"unix://{scratch / 'parent.sock'}", "--endpoint-url", kms.url,
                             "--region", REGION, env=env) as parent:
            yield parent, {}
        return
    host, port = kms.address
    allow_list = scratch / "vsock-proxy.yaml"  # AWS vsock-proxy's format: the parent reads it as vsock-proxy does
    allow_list.write_text(f"allowlist:\n- {{address: {host}, port: {port}}}\n", encoding="utf-8")
    with NitrokitProcess("parent", "--mode", "tunnel", "--listen", f"unix://{scratch / 'tunnel.sock'}",
                         "--target", f"{host}:{port}", "--allow-list", str(allow_list), "--credentials-listen",
                         f"unix://{scratch / 'credentials.sock'}", "--region", REGION, env=env, lines=2) as parent:
        # The TLS server name is the real endpoint's: the simulator's certificate names it, the fixture CA signs
        # that certificate, and the enclave trusts only that CA.
        yield parent, {"mode": "tunnel", "region": REGION, "kms_host": f"kms.{REGION}.amazonaws.com",
                       "ca_file": kms.ca_file, "credentials": parent.lines[1]}


# Each flow: given boto3 on the simulated KMS, make what the operation needs; then, given the enclave client,
# call it and return (the --json members without "steps", the last line of the text output).
Result = tuple[dict[str, Any], str]
Flow = Callable[[KmsClient], Result]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _generate_random(_boto: Any, _trace: Trace, number_of_bytes: int) -> Flow:
    def call(client: KmsClient) -> Result:
        random_bytes = client.generate_random(number_of_bytes)
        return ({"random": _b64(random_bytes), "bytes": len(random_bytes)},
                f"random ({len(random_bytes)} bytes): {random_bytes.hex()}")
    return call


def _symmetric_key(boto: Any, trace: Trace) -> str:
    arn = str(boto.create_key(Description="nitrokit demo")["KeyMetadata"]["Arn"])
    trace(f"KMS: CreateKey made a SYMMETRIC_DEFAULT key {arn} (default key policy)")
    return arn


def _decrypt(boto: Any, trace: Trace, _number_of_bytes: int) -> Flow:
    arn = _symmetric_key(boto, trace)
    blob = boto.encrypt(KeyId=arn, Plaintext=SAMPLE_PLAINTEXT, EncryptionContext=DEMO_CONTEXT)["CiphertextBlob"]
    trace(f"KMS: Encrypt of a {len(SAMPLE_PLAINTEXT)}-byte sample plaintext under it, encryption context "
          f"{DEMO_CONTEXT}: a {len(blob)}-byte ciphertext blob for the enclave")

    def call(client: KmsClient) -> Result:
        opened = client.decrypt(blob, key_id=arn, encryption_context=DEMO_CONTEXT)
        trace(f"enclave: the plaintext {'is' if opened.plaintext == SAMPLE_PLAINTEXT else 'is NOT'} the sample "
              "encrypted above")
        return ({"operation": "decrypt", "plaintext": _b64(opened.plaintext), "bytes": len(opened.plaintext),
                 "KeyId": opened.key_id, "EncryptionAlgorithm": opened.encryption_algorithm},
                f"plaintext ({len(opened.plaintext)} bytes): {opened.plaintext.hex()}")
    return call


def _generate_data_key(boto: Any, trace: Trace, number_of_bytes: int) -> Flow:
    arn = _symmetric_key(boto, trace)

    def call(client: KmsClient) -> Result:
        data_key = client.generate_data_key(arn, number_of_bytes=number_of_bytes, encryption_context=DEMO_CONTEXT)
        trace(f"enclave: keep the {len(data_key.ciphertext_blob)}-byte CiphertextBlob; Decrypt gives the data key "
              "back")
        return ({"operation": "generate-data-key", "plaintext": _b64(data_key.plaintext),
                 "bytes": len(data_key.plaintext), "CiphertextBlob": _b64(data_key.ciphertext_blob),
                 "KeyId": data_key.key_id},
                f"data key ({len(data_key.plaintext)} bytes): {data_key.plaintext.hex()}")
    return call


def _generate_data_key_pair(boto: Any, trace: Trace, _number_of_bytes: int) -> Flow:
    arn = _symmetric_key(boto, trace)

    def call(client: KmsClient) -> Result:
        pair = client.generate_data_key_pair(arn, KEY_PAIR_SPEC, encryption_context=DEMO_CONTEXT)
        fingerprint = hashlib.sha256(pair.public_key).hexdigest()
        trace(f"enclave: the private key is the private half of the {KEY_PAIR_SPEC} PublicKey KMS answered; keep "
              f"the {len(pair.private_key_ciphertext_blob)}-byte PrivateKeyCiphertextBlob")
        return ({"operation": "generate-data-key-pair", "KeyPairSpec": pair.key_pair_spec,
                 "PublicKey": _b64(pair.public_key), "public_key_sha256": fingerprint,
                 "private_key_bytes": len(pair.private_key_plaintext),
                 "PrivateKeyCiphertextBlob": _b64(pair.private_key_ciphertext_blob), "KeyId": pair.key_id},
                f"key pair {pair.key_pair_spec}: public key SHA-256 {fingerprint}; private key "
                f"{len(pair.private_key_plaintext)} bytes (PKCS#8 DER, opened inside the enclave, not shown)")
    return call


def _derive_shared_secret(boto: Any, trace: Trace, _number_of_bytes: int) -> Flow:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    arn = str(boto.create_key(KeySpec="ECC_NIST_P256", KeyUsage="KEY_AGREEMENT",
                              Description="nitrokit demo")["KeyMetadata"]["Arn"])
    trace(f"KMS: CreateKey made an ECC_NIST_P256 KEY_AGREEMENT key {arn}")
    peer = ec.generate_private_key(ec.SECP256R1())
    peer_public = peer.public_key().public_bytes(serialization.Encoding.DER,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)
    trace("peer: a P-256 key pair of its own; it sends the enclave its public key")

    def call(client: KmsClient) -> Result:
        derived = client.derive_shared_secret(arn, peer_public)
        kms_public = serialization.load_der_public_key(boto.get_public_key(KeyId=arn)["PublicKey"])
        same = isinstance(kms_public, ec.EllipticCurvePublicKey) and peer.exchange(ec.ECDH(), kms_public) == \
            derived.shared_secret
        trace(f"peer: its own ECDH with the KMS key's public key (GetPublicKey) {'gives' if same else 'does NOT give'}"
              " the same secret")
        return ({"operation": "derive-shared-secret", "shared_secret": _b64(derived.shared_secret),
                 "bytes": len(derived.shared_secret), "KeyId": derived.key_id,
                 "KeyAgreementAlgorithm": derived.key_agreement_algorithm},
                f"shared secret ({len(derived.shared_secret)} bytes): {derived.shared_secret.hex()}")
    return call


_FLOWS: dict[str, Callable[[Any, Trace, int], Flow]] = {
    "generate-random": _generate_random,
    "decrypt": _decrypt,
    "generate-data-key": _generate_data_key,
    "generate-data-key-pair": _generate_data_key_pair,
    "derive-shared-secret": _derive_shared_secret,
}
