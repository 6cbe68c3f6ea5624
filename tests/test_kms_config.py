"""Configuration of the simulated KMS: files (JSON, TOML), validation, and attestation conditions from policies."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from nitrokit.attestation import aws_nitro_root
from nitrokit.errors import UsageError
from nitrokit.kms import (
    DEFAULT_ACCESS_KEY,
    AccessKey,
    AttestationConditions,
    CustomKeyStore,
    Faults,
    KmsConfigError,
    KmsSimConfig,
    load_config,
)
from nitrokit.kms.conditions import context_from_pcrs
from nitrokit.testing import fixture_pki
from tests.test_kms_support import foreign_pki

PCR0 = "ab" * 48
PCR1 = "cd" * 48
CONTEXT = context_from_pcrs({0: bytes.fromhex(PCR0), 1: bytes.fromhex(PCR1), 8: bytes(48)})
NO_RECIPIENT = context_from_pcrs(None)


def test_defaults() -> None:
    config = KmsSimConfig()
    assert config.credentials == (DEFAULT_ACCESS_KEY,)
    assert DEFAULT_ACCESS_KEY.access_key_id == "AKIAIOSFODNN7EXAMPLE"
    assert config.region == "us-east-1"
    assert config.resolve_root() == fixture_pki().root
    assert config.conditions is None and not config.recipient_required
    assert "wJalrXUtnFEMI" not in repr(config)  # secrets stay out of repr


def test_toml_file(tmp_path: Path) -> None:
    root = tmp_path / "root.pem"
    root.write_bytes(foreign_pki().root.public_bytes(serialization.Encoding.PEM))
    path = tmp_path / "kms.toml"
    path.write_text(f"""
region = "eu-central-1"
root = "root.pem"
recipient_required = true

[[credentials]]
access_key_id = "AKIATESTTESTTESTTEST"
secret_access_key = "secret"

[[custom_key_stores]]
id = "cks-1"
type = "cloudhsm"
connection_state = "disconnected"

[[custom_key_stores]]
id = "cks-2"
type = "EXTERNAL_KEY_STORE"

[conditions]
"kms:RecipientAttestation:PCR0" = "{PCR0}"

