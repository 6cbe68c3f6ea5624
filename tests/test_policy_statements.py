"""KMS policy statements (IAM identity-policy and key-policy shapes): what they refuse, and that the simulated
KMS enforces them.

The end-to-end tests go from an EIF (built by tests/eif_builder.py) to ``nitrokit eif describe``, to
``nitrokit policy``, to the simulated KMS loaded with that exact JSON, to boto3 GenerateRandom calls with a
Recipient whose attestation document carries the image's PCRs (allowed) or a different PCR0 (denied).
"""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given, settings
from hypothesis import strategies as st

import nitrokit.cli as cli
from nitrokit.cms import decrypt
from nitrokit.condition_keys import IMAGE_SHA384_KEY, KEY_NAMESPACE, PCR_KEY_PREFIX
from nitrokit.kms import AttestationConditions, KmsSimConfig, SimulatedKms
from nitrokit.policy_statements import (
    DEFAULT_ACTIONS,
    RECIPIENT_ACTIONS,
    PolicyStatementError,
    build_statement,
)
from nitrokit.testing.documents import build_document
from tests import eif_builder as b
from tests.cli_helpers import only_commands

PCR0 = "ab" * 48
PCR1 = "cd" * 48
ROLE = "arn:aws:iam::111122223333:role/enclave-parent"


def test_default_is_an_iam_identity_policy_statement_for_generate_random():
    statement = build_statement(pcrs={0: PCR0.upper(), 1: bytes.fromhex(PCR1)})
    assert statement == {
        "Sid": "AllowNitroEnclaveWithTheseMeasurements",
        "Effect": "Allow",
        "Action": ["kms:GenerateRandom"],
        "Resource": "*",
        "Condition": {"StringEqualsIgnoreCase": {
            "kms:RecipientAttestation:PCR0": PCR0,
            "kms:RecipientAttestation:PCR1": PCR1,
        }},
    }
    assert json.loads(json.dumps(statement)) == statement


@pytest.mark.parametrize("actions", [DEFAULT_ACTIONS, ["kms:Decrypt", "kms:generaterandom"], RECIPIENT_ACTIONS])
def test_role_arn_with_generate_random_is_refused(actions):
    # GenerateRandom uses no KMS key: a key-policy statement (with a Principal) granting it would never apply.
    with pytest.raises(PolicyStatementError, match="IAM policy"):
        build_statement(pcrs={0: PCR0}, role_arn=ROLE, actions=actions)


def test_key_based_actions_give_a_key_policy_statement_with_principal():
    statement = build_statement(pcrs={0: PCR0.upper(), 1: bytes.fromhex(PCR1)}, role_arn=ROLE,
                                actions=["kms:Decrypt", "kms:GenerateDataKey"])
    assert statement == {
        "Sid": "AllowNitroEnclaveWithTheseMeasurements",
        "Effect": "Allow",
        "Principal": {"AWS": ROLE},
        "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
        "Resource": "*",
        "Condition": {"StringEqualsIgnoreCase": {
            "kms:RecipientAttestation:PCR0": PCR0,
            "kms:RecipientAttestation:PCR1": PCR1,
        }},
    }
    assert json.loads(json.dumps(statement)) == statement


def test_image_sha384_actions_sid_and_no_principal():
    statement = build_statement(image_sha384="0x" + PCR0, actions=["KMS:decrypt", "kms:GenerateRandom",
                                                                     "kms:Decrypt"], sid="Enclave use")
    assert "Principal" not in statement
    assert statement["Sid"] == "Enclave use"
    assert statement["Action"] == ["kms:Decrypt", "kms:GenerateRandom"]
    assert statement["Condition"] == {"StringEqualsIgnoreCase": {IMAGE_SHA384_KEY: PCR0}}
    assert build_statement(pcrs={0: PCR0}, actions=RECIPIENT_ACTIONS)["Action"] == sorted(RECIPIENT_ACTIONS)
    assert tuple(build_statement(pcrs={0: PCR0})["Action"]) == DEFAULT_ACTIONS
    # ImageSha384 and PCR0 together are fine when they agree.
    both = build_statement(pcrs={0: PCR0}, image_sha384=PCR0.upper())
    assert len(both["Condition"]["StringEqualsIgnoreCase"]) == 2


