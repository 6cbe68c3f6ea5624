"""Writing IAM / key-policy statements that bind KMS operations to an enclave's measurements.

One of three "policy" modules, each for its own job: this one writes statements for AWS;
:mod:`nitrokit.kms.conditions` evaluates such statements inside the simulated KMS; and
:mod:`nitrokit.attestation.policy` is what a verified attestation document must say (``Policy``).

AWS KMS checks the attestation document of a request's ``Recipient`` against ``kms:RecipientAttestation:*``
condition keys: ``ImageSha384`` (the enclave's PCR0) and ``PCR<N>``, each a lower-case hex SHA-384 value
(96 digits), compared with ``StringEqualsIgnoreCase`` in AWS's examples. A mismatch is AccessDeniedException.
:func:`build_statement` writes one statement of the standard shape.

Which policy the statement belongs in depends on the operation. ``kms:GenerateRandom`` uses no KMS key, so no
key policy governs it: only IAM identity policies do. For it, the statement has no ``Principal`` and
``Resource`` ``"*"``::

    {"Sid": "...", "Effect": "Allow", "Action": ["kms:GenerateRandom"], "Resource": "*",
     "Condition": {"StringEqualsIgnoreCase": {"kms:RecipientAttestation:PCR0": "<96 hex digits>", ...}}}

to attach to the role's IAM policy. The key-based operations (Decrypt, DeriveSharedSecret, GenerateDataKey,
GenerateDataKeyPair) are also governed by the key's policy: with ``role_arn`` the statement names that
principal (``"Principal": {"AWS": "<role ARN>"}``) and is a key-policy statement, to add next to the key's
administrators' statement (a key policy made of this statement alone would lock everyone else out).
``role_arn`` together with ``kms:GenerateRandom`` is refused, because such a key-policy statement would never
apply. nitrokit's simulated KMS loads the same statement as its conditions
(``nitrokit.kms.AttestationConditions.from_json(statement)``), so a policy can be tried offline first.

Choices: the default action is ``kms:GenerateRandom`` only, the one operation nitrokit's enclave service
calls (least privilege); ``actions`` may add the other operations that take a Recipient, and nothing else,
because the condition keys only exist on those. At least one measurement is required: a statement without
one would let the role call the operation without any attestation.

:func:`build_document` wraps a statement in a whole policy document, ready to load as it is. An IAM statement
becomes ``{"Version": "2012-10-17", "Statement": [statement]}``. A key-policy statement gets, before it, the
administrators' statement KMS's lockout safety check asks for (the new policy must let the account update it):
the account root (or ``admin_arn``) may do everything with the key *except* the bound actions
(``NotAction``). KMS's usual ``"Action": "kms:*"`` root statement would also work for the safety check, but it
lets any IAM policy of the account grant kms:Decrypt with no attestation at all, so the measurements would bind
nothing; with ``NotAction`` the bound statement is the only way to the bound actions.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from nitrokit.attestation import PCR_COUNT
from nitrokit.condition_keys import IMAGE_SHA384_KEY, KEY_NAMESPACE, pcr_key
from nitrokit.errors import UsageError
from nitrokit.hextext import decode_hex

__all__ = [
    "DEFAULT_ACTIONS",
    "DEFAULT_SID",
    "GENERATE_RANDOM",
    "RECIPIENT_ACTIONS",
    "PolicyStatementError",
    "build_document",
    "build_statement",
]

OPERATOR = "StringEqualsIgnoreCase"
SHA384_HEX_DIGITS = 96
RECIPIENT_ACTIONS = (
    "kms:Decrypt",
    "kms:DeriveSharedSecret",
    "kms:GenerateDataKey",
    "kms:GenerateDataKeyPair",
    "kms:GenerateRandom",
)
GENERATE_RANDOM = "kms:GenerateRandom"
DEFAULT_ACTIONS = (GENERATE_RANDOM,)
DEFAULT_SID = "AllowNitroEnclaveWithTheseMeasurements"

# IAM principals a key policy can name: an account root, a role or a user (with optional path).
_ARN_RE = re.compile(r"arn:aws(?:-[a-z]+)*:iam::[0-9]{12}:(?:root|(?:role|user)/[A-Za-z0-9+=,.@_/-]{1,512})")
_SID_RE = re.compile(r"[A-Za-z0-9 ]{1,128}")
_ACCOUNT_RE = re.compile(r"arn:(aws(?:-[a-z]+)*):iam::([0-9]{12}):")
POLICY_VERSION = "2012-10-17"
ADMIN_SID = "AllowKeyAdministrationButNotTheBoundActions"


class PolicyStatementError(UsageError):
    """The measurements, principal, actions or Sid given for a policy statement are not valid (or do not fit
    together, such as a principal with kms:GenerateRandom)."""


def build_statement(
    *,
    pcrs: Mapping[int, bytes | str] | None = None,
    image_sha384: bytes | str | None = None,
    role_arn: str | None = None,
    actions: Iterable[str] = DEFAULT_ACTIONS,
    sid: str = DEFAULT_SID,
    allow_zero: bool = False,
) -> dict[str, Any]:
    """A policy statement allowing ``actions`` only to an enclave with these measurements.

    Without ``role_arn`` it is an IAM identity-policy statement (no ``Principal``, ``Resource`` ``"*"``), to
    attach to the role. With ``role_arn`` it is a key-policy statement naming that principal; this is refused
    when ``actions`` include ``kms:GenerateRandom``, which uses no key and so is not governed by key policies.

    ``pcrs`` maps PCR indices (0..31) to SHA-384 values (48 bytes, or 96 hex digits in any case, optional
    ``0x``); ``image_sha384`` is PCR0 under its own condition key. If both ImageSha384 and PCR0 are given they
    must be equal. Values are written lower-case. An all-zero value is refused unless ``allow_zero``: a
    debug-mode enclave reports PCR0..15 as zeros, so such a condition would admit any debug enclave.
    Raises :class:`PolicyStatementError` on invalid input.
    """
    conditions: dict[str, str] = {}
    image = _hex_value(image_sha384, what="ImageSha384") if image_sha384 is not None else None
    if image is not None:
        conditions[IMAGE_SHA384_KEY] = image
    if pcrs is not None and not isinstance(pcrs, Mapping):
        raise PolicyStatementError("pcrs must be a mapping of PCR index to value")
    for index, value in sorted((pcrs or {}).items(), key=lambda item: _index(item[0])):
        conditions[pcr_key(index)] = _hex_value(value, what=f"PCR{index}")
    if not conditions:
        raise PolicyStatementError("give at least one measurement (--pcr N=HEX or --image-sha384 HEX): a statement "
                             "without one would not require any attestation")
    if not allow_zero:
        for key, value in conditions.items():
            if not value.strip("0"):
                name = key.removeprefix(KEY_NAMESPACE)
                raise PolicyStatementError(f"{name} is all zeros: debug-mode enclaves report zero PCRs, so this would "
                                     "admit any enclave run with --debug-mode (pass allow_zero / --allow-zero if "
                                     "that is really meant)")
    pcr0 = conditions.get(pcr_key(0))
    if image is not None and pcr0 is not None and pcr0 != image:
        raise PolicyStatementError("ImageSha384 is PCR0, but the two values differ: no enclave could match both")

    chosen = _actions(actions)
    statement: dict[str, Any] = {"Sid": _sid(sid), "Effect": "Allow"}
    if role_arn is not None:
        principal = _principal(role_arn)
        if GENERATE_RANDOM in chosen:
            raise PolicyStatementError("kms:GenerateRandom uses no KMS key, so a key policy (with a Principal) cannot "
                                 "grant it: omit the role ARN and attach this statement to the role's IAM policy "
                                 "instead (a role ARN is only for key-based actions such as kms:Decrypt)")
        statement["Principal"] = {"AWS": principal}
    statement["Action"] = chosen
    statement["Resource"] = "*"
    statement["Condition"] = {OPERATOR: conditions}
    return statement


def _index(index: object) -> int:
    if type(index) is not int or not 0 <= index < PCR_COUNT:
        raise PolicyStatementError(f"PCR index {index!r} is not an integer in 0..{PCR_COUNT - 1}")
    return index


def _hex_value(value: object, *, what: str) -> str:
    if isinstance(value, bytes | bytearray):
        if len(value) * 2 != SHA384_HEX_DIGITS:
            raise PolicyStatementError(f"{what} is {len(value)} bytes, expected 48 (SHA-384)")
        return bytes(value).hex()
    if not isinstance(value, str):
        raise PolicyStatementError(f"{what} must be bytes or hex text, got {type(value).__name__}")
    digits = decode_hex(value, what=what, error=PolicyStatementError).hex()
    if len(digits) != SHA384_HEX_DIGITS:
        raise PolicyStatementError(f"{what} has {len(digits)} hex digits, expected {SHA384_HEX_DIGITS} (SHA-384)")
    return digits


def _principal(role_arn: object) -> str:
    if not isinstance(role_arn, str) or not _ARN_RE.fullmatch(role_arn):
        shown = role_arn[:80] if isinstance(role_arn, str) else type(role_arn).__name__
        raise PolicyStatementError(f"{shown!r} is not an IAM role, user or account-root ARN "
                             "(arn:aws:iam::<12-digit account>:role/<name>)")
    return role_arn


def _actions(actions: Iterable[str]) -> list[str]:
    if isinstance(actions, str):
        actions = [actions]
    chosen: list[str] = []
    for action in actions:
        canonical = next((a for a in RECIPIENT_ACTIONS if isinstance(action, str) and a.lower() == action.lower()),
                         None)
        if canonical is None:
            raise PolicyStatementError(f"action {action!r} does not take a Recipient attestation; use one of "
                                 f"{', '.join(RECIPIENT_ACTIONS)}")
        if canonical not in chosen:
            chosen.append(canonical)
    if not chosen:
        raise PolicyStatementError("give at least one action")
    return sorted(chosen)


def _sid(sid: object) -> str:
    if not isinstance(sid, str) or not _SID_RE.fullmatch(sid):
        raise PolicyStatementError("Sid must be 1 to 128 letters, digits or spaces")
    return sid


def build_document(statement: Mapping[str, Any], *, admin_arn: str | None = None) -> dict[str, Any]:
    """A whole policy document for ``statement`` (from :func:`build_statement`), loadable as it is.

    Without a ``Principal`` (an IAM statement) the document holds the statement alone. With one (a key-policy
    statement) an administrators' statement comes first: ``admin_arn`` (default: the root of the statement's
    principal's account) may do every KMS action on the key except the statement's actions, so KMS's lockout
    safety check passes and the bound actions stay bound to the measurements. ``admin_arn`` is refused for an
    IAM statement. Raises :class:`PolicyStatementError`.
    """
    principal = statement.get("Principal")
    if principal is None:
        if admin_arn is not None:
            raise PolicyStatementError("an administrator ARN is only for a key policy (give the role ARN too)")
        return {"Version": POLICY_VERSION, "Statement": [dict(statement)]}
    role_arn = principal["AWS"] if isinstance(principal, Mapping) else None
    match = _ACCOUNT_RE.match(role_arn) if isinstance(role_arn, str) else None
    if match is None:
        raise PolicyStatementError("the statement's Principal is not one IAM ARN")
    admin = _principal(admin_arn) if admin_arn is not None else f"arn:{match[1]}:iam::{match[2]}:root"
    administrators = {"Sid": ADMIN_SID, "Effect": "Allow", "Principal": {"AWS": admin},
                      "NotAction": list(statement["Action"]), "Resource": "*"}
    return {"Version": POLICY_VERSION, "Statement": [administrators, dict(statement)]}