[faults]
internal_error_rate = 0.25
fail_next = 2
fail_next_error = "DependencyTimeoutException"
latency_ms = 5
seed = 3
""")
    config = load_config(path)
    assert config.region == "eu-central-1"
    assert config.resolve_root() == foreign_pki().root  # relative to the config file
    assert config.recipient_required
    assert config.credentials == (AccessKey(access_key_id="AKIATESTTESTTESTTEST", secret_access_key="secret"),)
    assert config.custom_key_stores == (
        CustomKeyStore(id="cks-1", type="AWS_CLOUDHSM", connection_state="DISCONNECTED"),
        CustomKeyStore(id="cks-2", type="EXTERNAL_KEY_STORE", connection_state="CONNECTED"),
    )
    assert config.conditions is not None and config.conditions.evaluate(CONTEXT) is None
    assert config.faults == Faults(internal_error_rate=0.25, fail_next=2, fail_next_error="DependencyTimeoutException",
                                   latency_ms=5, seed=3)


def test_json_file_with_policy_document(tmp_path: Path) -> None:
    path = tmp_path / "kms.json"
    path.write_text(json.dumps({
        "root": "aws",
        "conditions": {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "kms:GenerateRandom", "Resource": "*",
             "Condition": {"StringEqualsIgnoreCase": {"kms:RecipientAttestation:ImageSha384": PCR0.upper()}}},
        ]},
    }))
    config = load_config(path)
    assert config.resolve_root() == aws_nitro_root()
    assert config.conditions is not None
    assert config.conditions.evaluate(CONTEXT) is None
    assert config.conditions.evaluate(NO_RECIPIENT) is not None


@pytest.mark.parametrize(("content", "suffix", "fragment"), [
    ('{"regoin": "us-east-1"}', ".json", "unknown configuration key(s): regoin"),
    ("region = ", ".toml", "not valid TOML"),
    ("{", ".json", "not valid JSON"),
    ('{"credentials": [{"access_key_id": "A"}]}', ".json", "credentials"),
    ('{"credentials": []}', ".json", "at least one"),
    ('{"faults": {"internal_error_rate": 2}}', ".json", "internal_error_rate"),
    ('{"faults": {"internal_error_rate": 0.6, "dependency_timeout_rate": 0.6}}', ".json", "must not exceed 1"),
    ('{"faults": {"fail_next_error": "ThrottlingException"}}', ".json", "fail_next_error"),
    ('{"faults": {"latency_ms": 100000}}', ".json", "latency_ms"),
    ('{"custom_key_stores": [{"id": "x", "type": "XKS"}]}', ".json", "type"),
    ('{"custom_key_stores": [{"id": "x", "connection_state": "ON"}]}', ".json", "connection_state"),
    ('{"custom_key_stores": [{"id": "x"}, {"id": "x"}]}', ".json", "unique"),
    ('{"region": "us/east"}', ".json", "region"),
    ('{"recipient_required": "yes"}', ".json", "recipient_required"),
    ('{"conditions": {"kms:CallerAccount": "1"}}', ".json", "not supported"),
    ('{"root": "missing.pem"}', ".json", "root"),
], ids=["typo", "bad-toml", "bad-json", "incomplete-key", "no-keys", "rate", "rates-sum", "fault-error",
        "latency", "store-type", "store-state", "store-ids", "region", "bool", "condition-key", "root-file"])
def test_bad_config_files(tmp_path: Path, content: str, suffix: str, fragment: str) -> None:
    path = tmp_path / f"kms{suffix}"
    path.write_text(content)
    with pytest.raises(KmsConfigError) as caught:
        load_config(path).resolve_root()
    assert fragment in str(caught.value)
    assert isinstance(caught.value, UsageError)


def test_oversized_config_file(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    path.write_bytes(b" " * (1024 * 1024 + 1))
    with pytest.raises(KmsConfigError, match="larger than"):
        load_config(path)


def test_replace_validates() -> None:
    with pytest.raises(KmsConfigError):
        KmsSimConfig().replace(region="")
    assert KmsSimConfig().replace(region="ap-south-1").region == "ap-south-1"


# --- conditions ----------------------------------------------------------------------------------------------

def statement(condition: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "*", "Condition": condition, **extra}


@pytest.mark.parametrize(("policy", "with_recipient", "without_recipient"), [
    ({"kms:RecipientAttestation:PCR0": PCR0}, True, False),
    ({"KMS:RECIPIENTATTESTATION:pcr0": PCR0.upper()}, True, False),  # keys and hex case-insensitive
    ({"kms:RecipientAttestation:PCR0": [("00" * 48), PCR0]}, True, False),  # any of the values
    ({"kms:RecipientAttestation:PCR0": PCR0, "kms:RecipientAttestation:PCR1": PCR0}, False, False),
    (statement({"StringEqualsIgnoreCase": {"kms:RecipientAttestation:PCR1": PCR1.upper()}}), True, False),
    (statement({"StringEquals": {"kms:RecipientAttestation:PCR1": PCR1}}), True, False),
    (statement({"StringEquals": {"kms:RecipientAttestation:PCR1": PCR1.upper()}}), False, False),
    (statement({"StringEqualsIgnoreCaseIfExists": {"kms:RecipientAttestation:PCR1": PCR1}}), True, True),
    (statement({"Null": {"kms:RecipientAttestation:ImageSha384": "false"}}), True, False),
    (statement({"Null": {"kms:RecipientAttestation:ImageSha384": True}}), False, True),
    (statement({"StringEqualsIgnoreCase": {"kms:RecipientAttestation:PCR8": "00" * 48},
                "Null": {"kms:RecipientAttestation:PCR0": "false"}}), True, False),
    (statement({"StringEqualsIgnoreCase": {"kms:RecipientAttestation:PCR31": "00" * 48}}), False, False),
    ({"Statement": [statement({"StringEquals": {"kms:RecipientAttestation:PCR0": "11" * 48}}),
                    statement({"StringEquals": {"kms:RecipientAttestation:PCR1": PCR1}})]}, True, False),
    ({"Statement": statement({"StringEquals": {"kms:RecipientAttestation:PCR0": PCR0}})}, True, False),
    ([statement({"StringEquals": {"kms:RecipientAttestation:PCR0": "11" * 48}}), statement({})], True, True),
], ids=["shorthand", "case", "value-list", "two-keys-one-wrong", "ignore-case", "equals", "equals-upper",
        "if-exists", "null-false", "null-true", "two-operators", "pcr31-absent", "any-statement",
        "single-statement-document", "unconditional-statement"])
def test_condition_semantics(policy: Any, with_recipient: bool, without_recipient: bool) -> None:
    conditions = AttestationConditions.from_json(policy)
    assert (conditions.evaluate(CONTEXT) is None) == with_recipient
    assert (conditions.evaluate(NO_RECIPIENT) is None) == without_recipient


def test_statement_as_printed_by_a_policy_generator() -> None:
    """A full key-policy statement (the form `nitrokit policy` prints) loads as the simulator's conditions."""
    text = json.dumps({
        "Sid": "AllowEnclaveGenerateRandom",
        "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::111122223333:role/enclave-parent"},
        "Action": ["kms:GenerateRandom", "kms:Decrypt", "kms:GenerateDataKey"],
        "Resource": "*",
        "Condition": {"StringEqualsIgnoreCase": {"kms:RecipientAttestation:ImageSha384": PCR0,
                                                 "kms:RecipientAttestation:PCR1": PCR1}},
    })
    conditions = AttestationConditions.from_json(json.loads(text))
    assert conditions.evaluate(CONTEXT) is None
    reason = conditions.evaluate(context_from_pcrs({0: bytes(48), 1: bytes.fromhex(PCR1)}))
    assert reason is not None and "AllowEnclaveGenerateRandom" in reason and "ImageSha384" in reason