@pytest.mark.parametrize("kwargs, match", [
    ({}, "at least one measurement"),
    ({"pcrs": {}}, "at least one measurement"),
    ({"pcrs": {0: "ab" * 47}}, "94 hex digits"),
    ({"pcrs": {0: "ab" * 48 + "a"}}, "97 hex digits"),
    ({"pcrs": {0: "ab" * 32}}, "64 hex digits"),
    ({"pcrs": {0: "zz" * 48}}, "not hex"),
    ({"pcrs": {0: " "}}, "0 hex digits"),
    ({"pcrs": {0: bytes(32)}}, "32 bytes"),
    ({"pcrs": {0: 12}}, "bytes or hex"),
    ({"pcrs": {32: PCR0}}, "PCR index 32"),
    ({"pcrs": {-1: PCR0}}, "PCR index -1"),
    ({"pcrs": {True: PCR0}}, "PCR index True"),
    ({"pcrs": {"0": PCR0}}, "PCR index '0'"),
    ({"pcrs": [(0, PCR0)]}, "mapping"),
    ({"image_sha384": "ab" * 10}, "ImageSha384 has 20"),
    ({"pcrs": {0: PCR0}, "image_sha384": PCR1}, "differ"),
    ({"pcrs": {0: "00" * 48}}, "PCR0 is all zeros"),
    ({"image_sha384": "00" * 48}, "ImageSha384 is all zeros"),
    ({"pcrs": {8: "00" * 48}}, "PCR8 is all zeros"),
    ({"pcrs": {0: PCR0}, "role_arn": "arn:aws:iam::123:role/x"}, "not an IAM"),
    ({"pcrs": {0: PCR0}, "role_arn": "arn:aws:s3:::bucket"}, "not an IAM"),
    ({"pcrs": {0: PCR0}, "role_arn": "*"}, "not an IAM"),
    ({"pcrs": {0: PCR0}, "role_arn": ROLE + "\n"}, "not an IAM"),
    ({"pcrs": {0: PCR0}, "role_arn": 5}, "not an IAM"),
    ({"pcrs": {0: PCR0}, "actions": ["kms:Encrypt"]}, "does not take a Recipient"),
    ({"pcrs": {0: PCR0}, "actions": ["kms:*"]}, "does not take a Recipient"),
    ({"pcrs": {0: PCR0}, "actions": []}, "at least one action"),
    ({"pcrs": {0: PCR0}, "sid": ""}, "Sid"),
    ({"pcrs": {0: PCR0}, "sid": "bad\"sid"}, "Sid"),
])
def test_invalid_input_is_refused(kwargs, match):
    with pytest.raises(PolicyStatementError, match=match):
        build_statement(**kwargs)


def test_accepted_principals_and_explicit_zero():
    for arn in (ROLE, "arn:aws:iam::111122223333:root", "arn:aws-us-gov:iam::111122223333:role/path/to/r",
                "arn:aws:iam::111122223333:user/alice", "arn:aws-cn:iam::111122223333:role/a+b=c,d.e@f_g-h"):
        assert build_statement(pcrs={0: PCR0}, role_arn=arn, actions=["kms:Decrypt"])["Principal"] == {"AWS": arn}
    statement = build_statement(pcrs={16: "00" * 48}, allow_zero=True)
    assert statement["Condition"]["StringEqualsIgnoreCase"] == {"kms:RecipientAttestation:PCR16": "00" * 48}
    assert build_statement(actions="kms:GenerateRandom", pcrs={0: PCR0})["Action"] == ["kms:GenerateRandom"]


def test_both_sides_use_aws_spelling_of_the_condition_keys():
    # One definition for the writer and the simulator's evaluator, and it is the spelling AWS documents.
    assert (KEY_NAMESPACE, IMAGE_SHA384_KEY, PCR_KEY_PREFIX) == (
        "kms:RecipientAttestation:", "kms:RecipientAttestation:ImageSha384", "kms:RecipientAttestation:PCR")
    statement = build_statement(pcrs={31: PCR0}, image_sha384=PCR1, allow_zero=True, sid="S")
    assert set(statement["Condition"]["StringEqualsIgnoreCase"]) == {IMAGE_SHA384_KEY, "kms:RecipientAttestation:PCR31"}
    conditions = AttestationConditions.from_json(statement)
    assert {clause.key for clause in conditions.statements[0].clauses} == set(
        statement["Condition"]["StringEqualsIgnoreCase"])


