"""Key policies in the simulated KMS, through plain boto3: KMS's default policy, policies given to CreateKey and
PutKeyPolicy, evaluated by nitrokit.kms.conditions with the Recipient's PCRs and the encryption context."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nitrokit import cli
from nitrokit.cms import decrypt as open_envelope
from nitrokit.kms import AttestationConditions, KmsConfigError, SimulatedKms
from nitrokit.kms.conditions import request_context
from nitrokit.policy_statements import build_statement
from nitrokit.testing.documents import default_pcrs
from tests.cli_helpers import run_cli
from tests.kms_helpers import error_of
from tests.test_kms_keys import ARN_PREFIX
from tests.test_kms_support import foreign_pki, good_document, recipient, rsa_key

ROOT = "arn:aws:iam::111122223333:root"
ROLE = "arn:aws:iam::111122223333:role/parent"
PCR0 = default_pcrs()[0].hex()
ENCLAVE_ACTIONS = ["kms:Decrypt", "kms:GenerateDataKey"]
ADMIN = {"Sid": "Admin", "Effect": "Allow", "Principal": {"AWS": ROOT}, "NotAction": ENCLAVE_ACTIONS,
         "Resource": "*"}


def policy(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    with SimulatedKms() as simulator:
        yield simulator.client()


def test_a_key_without_a_policy_has_kms_default_policy(client: Any) -> None:
    key_id = client.create_key()["KeyMetadata"]["KeyId"]
    answer = client.get_key_policy(KeyId=key_id, PolicyName="default")
    assert answer["PolicyName"] == "default"
    document = json.loads(answer["Policy"])
    assert document["Statement"] == [{"Sid": "Enable IAM User Permissions", "Effect": "Allow",
                                      "Principal": {"AWS": ROOT}, "Action": "kms:*", "Resource": "*"}]
    assert error_of(client.get_key_policy, KeyId=key_id, PolicyName="other")[0] == "NotFoundException"


def test_nitrokit_policy_statement_binds_decrypt_and_generate_data_key_to_pcr0(client: Any) -> None:
    statement = build_statement(pcrs={0: PCR0}, role_arn=ROLE, actions=ENCLAVE_ACTIONS)
    key = client.create_key(Policy=policy(ADMIN, statement))["KeyMetadata"]
    blob = client.encrypt(KeyId=key["KeyId"], Plaintext=b"secret")["CiphertextBlob"]  # Admin: NotAction

    answer = client.decrypt(CiphertextBlob=blob, Recipient=recipient(good_document()))
    assert open_envelope(answer["CiphertextForRecipient"], rsa_key()) == b"secret"
    assert client.generate_data_key(KeyId=key["KeyId"], KeySpec="AES_256",
                                    Recipient=recipient(good_document()))["CiphertextForRecipient"]

    other_image = {**default_pcrs(), 0: b"\x77" * 48}
    denied = ("AccessDeniedException", "User: arn:aws:iam::111122223333:user/nitrokit-kms-sim is not authorized to "
              f"perform: kms:Decrypt on resource: {key['Arn']} because no resource-based policy allows the "
              "kms:Decrypt action")
    assert error_of(client.decrypt, CiphertextBlob=blob, Recipient=recipient(good_document(pcrs=other_image))) == \
        denied
    assert error_of(client.decrypt, CiphertextBlob=blob) == denied
    assert error_of(client.generate_data_key, KeyId=key["KeyId"], KeySpec="AES_256")[0] == "AccessDeniedException"
    assert error_of(client.generate_data_key, KeyId=key["KeyId"], KeySpec="AES_256",
                    Recipient=recipient(good_document(pcrs=other_image)))[0] == "AccessDeniedException"


def test_encryption_context_conditions(client: Any) -> None:
    tenant = {"Sid": "Tenant", "Effect": "Allow", "Principal": {"AWS": ROOT}, "Action": ["kms:Encrypt", "kms:Decrypt"],
              "Resource": "*", "Condition": {
                  "StringEquals": {"kms:EncryptionContext:tenant": "42"},
                  "ForAllValues:StringEquals": {"kms:EncryptionContextKeys": ["tenant", "purpose"]}}}
    no_drafts = {"Sid": "NoDrafts", "Effect": "Deny", "Principal": "*", "Action": "kms:Decrypt", "Resource": "*",
                 "Condition": {"StringLike": {"kms:EncryptionContext:purpose": "draft-*"}}}
    admin = {**ADMIN, "NotAction": ["kms:Encrypt", "kms:Decrypt"]}
    key_id = client.create_key(Policy=policy(admin, tenant, no_drafts))["KeyMetadata"]["KeyId"]

    good = {"tenant": "42", "purpose": "final"}
    blob = client.encrypt(KeyId=key_id, Plaintext=b"x", EncryptionContext=good)["CiphertextBlob"]
    assert client.decrypt(CiphertextBlob=blob, EncryptionContext=good)["Plaintext"] == b"x"
    for context in ({"tenant": "43"}, {"tenant": "42", "other": "y"}, {}):
        assert error_of(client.encrypt, KeyId=key_id, Plaintext=b"x", EncryptionContext=context)[0] == \
            "AccessDeniedException"
    draft = {"tenant": "42", "purpose": "draft-1"}
    draft_blob = client.encrypt(KeyId=key_id, Plaintext=b"x", EncryptionContext=draft)["CiphertextBlob"]
    code, message = error_of(client.decrypt, CiphertextBlob=draft_blob, EncryptionContext=draft)
    assert code == "AccessDeniedException"
    assert message.endswith("with an explicit deny in a resource-based policy")


def test_policy_lockout_check_and_malformed_policies(client: Any) -> None:
    only_enclave = build_statement(pcrs={0: PCR0}, role_arn=ROLE, actions=ENCLAVE_ACTIONS)
    assert error_of(client.create_key, Policy=policy(only_enclave)) == (
        "MalformedPolicyDocumentException",
        "The new key policy will not allow you to update the key policy in the future.")
    assert client.create_key(Policy=policy(only_enclave), BypassPolicyLockoutSafetyCheck=True)["KeyMetadata"]
    for text in ("not json", policy({"Effect": "Allow", "Action": "kms:*"}),
                 policy({**ADMIN, "Condition": {"StringEquals": {"kms:ViaService": "x"}}})):
        code, message = error_of(client.create_key, Policy=text)
        assert code == "MalformedPolicyDocumentException"
        assert message


def test_put_key_policy_replaces_the_policy(client: Any) -> None:
    key = client.create_key()["KeyMetadata"]
    blob = client.encrypt(KeyId=key["KeyId"], Plaintext=b"x")["CiphertextBlob"]
    statement = build_statement(pcrs={0: PCR0}, role_arn=ROLE, actions=ENCLAVE_ACTIONS)
    text = policy(ADMIN, statement)
    client.put_key_policy(KeyId=f"{ARN_PREFIX}key/{key['KeyId']}", PolicyName="default", Policy=text)
    assert client.get_key_policy(KeyId=key["KeyId"])["Policy"] == text
    assert error_of(client.decrypt, CiphertextBlob=blob)[0] == "AccessDeniedException"
    assert client.decrypt(CiphertextBlob=blob, Recipient=recipient(good_document()))["CiphertextForRecipient"]
    deny_describe = {"Sid": "NoDescribe", "Effect": "Deny", "Principal": "*", "Action": "kms:Describe*",
                     "Resource": "*"}
    client.put_key_policy(KeyId=key["KeyId"], Policy=policy(ADMIN, deny_describe))
    assert error_of(client.describe_key, KeyId=key["KeyId"])[0] == "AccessDeniedException"
    assert error_of(client.put_key_policy, KeyId=key["KeyId"], Policy=policy(statement))[0] == \
        "MalformedPolicyDocumentException"


# --- the evaluator's new condition keys and operators, directly -------------------------------------------

def _allow(condition: dict[str, Any]) -> AttestationConditions:
    return AttestationConditions.from_json({"Effect": "Allow", "Action": "kms:Decrypt", "Resource": "*",
                                            "Condition": condition})


@pytest.mark.parametrize(("condition", "context", "allowed"), [
    ({"ForAnyValue:StringEquals": {"kms:EncryptionContextKeys": ["a"]}}, {"a": "1", "b": "2"}, True),
    ({"ForAnyValue:StringEquals": {"kms:EncryptionContextKeys": ["a"]}}, None, False),
    ({"ForAllValues:StringEquals": {"kms:EncryptionContextKeys": ["a"]}}, {"a": "1", "b": "2"}, False),
    ({"ForAllValues:StringEquals": {"kms:EncryptionContextKeys": ["a"]}}, None, True),
    ({"StringNotEquals": {"kms:EncryptionContext:a": "1"}}, {"a": "2"}, True),
    ({"StringNotEquals": {"kms:EncryptionContext:a": "1"}}, {"a": "1"}, False),
    ({"StringNotEquals": {"kms:EncryptionContext:a": "1"}}, None, True),
    ({"StringEqualsIgnoreCase": {"KMS:ENCRYPTIONCONTEXT:A": "VALUE"}}, {"a": "value"}, True),
    ({"StringEquals": {"kms:EncryptionContext:a": "Value"}}, {"a": "value"}, False),
    ({"StringLike": {"kms:EncryptionContext:a": "v?l*"}}, {"a": "value"}, True),
    ({"StringNotLike": {"kms:EncryptionContext:a": "v*"}}, {"a": "value"}, False),
    ({"Null": {"kms:EncryptionContextKeys": "true"}}, None, True),
    ({"Null": {"kms:EncryptionContextKeys": "true"}}, {"a": "1"}, False),
])
def test_encryption_context_operators(condition: dict[str, Any], context: dict[str, str] | None,
                                      allowed: bool) -> None:
    verdict = _allow(condition).evaluate(request_context(None, context), action="kms:Decrypt",
                                         resource=f"{ARN_PREFIX}key/1")
    assert (verdict is None) == allowed


@pytest.mark.parametrize("condition", [
    {"StringEquals": {"kms:EncryptionContextKeys": "a"}},
    {"ForAnyValue:StringEquals": {"kms:EncryptionContext:a": "1"}},
    {"ForAnyValue:Null": {"kms:EncryptionContextKeys": "true"}},
    {"ForSomeValues:StringEquals": {"kms:EncryptionContextKeys": "a"}},
    {"StringLike": {"kms:RecipientAttestation:PCR0": "ab*"}},
    {"StringEquals": {"kms:EncryptionContext:": "1"}},
])
def test_forms_it_cannot_evaluate_are_refused(condition: dict[str, Any]) -> None:
    with pytest.raises(KmsConfigError):
        _allow(condition)


# --- nitrokit kms-sim explain -------------------------------------------------------------------------------

def statement_sid() -> str:
    return str(build_statement(pcrs={0: PCR0}, role_arn=ROLE, actions=ENCLAVE_ACTIONS)["Sid"])


def _explain(tmp_path: Path, capsys: pytest.CaptureFixture[str], *args: str,
             policy_statements: tuple[dict[str, Any], ...] | None = None) -> tuple[int, str, str]:
    path = tmp_path / "policy.json"
    statement = build_statement(pcrs={0: PCR0}, role_arn=ROLE, actions=ENCLAVE_ACTIONS)
    path.write_text(policy(*(policy_statements or (ADMIN, statement))))
    code = cli.main(["kms-sim", "explain", "--policy", str(path), *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_explain_names_the_deciding_statement(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    document = tmp_path / "doc.bin"
    document.write_bytes(good_document())
    code, out, _ = _explain(tmp_path, capsys, "--document", str(document), "--operation", "Decrypt")
    assert code == 0
    assert out.splitlines()[0] == "decision: ALLOW"
    assert f"decided by: {statement_sid()} (Allow)" in out
    assert "Admin (Allow): does not apply: NotAction does not cover kms:Decrypt" in out

    other = tmp_path / "other.bin"
    other.write_bytes(good_document(pcrs={**default_pcrs(), 0: b"\x77" * 48}))
    code, out, _ = _explain(tmp_path, capsys, "--document", str(other), "--operation", "kms:Decrypt", "--json")
    assert code == 1
    verdict = json.loads(out)
    assert (verdict["decision"], verdict["allowed"], verdict["decided_by"]) == (
        "DENY (implicit: no statement allows)", False, None)
    assert "kms:RecipientAttestation:PCR0" in verdict["statements"][1]["unmet"]


def test_explain_an_explicit_deny_and_the_encryption_context(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    deny = {"Sid": "NoTenant7", "Effect": "Deny", "Principal": "*", "Action": "kms:*", "Resource": "*",
            "Condition": {"StringEquals": {"kms:EncryptionContext:tenant": "7"}}}
    statements = ({**ADMIN, "NotAction": "kms:Nothing"}, deny)
    code, out, _ = _explain(tmp_path, capsys, "--operation", "Encrypt", "--encryption-context", "tenant=7",
                         policy_statements=statements)
    assert (code, out.splitlines()[0]) == (1, "decision: DENY (explicit)")
    assert "decided by: NoTenant7 (Deny)" in out
    code, out, _ = _explain(tmp_path, capsys, "--operation", "Encrypt", "--encryption-context", "tenant=8",
                         policy_statements=statements)
    assert (code, out.splitlines()[0]) == (0, "decision: ALLOW")


def test_explain_escapes_the_policys_own_words(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hostile = {**ADMIN, "Sid": "Admin\x1b[2J\x1b[32mALLOW"}
    code, out, _ = _explain(tmp_path, capsys, "--operation", "DescribeKey", policy_statements=(hostile,))
    assert code == 0 and "\x1b" not in out and "Admin\\x1b[2J" in out
    with pytest.raises(KmsConfigError) as caught:
        AttestationConditions.from_json({**ADMIN, "Bogus\x1b[2J": 1})
    assert "\x1b" not in str(caught.value) and "Bogus\\x1b[2J" in str(caught.value)


def test_explain_refuses_what_kms_would_refuse(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    foreign = tmp_path / "foreign.bin"
    foreign.write_bytes(good_document(pki=foreign_pki()))
    code, _, err = _explain(tmp_path, capsys, "--document", str(foreign), "--operation", "Decrypt")
    assert code == 1
    assert "ValidationException" in err
    assert _explain(tmp_path, capsys, "--operation", "NoSuchOperation")[0] == 2
    assert _explain(tmp_path, capsys, "--operation", "Decrypt", "--encryption-context", "novalue")[0] == 2


def test_explain_from_the_command_line(tmp_path: Path) -> None:
    path = tmp_path / "policy.json"
    path.write_text(policy(ADMIN))
    result = run_cli("kms-sim", "explain", "--policy", str(path), "--operation", "DescribeKey")
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().startswith("decision: ALLOW\n")