def test_require_builder() -> None:
    conditions = AttestationConditions.require(image_sha384=bytes.fromhex(PCR0), pcrs={1: PCR1.upper()})
    assert conditions.evaluate(CONTEXT) is None
    assert conditions.evaluate(context_from_pcrs({0: bytes.fromhex(PCR0)})) is not None


@pytest.mark.parametrize("policy", [
    {},
    {"Statement": []},
    [],
    "text",
    statement({"StringLike": {"kms:RecipientAttestation:PCR0": PCR0}}),
    statement({"ForAnyValue:StringEquals": {"kms:RecipientAttestation:PCR0": PCR0}}),
    statement({"NullIfExists": {"kms:RecipientAttestation:PCR0": "true"}}),
    statement({"StringEquals": {"kms:RecipientAttestation:PCR32": PCR0}}),
    statement({"StringEquals": {"kms:RecipientAttestation:PCR01": PCR0}}),
    statement({"StringEquals": {"kms:ViaService": "ec2.us-east-1.amazonaws.com"}}),
    statement({"StringEquals": {"kms:RecipientAttestation:PCR0": "xyz"}}),
    statement({"StringEquals": {"kms:RecipientAttestation:ImageSha384": "ab" * 32}}),
    statement({"StringEquals": {"kms:RecipientAttestation:PCR0": []}}),
    statement({"StringEquals": {"kms:RecipientAttestation:PCR0": 5}}),
    statement({"Null": {"kms:RecipientAttestation:PCR0": "maybe"}}),
    statement({"StringEquals": {}}),
    statement({"StringEquals": {"kms:RecipientAttestation:PCR0": PCR0}}, Effect="Deny"),
    statement({"StringEquals": {"kms:RecipientAttestation:PCR0": PCR0}}, Unknown=1),
    {"Statement": [statement({})], "Extra": 1},
    {"Statement": [statement({})] * 101},
], ids=["empty", "no-statements", "empty-list", "text", "string-like", "for-any-value", "null-if-exists",
        "pcr32", "pcr-leading-zero", "other-key", "not-hex", "short-image", "no-values", "int-value", "null-maybe",
        "empty-block", "deny", "unknown-statement-key", "unknown-policy-key", "too-many-statements"])