def test_key_policy_error_is_a_usage_error():
    from nitrokit.errors import NitrokitError, UsageError
    assert issubclass(PolicyStatementError, UsageError) and issubclass(PolicyStatementError, NitrokitError)


# --- CLI -----------------------------------------------------------------------------------------------------

@pytest.fixture
def nitrokit(monkeypatch, capsys):
    # Only these command groups: the real dispatcher and error mapping, without importing every other group.
    only_commands(monkeypatch, "nitrokit.cli.eif", "nitrokit.cli.policy_statements")

    def run(*args: str) -> tuple[int, str, str]:
        code = cli.main(list(args))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def test_cli_prints_the_statement(nitrokit):
    code, out, _ = nitrokit("policy", "--pcr", f"0={PCR0}", "--pcr", f"8={PCR1.upper()}", "--role-arn", ROLE,
                            "--action", "kms:GenerateDataKey", "--action", "kms:Decrypt")
    assert code == 0
    assert json.loads(out) == build_statement(pcrs={0: PCR0, 8: PCR1}, role_arn=ROLE,
                                              actions=["kms:Decrypt", "kms:GenerateDataKey"])
    code, out, _ = nitrokit("policy", "--pcr", f"0={PCR0}")
    assert code == 0 and "Principal" not in json.loads(out)
    code, out, _ = nitrokit("policy", "--image-sha384", PCR0)
    assert code == 0 and json.loads(out)["Condition"]["StringEqualsIgnoreCase"] == {IMAGE_SHA384_KEY: PCR0}


@pytest.mark.parametrize("args, match", [
    ((), "at least one measurement"),
    (("--pcr", PCR0), "N=HEX"),
    (("--pcr", f"x={PCR0}"), "N=HEX"),
    (("--pcr", f"123={PCR0}"), "N=HEX"),
    (("--pcr", f"\u00b3={PCR0}"), "is not N=HEX"),  # was a ValueError traceback (int("³"))
    (("--pcr", f"\u0663={PCR0}"), "is not N=HEX"),  # was read as PCR3
    (("--pcr", f"40={PCR0}"), "PCR index 40"),
    (("--pcr", f"0={PCR0}", "--pcr", f"0={PCR1}"), "given twice"),
    (("--pcr", "0=abc"), "3 hex digits"),
    (("--pcr", f"0={'00' * 48}"), "all zeros"),
    (("--pcr", f"0={PCR0}", "--role-arn", "nobody"), "not an IAM"),
    (("--pcr", f"0={PCR0}", "--action", "kms:Sign"), "does not take a Recipient"),
    (("--pcr", f"0={PCR0}", "--role-arn", ROLE), "attach this statement to the role's IAM policy"),
])
def test_cli_refuses_bad_input_with_exit_2(nitrokit, args, match):
    code, out, err = nitrokit("policy", *args)
    assert code == 2 and out == ""
    assert match in err and "Traceback" not in err


def test_cli_allow_zero(nitrokit):
    code, out, _ = nitrokit("policy", "--pcr", f"0={'00' * 48}", "--allow-zero")
    assert code == 0 and json.loads(out)["Condition"]["StringEqualsIgnoreCase"]["kms:RecipientAttestation:PCR0"]


# --- the simulated KMS enforces the statement -----------------------------------------------------------------

@pytest.fixture(scope="module")
def recipient_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _recipient(pcrs, key) -> dict[str, object]:
    spki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    document = build_document(pcrs=pcrs, public_key=spki)
    return {"AttestationDocument": document, "KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256"}


def _denied(client, **kwargs) -> str:
    with pytest.raises(ClientError) as info:
        client.generate_random(NumberOfBytes=32, **kwargs)
    return str(info.value.response["Error"]["Code"])


