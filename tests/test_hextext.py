"""common/hextext.py: the one hex rule (optional 0x/0X, even length, no whitespace inside), and that every
place decoding hex from user input follows it."""

from __future__ import annotations

import pytest

from nitrokit.attestation import Policy
from nitrokit.errors import UsageError
from nitrokit.hextext import decode_hex
from nitrokit.kms import AttestationConditions, KmsConfigError
from nitrokit.policy_statements import PolicyStatementError, build_statement

DIGEST = "ab" * 48


@pytest.mark.parametrize(("text", "expected"), [
    ("", b""),
    ("00ff", b"\x00\xff"),
    ("0x00FF", b"\x00\xff"),
    ("0X00fF", b"\x00\xff"),
    (" 0xab\n", b"\xab"),  # surrounding whitespace is ignored (a value from a file or $(...))
])
def test_accepted_forms(text: str, expected: bytes) -> None:
    assert decode_hex(text, what="value") == expected


@pytest.mark.parametrize(("text", "fragment"), [
    ("ab cd", "character 3 is not hex"),  # bytes.fromhex would accept this
    ("ab\tcd", "character 3 is not hex"),
    ("abc", "3 hex digits, an odd number"),
    ("0x", None),
    ("0xx1", "character 3 is not hex"),
    ("x0ab", "character 1 is not hex"),
    ("ab٣٣", "character 3 is not hex"),  # other scripts' digits are not hex digits
    ("  zz", "character 3 is not hex"),  # positions count in the text as given
])
def test_refused_forms_name_the_fault(text: str, fragment: str | None) -> None:
    if fragment is None:
        assert decode_hex(text, what="value") == b""
        return
    with pytest.raises(UsageError, match=fragment) as info:
        decode_hex(text, what="--nonce")
    assert str(info.value).startswith("--nonce ")


def test_the_value_itself_is_never_in_the_message() -> None:
    with pytest.raises(UsageError) as info:
        decode_hex("5ecre7-5ecre7", what="--user-data")
    assert "5ecre7" not in str(info.value)
    with pytest.raises(UsageError, match="must be hex text, got int"):
        decode_hex(5, what="value")


def test_the_caller_chooses_the_error_type() -> None:
    with pytest.raises(KmsConfigError):
        decode_hex("zz", what="x", error=KmsConfigError)


def test_every_caller_follows_the_same_rule() -> None:
    # 0X was refused by the attestation Policy and the simulated KMS's require() (removeprefix("0x") only).
    assert Policy(pcrs={0: "0X" + DIGEST}).pcrs == {0: bytes.fromhex(DIGEST)}
    AttestationConditions.require(image_sha384="0X" + DIGEST)
    assert build_statement(pcrs={0: "0X" + DIGEST})["Condition"]["StringEqualsIgnoreCase"]
    # Whitespace inside was accepted by the CLI and the attestation Policy (bytes.fromhex).
    split = DIGEST[:48] + " " + DIGEST[48:]
    with pytest.raises(UsageError, match="not valid hex"):
        Policy(pcrs={0: split})
    with pytest.raises(PolicyStatementError, match="not valid hex"):
        build_statement(pcrs={0: split})
    with pytest.raises(KmsConfigError, match="not valid hex"):
        AttestationConditions.require(pcrs={0: split})


def test_policy_values_must_be_bare_hex_because_kms_compares_text() -> None:
    with pytest.raises(KmsConfigError, match="bare hex digits"):
        AttestationConditions.from_json({"kms:RecipientAttestation:PCR0": "0x" + DIGEST})
    with pytest.raises(KmsConfigError, match="not valid hex"):
        AttestationConditions.from_json({"kms:RecipientAttestation:PCR0": "zz" * 48})