def test_conditions_it_can_not_evaluate_are_refused(policy: Any) -> None:
    with pytest.raises(KmsConfigError):
        AttestationConditions.from_json(policy)


@pytest.mark.parametrize("kwargs", [{}, {"pcrs": {32: PCR0}}, {"pcrs": {0: "zz"}}, {"image_sha384": 5}])
def test_require_refuses_bad_values(kwargs: dict[str, Any]) -> None:
    with pytest.raises(KmsConfigError):
        AttestationConditions.require(**kwargs)


# --- Action, NotAction, Resource, NotResource, Effect: evaluated as IAM does (issue 12, item 15) ---------------

ANY_DOCUMENT = {"Null": {"kms:RecipientAttestation:PCR0": "false"}}


def element_statement(effect: str = "Allow", condition: dict[str, Any] | None = None,
                      **elements: Any) -> dict[str, Any]:
    return {"Effect": effect, **elements, **({"Condition": condition} if condition else {})}


@pytest.mark.parametrize(("elements", "allows"), [
    ({"Action": "kms:GenerateRandom", "Resource": "*"}, True),
    ({"Action": "KMS:generaterandom", "Resource": "*"}, True),  # action names ignore case
    ({"Action": "kms:*", "Resource": "*"}, True),
    ({"Action": "kms:Generate*", "Resource": "*"}, True),
    ({"Action": "kms:Gen?rateRandom", "Resource": "*"}, True),
    ({"Action": "*", "Resource": "*"}, True),
    ({"Action": ["kms:Decrypt", "kms:GenerateRandom"], "Resource": "*"}, True),
    ({"Action": "kms:Decrypt", "Resource": "*"}, False),
    ({"Action": ["kms:GenerateDataKey*", "kms:Encrypt"], "Resource": "*"}, False),
    ({"Action": "s3:*", "Resource": "*"}, False),
    ({"Action": "kms:GenerateRandomX", "Resource": "*"}, False),
    ({"NotAction": "kms:GenerateRandom", "Resource": "*"}, False),
    ({"NotAction": "kms:Generate*", "Resource": "*"}, False),
    ({"NotAction": ["kms:Decrypt"], "Resource": "*"}, True),
    # GenerateRandom uses no key: its resource is "*", which a key ARN pattern never matches.
    ({"Action": "kms:GenerateRandom", "Resource": "arn:aws:kms:us-east-1:111122223333:key/*"}, False),
    ({"Action": "kms:GenerateRandom", "Resource": ["arn:aws:kms:*", "*"]}, True),
    ({"Action": "kms:GenerateRandom", "NotResource": "arn:aws:kms:*:*:key/*"}, True),
    ({"Action": "kms:GenerateRandom", "NotResource": "*"}, False),
], ids=["exact", "case", "kms-star", "generate-star", "question-mark", "star", "list", "other-action",
        "other-patterns", "other-service", "longer-name", "not-action-exact", "not-action-pattern",
        "not-action-other", "key-arn", "arn-or-star", "not-resource-arn", "not-resource-star"])
def test_action_and_resource_elements_decide_whether_a_statement_applies(elements: dict[str, Any],
                                                                          allows: bool) -> None:
    unconditional = AttestationConditions.from_json(element_statement(**elements))
    assert (unconditional.evaluate(NO_RECIPIENT) is None) == allows
    assert (unconditional.evaluate(CONTEXT) is None) == allows
    conditional = AttestationConditions.from_json(element_statement(condition=ANY_DOCUMENT, **elements))
    assert (conditional.evaluate(CONTEXT) is None) == allows
    assert conditional.evaluate(NO_RECIPIENT) is not None


def test_not_action_generate_random_does_not_allow_generate_random() -> None:
    """The review's example: an Allow of everything but GenerateRandom must not allow GenerateRandom."""
    conditions = AttestationConditions.from_json({"Effect": "Allow", "NotAction": "kms:GenerateRandom",
                                                  "Resource": "*"})
    reason = conditions.evaluate(NO_RECIPIENT)
    assert reason is not None and "NotAction" in reason