def test_policy_from_an_eif_allows_that_image_only(tmp_path, nitrokit, recipient_key):
    key, cert = b.signing_identity()
    eif = tmp_path / "enclave.eif"
    eif.write_bytes(b.signed_eif(kernel=b"kernel" * 100, cmdline=b"console=ttyS0", ramdisks=[b"boot", b"app"],
                                 key=key, certificate=cert))
    code, out, _ = nitrokit("eif", "describe", str(eif), "--json")
    assert code == 0
    measured = json.loads(out)["Measurements"]
    code, out, _ = nitrokit("policy", "--pcr", f"0={measured['PCR0']}", "--pcr", f"8={measured['PCR8']}")
    assert code == 0
    statement = json.loads(out)

    pcrs = {i: bytes(48) for i in range(16)}
    pcrs.update({0: bytes.fromhex(measured["PCR0"]), 1: bytes.fromhex(measured["PCR1"]),
                 2: bytes.fromhex(measured["PCR2"]), 8: bytes.fromhex(measured["PCR8"])})
    config = KmsSimConfig(conditions=AttestationConditions.from_json(statement))
    with SimulatedKms(config) as kms:
        client = kms.client()
        answer = client.generate_random(NumberOfBytes=32, Recipient=_recipient(pcrs, recipient_key))
        assert answer.get("Plaintext") is None
        assert len(decrypt(answer["CiphertextForRecipient"], recipient_key)) == 32

        other_image = {**pcrs, 0: bytes.fromhex("11" * 48)}
        assert _denied(client, Recipient=_recipient(other_image, recipient_key)) == "AccessDeniedException"
        other_signer = {**pcrs, 8: bytes.fromhex("22" * 48)}
        assert _denied(client, Recipient=_recipient(other_signer, recipient_key)) == "AccessDeniedException"
        # No Recipient means no attestation values at all: the statement's conditions cannot hold.
        assert _denied(client) == "AccessDeniedException"


def test_image_sha384_statement_in_a_policy_document(recipient_key):
    statement = build_statement(image_sha384=PCR0)
    document = {"Version": "2012-10-17", "Statement": [statement]}
    config = KmsSimConfig(conditions=AttestationConditions.from_json(document))
    with SimulatedKms(config) as kms:
        client = kms.client()
        good = {0: bytes.fromhex(PCR0), 1: bytes.fromhex(PCR1)}
        answer = client.generate_random(NumberOfBytes=16, Recipient=_recipient(good, recipient_key))
        assert len(decrypt(answer["CiphertextForRecipient"], recipient_key)) == 16
        bad = {0: bytes.fromhex(PCR1), 1: bytes.fromhex(PCR1)}
        assert _denied(client, Recipient=_recipient(bad, recipient_key)) == "AccessDeniedException"


@settings(max_examples=300, deadline=None)
@given(
    pcrs=st.dictionaries(st.one_of(st.integers(-5, 40), st.text(max_size=3), st.booleans()),
                         st.one_of(st.text(alphabet="0123456789abcdefABCDEFx \n", max_size=100),
                                   st.binary(max_size=60), st.sampled_from([PCR0, PCR1.upper(), "0x" + PCR0]),
                                   st.binary(min_size=48, max_size=48)), max_size=4),
    role_arn=st.one_of(st.none(), st.text(max_size=60), st.just(ROLE)),
    actions=st.lists(st.sampled_from([*RECIPIENT_ACTIONS, "kms:Encrypt", "", "KMS:DECRYPT"]), max_size=3),
)
def test_random_input_gives_a_statement_or_a_key_policy_error(pcrs, role_arn, actions):
    try:
        statement = build_statement(pcrs=pcrs, role_arn=role_arn, actions=actions)
    except PolicyStatementError:
        return
    values = statement["Condition"]["StringEqualsIgnoreCase"].values()
    assert values and all(len(v) == 96 and v == v.lower() and v.strip("0") for v in values)
    assert statement["Action"] and set(statement["Action"]) <= set(RECIPIENT_ACTIONS)
    AttestationConditions.from_json(statement)  # the simulator accepts whatever build_statement produces
