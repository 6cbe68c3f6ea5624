"""The PCR facts (32 registers, values of 32/48/64 bytes, Nitro's 48) are nitrokit.attestation's, used everywhere.

The attestation parser and Policy, the NSM client and simulator, the simulated KMS's conditions, the policy
statement generator, the EIF measurements and the enclave CLI must all agree on where PCR indices end and
how long a PCR is; a literal copy drifting in one of them fails here.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
from collections.abc import Callable

import pytest

from nitrokit import policy_statements
from nitrokit.attestation import PCR_BYTES, PCR_COUNT, PCR_LENGTHS, Policy, parse_document
from nitrokit.eif._signature import pcr_extend_from_zero
from nitrokit.enclave import cli as enclave_cli
from nitrokit.enclave import nsm as enclave_nsm
from nitrokit.enclave.cli import Subparsers
from nitrokit.enclave.nsm.errors import NsmError
from nitrokit.enclave.nsm.simulated import SimulatedNsm
from nitrokit.errors import NitrokitError, UsageError
from nitrokit.kms.conditions import AttestationConditions
from nitrokit.kms.errors import KmsConfigError
from tests.conftest import REPO


def test_one_set_of_pcr_constants() -> None:
    """Only the attestation parser writes the PCR facts as numbers; every other module takes them from it.

    (Comparing the values, or ``is`` on small ints, would pass for a second literal 48 as well.)
    """
    literal: dict[str, list[str]] = {}
    for path in sorted(p for folder in ("common", "enclave", "parent") for p in (REPO / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant | ast.Call | ast.Set):
                for target in node.targets:
                    if isinstance(target, ast.Name) and target.id in _PCR_FACTS:
                        literal.setdefault(target.id, []).append(str(path.relative_to(REPO)))
    assert literal == {name: ["common/attestation/_parse.py"] for name in _PCR_FACTS}
    assert enclave_nsm.PCR_BYTES == PCR_BYTES and PCR_BYTES in PCR_LENGTHS


_PCR_FACTS = ("PCR_COUNT", "PCR_BYTES", "PCR_LENGTHS")


def test_the_simulated_nsm_has_pcr_count_registers_of_pcr_bytes() -> None:
    with SimulatedNsm() as nsm:
        assert nsm.describe_nsm().max_pcrs == PCR_COUNT
        assert len(nsm.describe_pcr(PCR_COUNT - 1).data) == PCR_BYTES
        with pytest.raises(NsmError):
            nsm.describe_pcr(PCR_COUNT)
        document = parse_document(nsm.attestation())
    assert all(len(value) == PCR_BYTES for value in document.pcrs.values())


def test_every_pcr_index_check_ends_at_pcr_count() -> None:
    value = bytes(PCR_BYTES)
    Policy(pcrs={PCR_COUNT - 1: value})
    AttestationConditions.require(pcrs={PCR_COUNT - 1: value})
    policy_statements.build_statement(pcrs={PCR_COUNT - 1: bytes([1]) * PCR_BYTES})
    with pytest.raises(UsageError):
        Policy(pcrs={PCR_COUNT: value})
    with pytest.raises(KmsConfigError):
        AttestationConditions.require(pcrs={PCR_COUNT: value})
    with pytest.raises(NitrokitError):
        policy_statements.build_statement(pcrs={PCR_COUNT: bytes([1]) * PCR_BYTES})


@pytest.mark.parametrize("length", sorted({*PCR_LENGTHS, 31, 47, 65}))
def test_policy_lengths_are_the_parser_lengths(length: int) -> None:
    if length in PCR_LENGTHS:
        Policy(pcrs={0: bytes([1]) * length})
    else:
        with pytest.raises(UsageError, match="expected 32, 48 or 64"):
            Policy(pcrs={0: bytes([1]) * length})


def test_eif_measurements_start_from_a_zero_pcr_of_pcr_bytes() -> None:
    digest = hashlib.sha384(b"x").digest()
    assert pcr_extend_from_zero(digest) == hashlib.sha384(bytes(PCR_BYTES) + digest).digest()


def _help_of(add: Callable[[Subparsers], None], command: str) -> str:
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers()
    add(commands)
    return commands.choices[command].format_help()


def test_the_enclave_cli_prints_the_pcr_ranges() -> None:
    assert f"0..{PCR_COUNT - 1}" in _help_of(enclave_cli._add_describe_pcr, "describe-pcr")
    extend = " ".join(_help_of(enclave_cli._add_extend_pcr, "extend-pcr").split())
    assert f"{enclave_nsm.BOOT_LOCKED_PCRS}..{PCR_COUNT - 1}" in extend and f"{PCR_BYTES} zero bytes" in extend