@pytest.mark.parametrize(("deny", "with_recipient", "without_recipient"), [
    (element_statement("Deny", {"Null": {"kms:RecipientAttestation:PCR0": "true"}}, Action="kms:*",
                       Resource="*"), True, False),
    (element_statement("Deny", None, Action="kms:GenerateRandom", Resource="*"), False, False),
    (element_statement("Deny", None, NotAction="kms:GenerateRandom", Resource="*"), True, True),
    (element_statement("Deny", None, Action="kms:GenerateRandom", Resource="arn:aws:kms:*"), True, True),
    (element_statement("Deny", {"StringEquals": {"kms:RecipientAttestation:PCR0": PCR0}}, Action="kms:Generate*",
                       Resource="*"), False, True),
], ids=["deny-without-recipient", "deny-all", "deny-other-actions", "deny-on-keys-only", "deny-this-image"])
def test_an_applying_deny_wins_over_every_allow(deny: dict[str, Any], with_recipient: bool,
                                               without_recipient: bool) -> None:
    allow_all = element_statement(Action="kms:*", Resource="*")
    for policy in ([allow_all, deny], [deny, allow_all], {"Version": "2012-10-17", "Statement": [deny, allow_all]}):
        conditions = AttestationConditions.from_json(policy)
        assert (conditions.evaluate(CONTEXT) is None) == with_recipient
        assert (conditions.evaluate(NO_RECIPIENT) is None) == without_recipient
    if not without_recipient:
        assert "explicit Deny" in (AttestationConditions.from_json([allow_all, deny]).evaluate(NO_RECIPIENT) or "")


@pytest.mark.parametrize(("policy", "fragment"), [
    ({"Effect": "Allow", "Resource": "*"}, "Action"),
    ({"Effect": "Allow", "Action": "kms:*", "NotAction": "kms:Decrypt", "Resource": "*"}, "both Action"),
    ({"Effect": "Allow", "Action": "kms:*"}, "Resource"),
    ({"Effect": "Allow", "Action": "kms:*", "Resource": "*", "NotResource": "arn:aws:kms:*"}, "both Resource"),
    ({"Action": "kms:*", "Resource": "*"}, "Effect"),
    ({"Effect": "allow", "Action": "kms:*", "Resource": "*"}, "Effect"),
    ({"Effect": 7, "Action": "kms:*", "Resource": "*"}, "Effect"),
    ({"Effect": "Allow", "Action": "GenerateRandom", "Resource": "*"}, "service:action"),
    ({"Effect": "Allow", "Action": [], "Resource": "*"}, "Action"),
    ({"Effect": "Allow", "Action": ["kms:*", 5], "Resource": "*"}, "Action"),
    ({"Effect": "Allow", "Action": "kms:Generate Random", "Resource": "*"}, "service:action"),
    ({"Effect": "Allow", "Action": "kms:*", "Resource": "key/1234"}, "ARN"),
    ({"Effect": "Allow", "Action": "kms:*", "Resource": "*", "NotPrincipal": {"AWS": "arn:aws:iam::1:root"},
      "Principal": "*"}, "not both"),
    ({"Effect": "Allow", "Action": "kms:*", "Resource": "*", "Principal": 5}, "Principal"),
    ({"Effect": "Allow", "Action": "kms:*", "Resource": "*", "Principal": {"Bogus": "x"}}, "Principal"),
    ({"Effect": "Allow", "Condition": {}}, "Action"),
    ([element_statement("Deny", None, Action="kms:*", Resource="*")], "Allow"),
    ({"Effect": "Allow", "Action": ["kms:*"] * 101, "Resource": "*"}, "more than 100"),
], ids=["no-action", "action-and-not-action", "no-resource", "resource-and-not-resource", "no-effect",
        "lower-case-effect", "int-effect", "action-without-service", "empty-action", "non-string-action",
        "space-in-action", "resource-not-arn", "not-principal", "int-principal", "unknown-principal-type",
        "condition-only", "deny-only", "too-many-actions"])
