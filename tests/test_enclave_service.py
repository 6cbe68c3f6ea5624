"""The enclave service end to end on the simulated stack: KMS seed at start, Attest answered with documents.

simulated KMS <- parent process <- ``nitrokit enclave serve`` process <- a client speaking the wire protocol.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from nitrokit.attestation import Policy, PolicyError, Verifier
from nitrokit.enclave.service import derive_identity_key
from nitrokit.kms import AttestationConditions, SimulatedKms
from nitrokit.testing import fixture_pki
from nitrokit.testing.processes import NitrokitProcess, ProcessStartError, simulator_environment
from nitrokit.wire.client import WireClient
from nitrokit.wire.errors import ErrorCode, RemoteError
from nitrokit.wire.service import SERVICE_OPERATIONS, attest_request, parse_attest_response


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SimulatedKms, str, Path]]:
    folder = tmp_path_factory.mktemp("service")
    with SimulatedKms() as kms, NitrokitProcess(
            "parent", "--listen", f"unix://{folder / 'parent.sock'}", "--endpoint-url", kms.url,
            "--region", "us-east-1", env=simulator_environment()) as parent:
        yield kms, parent.first_line, folder


@pytest.fixture(scope="module")
def service(stack: tuple[SimulatedKms, str, Path]) -> Iterator[NitrokitProcess]:
    _, parent, folder = stack
    with NitrokitProcess("enclave", "serve", "--listen", f"unix://{folder / 'service.sock'}", "--parent", parent,
                         "--nsm", "simulated") as process:
        yield process


def _attest(address: str, nonce: bytes) -> bytes:
    with WireClient(address, operations=SERVICE_OPERATIONS) as client:
        return parse_attest_response(client.call("Attest", attest_request(nonce)))


def test_an_attestation_request_is_answered_with_the_nonce_echoed(service: NitrokitProcess) -> None:
    nonce = os.urandom(32)
    result = Verifier(root=fixture_pki().root).verify(_attest(service.first_line, nonce), policy=Policy(nonce=nonce))
    key = serialization.load_der_public_key(result.document.public_key or b"")
    assert isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP384R1)


def test_the_identity_is_stable_and_the_nonce_is_the_callers(service: NitrokitProcess) -> None:
    verifier = Verifier(root=fixture_pki().root)
    first = verifier.verify(_attest(service.first_line, b"one"), policy=Policy.any_enclave_image()).document
    second = verifier.verify(_attest(service.first_line, b"two"), policy=Policy.any_enclave_image()).document
    assert first.public_key == second.public_key
    assert (first.nonce, second.nonce) == (b"one", b"two")
    with pytest.raises(PolicyError):
        verifier.verify(_attest(service.first_line, b"three"), policy=Policy(nonce=b"one"))


def test_the_service_used_kms_with_a_recipient(stack: tuple[SimulatedKms, str, Path],
                                               service: NitrokitProcess) -> None:
    kms, _, _ = stack
    assert kms.outcomes().get("ok", 0) >= 1


@pytest.mark.parametrize("request_json", [{}, {"Nonce": ""}, {"Nonce": "!!"}, {"Nonce": "AA==", "Extra": 1}])
def test_bad_requests_get_invalid_request(service: NitrokitProcess, request_json: dict[str, object]) -> None:
    with WireClient(service.first_line, operations=SERVICE_OPERATIONS) as client, \
            pytest.raises(RemoteError) as info:
        client.call("Attest", request_json)
    assert info.value.code == ErrorCode.INVALID_REQUEST
    assert len(_attest(service.first_line, b"still serving")) > 1000


def test_kms_operations_are_not_served(service: NitrokitProcess) -> None:
    with WireClient(service.first_line) as client, pytest.raises(RemoteError) as info:
        client.call("GenerateRandom", {"NumberOfBytes": 8})
    assert info.value.code == ErrorCode.UNKNOWN_OPERATION


def test_the_service_does_not_start_without_its_seed(stack: tuple[SimulatedKms, str, Path]) -> None:
    kms, parent, folder = stack
    kms.set_conditions(AttestationConditions.require(pcrs={0: "00" * 48}))
    try:
        process = NitrokitProcess("enclave", "serve", "--listen", f"unix://{folder / 'denied.sock'}",
                                  "--parent", parent, "--nsm", "simulated")
        with pytest.raises(ProcessStartError, match="AccessDeniedException"):
            process.start()
        assert process.process is not None and process.process.returncode == 1
    finally:
        kms.set_conditions(None)


def test_sigterm_stops_it_cleanly(stack: tuple[SimulatedKms, str, Path]) -> None:
    _, parent, folder = stack
    process = NitrokitProcess("enclave", "serve", "--listen", f"unix://{folder / 'stop.sock'}", "--parent", parent,
                              "--nsm", "simulated")
    process.start()
    assert len(_attest(process.first_line, b"x")) > 1000
    assert process.stop() == 0
    assert not (folder / "stop.sock").exists()


def test_identity_derivation_is_deterministic_and_seed_bound() -> None:
    one = derive_identity_key(b"\x01" * 32).private_numbers().private_value
    assert one == derive_identity_key(b"\x01" * 32).private_numbers().private_value
    assert one != derive_identity_key(b"\x02" * 32).private_numbers().private_value


def test_the_identity_signs_and_the_attested_key_verifies(service: NitrokitProcess) -> None:
    from nitrokit.wire.service import parse_sign_response, sign_request, verify_service_signature

    document = Verifier(root=fixture_pki().root).verify(_attest(service.first_line, b"n"),
                                                   policy=Policy.any_enclave_image()).document
    assert document.public_key is not None
    with WireClient(service.first_line, operations=SERVICE_OPERATIONS) as client:
        signature = parse_sign_response(client.call("Sign", sign_request(b"hello enclave")))
    assert verify_service_signature(document.public_key, b"hello enclave", signature)
    assert not verify_service_signature(document.public_key, b"hello enclavE", signature)
