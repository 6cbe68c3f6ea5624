"""`nitrokit policy` output loads as it is: as a key's policy in the simulated KMS (CreateKey, PutKeyPolicy),
as the GenerateRandom conditions of `nitrokit kms-sim --policy`, and in `nitrokit kms-sim explain`; and in each
it admits this enclave's PCR0 and refuses another one (AccessDeniedException / DENY)."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from cryptography.hazmat.primitives.asymmetric import ec

from nitrokit import cli
from nitrokit.enclave.errors import KmsCallError
from nitrokit.enclave.kms_client import KmsClient, RetryPolicy
from nitrokit.enclave.nsm import SimulatedNsm
from nitrokit.errors import UsageError
from nitrokit.policy_statements import ADMIN_SID, DEFAULT_SID, build_document, build_statement
from nitrokit.testing.documents import default_pcrs
from nitrokit.testing.processes import NitrokitProcess, simulator_environment
from tests import test_e2e_key_operations as key_operations
from tests.kms_helpers import error_of
from tests.test_kms_support import good_document, recipient, spki

ROLE = "arn:aws:iam::111122223333:role/enclave-app"
#: one PCR0 for both kinds of document here: the simulated NSM's (the enclave client's) and the fixture builder's
PCR0 = SimulatedNsm().describe_pcr(0).data.hex()
OTHER_PCR0 = b"\x77" * 48
FAST_RETRY = RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.02)
# the fixtures: the simulated KMS, and a real parent process in front of it, as the key operations' e2e tests use
simulator = key_operations.simulator
sim_parent = key_operations.sim_parent


def nitrokit_policy(*args: str) -> str:
    """What `nitrokit policy ARGS` prints, exactly (the real command, in this process)."""
    out = io.StringIO()
    with redirect_stdout(out):
        assert cli.main(["policy", *args]) == 0
    return out.getvalue()


def this_document() -> bytes:
    return good_document(pcrs={**default_pcrs(), 0: bytes.fromhex(PCR0)})


def other_document() -> bytes:
    return good_document(pcrs={**default_pcrs(), 0: OTHER_PCR0})


def key_policy(action: str) -> str:
    return nitrokit_policy("--document", "--role-arn", ROLE, "--action", action, "--pcr", f"0={PCR0}")


def test_the_document_shapes() -> None:
    document = json.loads(key_policy("kms:Decrypt"))
    assert document["Version"] == "2012-10-17"
    admin, bound = document["Statement"]
    assert admin == {"Sid": ADMIN_SID, "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
                     "NotAction": ["kms:Decrypt"], "Resource": "*"}
    assert bound == build_statement(pcrs={0: PCR0}, role_arn=ROLE, actions=["kms:Decrypt"])
    other_admin = "arn:aws:iam::111122223333:role/key-admins"
    assert json.loads(nitrokit_policy("--document", "--role-arn", ROLE, "--action", "kms:Decrypt", "--pcr",
                                      f"0={PCR0}", "--admin-arn", other_admin))["Statement"][0]["Principal"] == {
        "AWS": other_admin}
    iam = json.loads(nitrokit_policy("--document", "--pcr", f"0={PCR0}"))
    assert iam == {"Version": "2012-10-17", "Statement": [build_statement(pcrs={0: PCR0})]}
    assert iam["Statement"][0]["Sid"] == DEFAULT_SID
    assert cli.main(["policy", "--pcr", f"0={PCR0}", "--admin-arn", other_admin]) == 2  # without --document
    with pytest.raises(UsageError, match="only for a key policy"):
        build_document(build_statement(pcrs={0: PCR0}), admin_arn=other_admin)


def test_a_lone_statement_fails_the_lockout_check_the_document_passes(simulator: Any) -> None:
    """Why --document exists: the statement alone would lock the account out of the key, which KMS refuses."""
    statement = nitrokit_policy("--role-arn", ROLE, "--action", "kms:Decrypt", "--pcr", f"0={PCR0}")
    assert error_of(simulator.client().create_key, Policy=statement)[0] == "MalformedPolicyDocumentException"
    assert simulator.client().create_key(Policy=key_policy("kms:Decrypt"))["KeyMetadata"]["KeyId"]


def _ecc_peer() -> bytes:
    return spki(ec.generate_private_key(ec.SECP256R1()))


def test_each_key_operation_under_its_own_document_through_the_parent(simulator: Any, sim_parent: str) -> None:
    """One key per action, its policy `nitrokit policy --document` output as it is: this enclave is served, an
    enclave with another PCR0 is refused; the account (boto3, no Recipient) is refused too, since the
    administrators' statement leaves the bound action out."""
    boto = simulator.client()
    keys = {action: boto.create_key(Policy=key_policy(action), **create)["KeyMetadata"]["Arn"]
            for action, create in (("kms:Decrypt", {}), ("kms:GenerateDataKey", {}),
                                   ("kms:GenerateDataKeyPair", {}),
                                   ("kms:DeriveSharedSecret", {"KeySpec": "ECC_NIST_P256",
                                                               "KeyUsage": "KEY_AGREEMENT"}))}
    # Encrypt is the administrators' (the Decrypt key's policy binds Decrypt only).
    blob = boto.encrypt(KeyId=keys["kms:Decrypt"], Plaintext=b"sealed")["CiphertextBlob"]
    peer = _ecc_peer()
    calls: dict[str, Callable[[KmsClient], bytes]] = {
        "kms:Decrypt": lambda c: c.decrypt(blob, key_id=keys["kms:Decrypt"]).plaintext,
        "kms:GenerateDataKey": lambda c: c.generate_data_key(keys["kms:GenerateDataKey"], key_spec="AES_256").plaintext,
        "kms:GenerateDataKeyPair": lambda c: c.generate_data_key_pair(
            keys["kms:GenerateDataKeyPair"], "ECC_NIST_P256").private_key_plaintext,
        "kms:DeriveSharedSecret": lambda c: c.derive_shared_secret(keys["kms:DeriveSharedSecret"], peer).shared_secret,
    }
    refused = {}
    with KmsClient(nsm=SimulatedNsm(), parent=sim_parent, retry=FAST_RETRY) as this_image, \
            KmsClient(nsm=SimulatedNsm(pcrs={0: OTHER_PCR0}), parent=sim_parent, retry=FAST_RETRY) as other_image:
        for action, call in calls.items():
            assert call(this_image)
            with pytest.raises(KmsCallError) as info:
                call(other_image)
            refused[action] = (info.value.code, info.value.retryable)
    assert refused == dict.fromkeys(calls, ("AccessDeniedException", False))
    assert error_of(boto.decrypt, CiphertextBlob=blob)[0] == "AccessDeniedException"