def test_statements_iam_would_not_evaluate_are_refused(policy: Any, fragment: str) -> None:
    with pytest.raises(KmsConfigError, match=fragment):
        AttestationConditions.from_json(policy)


_OTHER_ACCOUNT = "arn:aws:iam::999999999999:role/nobody"


@pytest.mark.parametrize(("principal", "applies"), [
    ({"Principal": "*"}, True),
    ({"Principal": {"AWS": "*"}}, True),
    ({"Principal": {"AWS": "arn:aws:iam::111122223333:root"}}, True),
    ({"Principal": {"AWS": "111122223333"}}, True),
    ({"Principal": {"AWS": ["arn:aws:iam::111122223333:user/nitrokit-kms-sim", _OTHER_ACCOUNT]}}, True),
    ({"Principal": {"AWS": "arn:aws:iam::111122223333:role/enclave-parent"}}, True),
    ({"Principal": {"AWS": "arn:aws:sts::111122223333:assumed-role/enclave-parent/i-0123"}}, True),
    ({"Principal": {"AWS": "arn:aws:kms:us-east-1:111122223333:key/x"}}, False),
    ({"Principal": {"AWS": _OTHER_ACCOUNT}}, False),
    ({"Principal": {"AWS": "999999999999"}}, False),
    ({"Principal": {"Service": "s3.amazonaws.com"}}, False),
    ({"NotPrincipal": {"AWS": _OTHER_ACCOUNT}}, True),
    ({"NotPrincipal": {"AWS": "arn:aws:iam::111122223333:root"}}, False),
    ({}, True),
], ids=["star", "aws-star", "account-root", "account-id", "caller-in-list", "role", "assumed-role", "not-iam",
        "other-account", "other-account-id",
        "service", "not-other", "not-own-account", "no-principal"])
def test_a_principal_is_compared_with_the_simulators_caller(principal: dict[str, Any], applies: bool) -> None:
    """A statement naming another account (or a service) does not apply to the caller, as in IAM; found by the
    hostile re-test: such a statement used to allow GenerateRandom without a Recipient."""
    conditions = AttestationConditions.from_json(
        {"Effect": "Allow", "Action": "kms:GenerateRandom", "Resource": "*", **principal})
    decision = conditions.evaluate({})
    assert (decision is None) == applies, decision
    if not applies:
        assert "does not cover the caller" in (decision or "")


def test_the_callers_account_decides_which_principals_name_it() -> None:
    conditions = AttestationConditions.from_json(
        {"Effect": "Allow", "Principal": {"AWS": _OTHER_ACCOUNT}, "Action": "kms:*", "Resource": "*"})
    assert conditions.evaluate({}) is not None
    assert conditions.evaluate({}, account="999999999999") is None


def test_a_deny_naming_another_account_does_not_deny_the_caller() -> None:
    conditions = AttestationConditions.from_json([
        {"Effect": "Allow", "Action": "kms:*", "Resource": "*"},
        {"Effect": "Deny", "Principal": {"AWS": _OTHER_ACCOUNT}, "Action": "kms:*", "Resource": "*"},
    ])
    assert conditions.evaluate({}) is None


@pytest.mark.parametrize("version", ["1999", "2012-10-18", 2012])
def test_a_policy_version_iam_does_not_know_is_refused(version: Any) -> None:
    with pytest.raises(KmsConfigError, match="Version"):
        AttestationConditions.from_json({"Version": version, "Statement": [
            {"Effect": "Allow", "Action": "kms:GenerateRandom", "Resource": "*"}]})
    for known in ("2012-10-17", "2008-10-17"):
        AttestationConditions.from_json({"Version": known, "Statement": [
            {"Effect": "Allow", "Action": "kms:GenerateRandom", "Resource": "*"}]})


def test_shorthand_and_require_mean_allow_generate_random() -> None:
    for conditions in (AttestationConditions.from_json({"kms:RecipientAttestation:PCR0": PCR0}),
                       AttestationConditions.require(pcrs={0: PCR0})):
        assert conditions.evaluate(CONTEXT) is None
        assert conditions.evaluate(CONTEXT, action="kms:Decrypt") is not None