def test_put_key_policy_takes_the_document_as_it_is(simulator: Any) -> None:
    boto = simulator.client()
    key = boto.create_key()["KeyMetadata"]["KeyId"]
    boto.put_key_policy(KeyId=key, PolicyName="default", Policy=key_policy("kms:GenerateDataKey"))
    document = this_document()
    assert "CiphertextForRecipient" in boto.generate_data_key(KeyId=key, KeySpec="AES_256",
                                                              Recipient=recipient(document))
    other = other_document()
    assert error_of(boto.generate_data_key, KeyId=key, KeySpec="AES_256",
                    Recipient=recipient(other))[0] == "AccessDeniedException"


@pytest.mark.parametrize("form", ["statement", "document"])
def test_generate_random_iam_output_as_kms_sim_policy(tmp_path: Path, form: str) -> None:
    """`nitrokit kms-sim --policy FILE` (a real process) with `nitrokit policy` output as it is."""
    path = tmp_path / "iam.json"
    path.write_text(nitrokit_policy(*(["--document"] if form == "document" else []), "--pcr", f"0={PCR0}"))
    with NitrokitProcess("kms-sim", "--policy", str(path), env=simulator_environment()) as kms:
        from nitrokit.kms import DEFAULT_ACCESS_KEY

        boto = boto3.client("kms", endpoint_url=kms.first_line, region_name="us-east-1",
                            aws_access_key_id=DEFAULT_ACCESS_KEY.access_key_id,
                            aws_secret_access_key=DEFAULT_ACCESS_KEY.secret_access_key,
                            config=Config(retries={"max_attempts": 1}))
        assert "CiphertextForRecipient" in boto.generate_random(NumberOfBytes=8, Recipient=recipient(this_document()))
        other = other_document()
        assert error_of(boto.generate_random, NumberOfBytes=8,
                        Recipient=recipient(other))[0] == "AccessDeniedException"


@pytest.mark.parametrize(("operation", "args"), [
    ("Decrypt", ("--document", "--role-arn", ROLE, "--action", "kms:Decrypt")),
    ("GenerateDataKeyPair", ("--document", "--role-arn", ROLE, "--action", "kms:GenerateDataKeyPair")),
    ("GenerateRandom", ("--document",)),
    ("GenerateRandom", ()),
])
def test_explain_reads_the_output_as_it_is(tmp_path: Path, capsys: pytest.CaptureFixture[str], operation: str,
                                           args: tuple[str, ...]) -> None:
    policy = tmp_path / "policy.json"
    policy.write_text(nitrokit_policy(*args, "--pcr", f"0={PCR0}"))
    capsys.readouterr()
    this, other = tmp_path / "this.bin", tmp_path / "other.bin"
    this.write_bytes(this_document())
    other.write_bytes(other_document())
    explain = ["kms-sim", "explain", "--policy", str(policy), "--operation", operation, "--json"]
    assert cli.main([*explain, "--document", str(this)]) == 0
    assert json.loads(capsys.readouterr().out)["decided_by"] == DEFAULT_SID
    assert cli.main([*explain, "--document", str(other)]) == 1
    assert json.loads(capsys.readouterr().out)["allowed"] is False
