"""Attestation conditions and key policies: the simulated KMS's one policy evaluator.

It evaluates the statements :mod:`nitrokit.policy_statements` writes (and any other statement using the same
condition keys): as the ``conditions`` setting for GenerateRandom, and as each key's policy for the key
operations, where the request's condition keys also include the encryption context
(``kms:EncryptionContext:<key>``, ``kms:EncryptionContextKeys``: :func:`request_context`) and the action and
resource are the operation's and the key's ARN. :mod:`nitrokit.attestation.policy` is unrelated (what a
verified document must say).

Real KMS lets a policy statement say, for example::

    {"Effect": "Allow", "Action": "kms:GenerateRandom", "Resource": "*",
     "Condition": {"StringEqualsIgnoreCase": {"kms:RecipientAttestation:PCR0": "<96 hex digits>"}}}

The simulator accepts exactly such statements (one, a list of them, or a whole policy document with
``Statement``) and also a shorthand mapping ``{"kms:RecipientAttestation:PCR0": "<hex>"}`` (one ``Allow`` of
``kms:GenerateRandom`` on ``"*"``). It evaluates them the way IAM does, restricted to what the simulator can
know:

- a statement applies to a request when its ``Action`` (or ``NotAction``), its ``Resource`` (or
  ``NotResource``) and all its conditions match; an explicit ``Deny`` that applies wins, otherwise the request
  is allowed if an ``Allow`` applies, and denied by default;
- ``Action``/``NotAction``: ``"*"`` or ``service:name`` patterns with IAM's wildcards ``*`` and ``?``
  (``kms:*``, ``kms:Generate*``), matched case-insensitively; the request's action is ``kms:GenerateRandom``;
- ``Resource``/``NotResource``: ``"*"`` or ARN patterns with the same wildcards, matched case-sensitively.
  GenerateRandom uses no KMS key, so its resource is ``"*"``: only ``"*"`` matches it (an ARN pattern never
  does, and ``NotResource`` with ARNs always does);
- inside a statement every (operator, key) clause must hold; a clause with a list of values holds if the
  document matches ANY of them;
- keys are ``kms:RecipientAttestation:ImageSha384`` (= PCR0) and ``kms:RecipientAttestation:PCR<0..31>``,
  matched case-insensitively like IAM condition keys; the request's values are lower-case hex; and
  ``kms:EncryptionContext:<key>`` and the multivalued ``kms:EncryptionContextKeys`` (with ``ForAnyValue:`` /
  ``ForAllValues:`` only);
- operators: ``StringEqualsIgnoreCase``, ``StringEquals`` (exact, so upper-case hex never matches, as in real
  KMS), ``StringNotEquals``, ``StringNotEqualsIgnoreCase``, ``StringLike``, ``StringNotLike`` (not on the
  attestation keys), ``Null`` (``"true"``: the key must be absent, ``"false"``: present, i.e. a Recipient is
  required), the string ones optionally with the ``IfExists`` suffix;
- a request without a Recipient has none of the attestation keys, so a ``StringEquals*`` clause fails for it
  (IAM semantics), unless ``IfExists`` is used; a negated operator holds for an absent key, as in IAM.

``Effect`` (``Allow`` or ``Deny``), one of ``Action``/``NotAction`` and one of ``Resource``/``NotResource`` are
required, as IAM requires them. ``Principal``/``NotPrincipal`` are compared with the caller, who is taken to be a
principal of the simulator's account (:data:`ACCOUNT_ID` unless the service says otherwise; whoever holds the
credentials may act as any role or user of it): ``"*"``, the account id or any IAM/STS ARN of that account name the
caller; a principal of another account, or a service, does not, so its statement does not apply, as in IAM.
``Version``, if given, is ``2012-10-17`` or ``2008-10-17``. ``Sid`` names the statement in messages. Anything else
(another condition key or operator; malformed hex or patterns; a policy without any ``Allow`` statement, which would
deny every call) raises :class:`~nitrokit.kms.errors.KmsConfigError` when the conditions are built, so a policy the
simulator cannot evaluate is refused rather than half-applied.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from nitrokit import strict_json
from nitrokit.attestation import PCR_COUNT, PCR_LENGTHS
from nitrokit.condition_keys import IMAGE_SHA384_KEY, KEY_NAMESPACE, PCR_KEY_PREFIX, pcr_key
from nitrokit.hextext import decode_hex
from nitrokit.kms.errors import KmsConfigError
from nitrokit.text import escaped

__all__ = ["ENCRYPTION_CONTEXT_KEYS", "ENCRYPTION_CONTEXT_PREFIX", "GENERATE_RANDOM", "AttestationConditions", "Clause",
           "ContextValue", "Patterns", "Statement", "context_from_pcrs", "request_context"]

#: the action every request to the simulator is (the only operation it serves)
GENERATE_RANDOM = "kms:GenerateRandom"
#: the resource of an action that uses no KMS key, as IAM evaluates it
NO_RESOURCE = "*"

_HEX_LENGTHS = tuple(2 * size for size in sorted(PCR_LENGTHS))  # SHA-256, SHA-384, SHA-512 PCRs
_MAX_STATEMENTS = 100
_MAX_POLICY_BYTES = 1024 * 1024
_MAX_VALUES = 100
_MAX_PATTERN_CHARS = 2048

_OPERATORS = ("StringEquals", "StringEqualsIgnoreCase", "StringNotEquals", "StringNotEqualsIgnoreCase", "StringLike",
              "StringNotLike", "Null")
_NEGATED = ("StringNotEquals", "StringNotEqualsIgnoreCase", "StringNotLike")
_SET_PREFIXES = ("ForAnyValue", "ForAllValues")
#: the request's encryption context, one key per pair (``kms:EncryptionContext:<key>``) and all its keys
ENCRYPTION_CONTEXT_PREFIX = "kms:EncryptionContext:"
ENCRYPTION_CONTEXT_KEYS = "kms:EncryptionContextKeys"
#: a condition key's value in a request: one string, or several for a multivalued key
ContextValue = str | tuple[str, ...]
_STATEMENT_KEYS = {"Sid", "Effect", "Principal", "NotPrincipal", "Action", "NotAction", "Resource", "NotResource",
                   "Condition"}
_POLICY_KEYS = {"Version", "Id", "Statement"}
_POLICY_VERSIONS = ("2012-10-17", "2008-10-17")

#: The simulator's one caller: whoever holds its credentials, an IAM user of one account (AWS's example id).
ACCOUNT_ID = "111122223333"
CALLER_ARN = f"arn:aws:iam::{ACCOUNT_ID}:user/nitrokit-kms-sim"


def names_caller(principal: str, account: str) -> bool:
    """Whether a Principal entry names a caller of ``account``: "*", the account id or an IAM/STS ARN in it."""
    if principal in ("*", account):
        return True
    parts = principal.split(":", 5)
    return len(parts) == 6 and parts[0] == "arn" and parts[2] in ("iam", "sts") and parts[4] == account


_PCR_KEY_RE = re.compile(re.escape(PCR_KEY_PREFIX.lower()) + r"([0-9]{1,2})")
# IAM's action syntax: "*" or service-prefix:action, the action part letters/digits with * and ? wildcards.
_ACTION_RE = re.compile(r"\*|[A-Za-z0-9-]{1,64}:[A-Za-z0-9*?]{1,128}")
_EFFECTS = ("Allow", "Deny")
_PRINCIPAL_TYPES = {"AWS", "Service", "Federated", "CanonicalUser"}


@dataclass(frozen=True)
class Clause:
    """One ``operator: {key: values}`` test. ``key`` is in canonical spelling; ``set_operator`` is
    ``"ForAnyValue"`` or ``"ForAllValues"`` for a multivalued key (``kms:EncryptionContextKeys``)."""

    operator: str
    key: str
    values: tuple[str, ...]
    if_exists: bool = False
    set_operator: str | None = None

    def holds(self, context: Mapping[str, ContextValue]) -> bool:
        actual = context.get(self.key.lower())
        if self.operator == "Null":
            # "true" means the key must be absent; several values are alternatives.
            return any((value == "true") == (actual is None) for value in self.values)
        if self.set_operator is not None:
            items = (actual,) if isinstance(actual, str) else (actual or ())
            if self.set_operator == "ForAllValues":  # IAM: true for an absent or empty key
                return all(self._one(item) for item in items)
            return any(self._one(item) for item in items)
        if actual is None:
            # IAM: a negated operator holds when the key is absent; the others hold only with IfExists.
            return self.if_exists or self.operator in _NEGATED
        return self._one(actual if isinstance(actual, str) else ",".join(actual))

    def _one(self, actual: str) -> bool:
        """Whether one request value satisfies the clause: for a negated operator, it matches none."""
        base = self.operator.replace("Not", "")
        if base == "StringEqualsIgnoreCase":
            hit = any(actual.lower() == value.lower() for value in self.values)
        elif base == "StringLike":
            hit = any(_wildcard_match(value, actual) for value in self.values)
        else:
            hit = any(actual == value for value in self.values)
        return not hit if self.operator in _NEGATED else hit

    def describe(self) -> str:
        prefix = f"{self.set_operator}:" if self.set_operator else ""
        suffix = "IfExists" if self.if_exists else ""
        shown = ", ".join(self.values) if len(self.values) <= 2 else f"{self.values[0]}, ... ({len(self.values)})"
        return f"{prefix}{self.operator}{suffix} {self.key} [{shown}]"


@dataclass(frozen=True)
class Patterns:
    """A statement's ``Action``/``NotAction`` or ``Resource``/``NotResource`` element: IAM wildcard patterns.

    ``element`` names which one; a ``Not*`` element matches everything its patterns do not.
    """

    element: str
    patterns: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.element not in ("Action", "NotAction", "Resource", "NotResource"):
            raise KmsConfigError(f"attestation conditions: {self.element!r} is not a pattern element")
        if not self.patterns or not all(isinstance(p, str) for p in self.patterns):
            raise KmsConfigError(f"attestation conditions: {self.element} must be a non-empty list of strings")

    def matches(self, value: str) -> bool:
        fold = self.element.endswith("Action")  # IAM action names ignore case; ARNs do not
        hit = any(_wildcard_match(p.lower() if fold else p, value.lower() if fold else value) for p in self.patterns)
        return not hit if self.element.startswith("Not") else hit


def _wildcard_match(pattern: str, text: str) -> bool:
    """IAM's wildcards: ``*`` any run of characters, ``?`` one, all else literal.

    Two pointers with a return to the last ``*``: O(len(pattern) * len(text)) at worst, where a regex could
    backtrack exponentially on a pattern full of stars.
    """
    p = t = 0
    star = -1
    resume = 0
    while t < len(text):
        if p < len(pattern) and pattern[p] in ("?", text[t]) and pattern[p] != "*":
            p += 1
            t += 1
        elif p < len(pattern) and pattern[p] == "*":
            star, resume = p, t
            p += 1
        elif star >= 0:
            p = star + 1
            resume += 1
            t = resume
        else:
            return False
    return all(char == "*" for char in pattern[p:])


_ANY_GENERATE_RANDOM = Patterns("Action", (GENERATE_RANDOM,))
_ANY_RESOURCE = Patterns("Resource", (NO_RESOURCE,))


@dataclass(frozen=True)
class Statement:
    """One policy statement: it applies when its action, resource and every clause match.

    The defaults are what the shorthand and :meth:`AttestationConditions.require` mean: ``Allow``
    ``kms:GenerateRandom`` on ``"*"``. ``sid`` is kept for messages.
    """

    clauses: tuple[Clause, ...]
    sid: str | None = None
    effect: str = "Allow"
    action: Patterns = _ANY_GENERATE_RANDOM
    resource: Patterns = _ANY_RESOURCE
    #: the Principal (or, with ``not_principal``, NotPrincipal) entries; None: no such element (an identity
    #: policy, which applies to its own caller)
    principals: tuple[str, ...] | None = None
    not_principal: bool = False

    def __post_init__(self) -> None:
        if self.effect not in _EFFECTS:
            raise KmsConfigError(f"attestation conditions: Effect must be 'Allow' or 'Deny', got {self.effect!r}")
        if not self.action.element.endswith("Action") or not self.resource.element.endswith("Resource"):
            raise KmsConfigError("attestation conditions: action must be an Action/NotAction element and resource "
                                 "a Resource/NotResource element")

    def unmet(self, context: Mapping[str, ContextValue], *, action: str = GENERATE_RANDOM,
              resource: str = NO_RESOURCE, account: str = ACCOUNT_ID) -> str | None:
        """None if the statement applies to this request, else what does not match."""
        if not self.action.matches(action):
            return f"{self.action.element} does not cover {action}"
        if not self.resource.matches(resource):
            return f"{self.resource.element} does not cover resource {resource!r}"
        if self.principals is not None:
            named = any(names_caller(principal, account) for principal in self.principals)
            if named == self.not_principal:
                element = "NotPrincipal" if self.not_principal else "Principal"
                return f"{element} does not cover the caller (a principal of account {account})"
        for clause in self.clauses:
            if not clause.holds(context):
                return f"{clause.describe()} not met"
        return None


@dataclass(frozen=True)
class AttestationConditions:
    """A policy's statements; a request is allowed if an ``Allow`` applies in full and no ``Deny`` does."""

    statements: tuple[Statement, ...]

    def __post_init__(self) -> None:
        if not self.statements:
            raise KmsConfigError("attestation conditions: no statements (pass None for no conditions)")
        if not any(statement.effect == "Allow" for statement in self.statements):
            raise KmsConfigError("attestation conditions: no statement has Effect 'Allow', so every call would be "
                                 "denied (IAM denies by default); add an Allow statement, or pass no conditions")

    @classmethod
    def require(
        cls, *, image_sha384: bytes | str | None = None, pcrs: Mapping[int, bytes | str] | None = None
    ) -> AttestationConditions:
        """One statement requiring these exact values (``StringEqualsIgnoreCase``), as a policy would."""
        clauses: list[Clause] = []
        if image_sha384 is not None:
            image = _as_hex(image_sha384, what="image_sha384")
            clauses.append(_string_clause("StringEqualsIgnoreCase", IMAGE_SHA384_KEY, [image]))
        for index, value in sorted((pcrs or {}).items()):
            if type(index) is not int or not 0 <= index < PCR_COUNT:
                raise KmsConfigError(f"attestation conditions: PCR index {index!r} is not in 0..{PCR_COUNT - 1}")
            digest = _as_hex(value, what=f"PCR{index}")
            clauses.append(_string_clause("StringEqualsIgnoreCase", pcr_key(index), [digest]))
        if not clauses:
            raise KmsConfigError("attestation conditions: give image_sha384 or at least one PCR")
        return cls((Statement(tuple(clauses)),))

    @classmethod
    def from_json_text(cls, text: bytes | str, *, what: str = "policy") -> AttestationConditions:
        """Conditions from a policy file's JSON text, loaded strictly (no duplicate keys, NaN, deep nesting)."""
        try:
            data = strict_json.loads(text, what=what, max_bytes=_MAX_POLICY_BYTES)
        except strict_json.StrictJsonError as exc:
            raise KmsConfigError(f"attestation conditions: {exc}") from None
        return cls.from_json(data)

    @classmethod
    def from_json(cls, data: Any) -> AttestationConditions:
        """Conditions from a policy document, a statement, a list of statements or a shorthand mapping."""
        if isinstance(data, list):
            return cls(tuple(_statement(item, position=f"Statement[{i}]") for i, item in
                             enumerate(_bounded(data, "statements"))))
        if not isinstance(data, Mapping):
            raise KmsConfigError(f"attestation conditions: expected an object or a list, got {type(data).__name__}")
        if "Statement" in data:
            _check_keys(data, _POLICY_KEYS, "policy document")
            if "Version" in data and data["Version"] not in _POLICY_VERSIONS:
                raise KmsConfigError(f"attestation conditions: Version must be one of {', '.join(_POLICY_VERSIONS)}, "
                                     f"got {_shown(data['Version'])}")
            body = data["Statement"]
            items = body if isinstance(body, list) else [body]
            return cls(tuple(_statement(item, position=f"Statement[{i}]") for i, item in
                             enumerate(_bounded(items, "statements"))))
        if any(key in _STATEMENT_KEYS for key in data):  # a statement (shorthand keys are condition keys)
            return cls((_statement(data, position="Statement"),))
        # Shorthand: {condition key: value or [values]}, each StringEqualsIgnoreCase.
        clauses = tuple(_string_clause("StringEqualsIgnoreCase", _canonical_key(key), _values(value, key))
                        for key, value in data.items())
        if not clauses:
            raise KmsConfigError("attestation conditions: the mapping is empty")
        return cls((Statement(clauses),))

    def evaluate(self, context: Mapping[str, ContextValue], *, action: str = GENERATE_RANDOM,
                 resource: str = NO_RESOURCE, account: str = ACCOUNT_ID) -> str | None:
        """None if the request is allowed, else a short reason for the log.

        ``context`` holds the request's condition keys (:func:`context_from_pcrs`); an applying ``Deny`` wins
        over every ``Allow``, and without an applying ``Allow`` the request is denied.
        """
        reasons = []
        allowed = False
        for index, statement in enumerate(self.statements):
            unmet = statement.unmet(context, action=action, resource=resource, account=account)
            name = statement.sid or f"statement {index}"
            if unmet is None:
                if statement.effect == "Deny":
                    return f"{name}: explicit Deny"
                allowed = True
            elif statement.effect == "Allow":
                reasons.append(f"{name}: {unmet}")
        return None if allowed else "; ".join(reasons)


def context_from_pcrs(pcrs: Mapping[int, bytes] | None) -> dict[str, str]:
    """The condition-key context of a request: lower-case keys to lower-case hex; empty without Recipient."""
    if pcrs is None:
        return {}
    context = {pcr_key(index).lower(): value.hex() for index, value in pcrs.items()}
    if 0 in pcrs:
        context[IMAGE_SHA384_KEY.lower()] = pcrs[0].hex()
    return context


def request_context(pcrs: Mapping[int, bytes] | None,
                    encryption_context: Mapping[str, str] | None = None) -> dict[str, ContextValue]:
    """The condition keys of a key operation: the Recipient's PCRs (:func:`context_from_pcrs`) and the
    encryption context, each pair as ``kms:EncryptionContext:<key>`` (the key part matched
    case-insensitively, as IAM matches condition key names; values compared as written) and its keys as the
    multivalued ``kms:EncryptionContextKeys`` (absent without a context)."""
    context: dict[str, ContextValue] = dict(context_from_pcrs(pcrs))
    if encryption_context:
        for key, value in encryption_context.items():
            context[(ENCRYPTION_CONTEXT_PREFIX + key).lower()] = value
        context[ENCRYPTION_CONTEXT_KEYS.lower()] = tuple(encryption_context)
    return context


def _statement(data: Any, *, position: str) -> Statement:
    if not isinstance(data, Mapping):
        raise KmsConfigError(f"attestation conditions: {position} is not an object")
    _check_keys(data, _STATEMENT_KEYS, position)
    effect = data.get("Effect")
    if effect not in _EFFECTS:
        raise KmsConfigError(f"attestation conditions: {position}: Effect must be 'Allow' or 'Deny', got "
                             f"{_shown(effect)}")
    sid = data.get("Sid")
    if sid is not None and not isinstance(sid, str):
        raise KmsConfigError(f"attestation conditions: {position}: Sid must be a string")
    if "Principal" in data and "NotPrincipal" in data:
        raise KmsConfigError(f"attestation conditions: {position}: give Principal or NotPrincipal, not both")
    element = "NotPrincipal" if "NotPrincipal" in data else "Principal"
    principals = _principals(data[element], position, element) if element in data else None
    action = _patterns(data, "Action", position)
    resource = _patterns(data, "Resource", position)
    condition = data.get("Condition", {})
    if not isinstance(condition, Mapping):
        raise KmsConfigError(f"attestation conditions: {position}: Condition must be an object")
    clauses: list[Clause] = []
    for operator_name, block in condition.items():
        set_operator, operator, if_exists = _operator(operator_name, position)
        if not isinstance(block, Mapping) or not block:
            raise KmsConfigError(f"attestation conditions: {position}: {operator_name} must map keys to values")
        for key, value in block.items():
            canonical = _canonical_key(key)
            multivalued = canonical == ENCRYPTION_CONTEXT_KEYS
            if operator != "Null" and multivalued != (set_operator is not None):
                raise KmsConfigError(f"attestation conditions: {position}: {operator_name} {canonical}: "
                                     + ("a multivalued key needs ForAnyValue: or ForAllValues:" if multivalued else
                                        "ForAnyValue:/ForAllValues: are for multivalued keys "
                                        f"({ENCRYPTION_CONTEXT_KEYS}) only"))
            if operator == "Null":
                clauses.append(Clause("Null", canonical, _null_values(value, key), if_exists))
            else:
                clauses.append(_string_clause(operator, canonical, _values(value, key), if_exists=if_exists,
                                              set_operator=set_operator))
    return Statement(tuple(clauses), sid=sid, effect=effect, action=action, resource=resource,
                     principals=principals, not_principal=element == "NotPrincipal")


def _patterns(data: Mapping[str, Any], name: str, position: str) -> Patterns:
    """The statement's ``name`` or ``Not<name>`` element (exactly one, as IAM requires), checked."""
    given = [element for element in (name, f"Not{name}") if element in data]
    if len(given) != 1:
        problem = "has both" if given else "needs one of"
        raise KmsConfigError(f"attestation conditions: {position} {problem} {name} and Not{name}")
    element = given[0]
    value = data[element]
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(item, str) for item in items):
        raise KmsConfigError(f"attestation conditions: {position}: {element} must be a string or a non-empty list "
                             "of strings")
    for item in _bounded(items, f"{element} entries"):
        valid = (_ACTION_RE.fullmatch(item) if name == "Action" else
                 item == "*" or (item.startswith("arn:") and len(item) <= _MAX_PATTERN_CHARS and item.isprintable()))
        if not valid:
            expected = ("'*' or service:action, e.g. kms:GenerateRandom or kms:Generate*" if name == "Action" else
                        "'*' or an ARN (arn:...)")
            raise KmsConfigError(f"attestation conditions: {position}: {element} entry {_shown(item)} is "
                                 f"not {expected}")
    return Patterns(element, tuple(items))


def _shown(value: Any) -> str:
    """A policy value for a message: strings quoted, escaped and clipped; anything else by its type only."""
    return f"'{escaped(value, 60)}'" if isinstance(value, str) else type(value).__name__


def _principals(value: Any, position: str, element: str) -> tuple[str, ...]:
    """The entries of a Principal/NotPrincipal element; only AWS entries can name the simulator's caller."""
    if value == "*":
        return ("*",)
    if isinstance(value, Mapping) and value and set(value) <= _PRINCIPAL_TYPES:
        entries = [(kind, item) for kind, v in value.items() for item in (v if isinstance(v, list) else [v])]
        if entries and all(isinstance(item, str) and item for _, item in entries):
            return tuple(item if kind == "AWS" else f"{kind}:{item}" for kind, item in entries)
    raise KmsConfigError(f"attestation conditions: {position}: {element} must be '*' or an object such as "
                         '{"AWS": "<ARN>"}')


def _operator(name: Any, position: str) -> tuple[str | None, str, bool]:
    """(set operator or None, base operator, IfExists) of a condition operator's name."""
    if not isinstance(name, str):
        raise KmsConfigError(f"attestation conditions: {position}: condition operator must be a string")
    set_operator, _, rest = name.rpartition(":")
    base = rest.removesuffix("IfExists")
    if (base not in _OPERATORS or (base == "Null" and base != rest)
            or (set_operator and (set_operator not in _SET_PREFIXES or base == "Null"))):
        raise KmsConfigError(f"attestation conditions: {position}: operator {name!r} is not supported "
                             f"(use {', '.join(_OPERATORS)}, the string ones optionally with IfExists or a "
                             "ForAnyValue:/ForAllValues: prefix)")
    return set_operator or None, base, base != rest


def _canonical_key(key: Any) -> str:
    if not isinstance(key, str):
        raise KmsConfigError("attestation conditions: condition keys must be strings")
    lowered = key.lower()
    if lowered == IMAGE_SHA384_KEY.lower():
        return IMAGE_SHA384_KEY
    match = _PCR_KEY_RE.fullmatch(lowered)
    if match and int(match.group(1)) < PCR_COUNT and match.group(1) == str(int(match.group(1))):
        return pcr_key(int(match.group(1)))
    if lowered == ENCRYPTION_CONTEXT_KEYS.lower():
        return ENCRYPTION_CONTEXT_KEYS
    if lowered.startswith(ENCRYPTION_CONTEXT_PREFIX.lower()) and len(key) > len(ENCRYPTION_CONTEXT_PREFIX):
        return ENCRYPTION_CONTEXT_PREFIX + key[len(ENCRYPTION_CONTEXT_PREFIX):]
    raise KmsConfigError(f"attestation conditions: condition key {key!r} is not supported (use "
                         f"{IMAGE_SHA384_KEY}, {PCR_KEY_PREFIX}0..{PCR_COUNT - 1}, "
                         f"{ENCRYPTION_CONTEXT_PREFIX}<key> or {ENCRYPTION_CONTEXT_KEYS})")


def _values(value: Any, key: Any) -> list[str]:
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(item, str) for item in items):
        raise KmsConfigError(f"attestation conditions: {key}: values must be a string or a non-empty list of strings")
    return list(_bounded(items, f"values of {key}"))


def _null_values(value: Any, key: Any) -> tuple[str, ...]:
    items = value if isinstance(value, list) else [value]
    result = []
    for item in items:
        text = str(item).lower() if isinstance(item, bool | str) else None
        if text not in ("true", "false"):
            raise KmsConfigError(f"attestation conditions: Null {key}: value must be 'true' or 'false'")
        result.append(text)
    if not result:
        raise KmsConfigError(f"attestation conditions: Null {key}: no value")
    return tuple(result)


def _string_clause(operator: str, key: str, values: list[str], *, if_exists: bool = False,
                   set_operator: str | None = None) -> Clause:
    if not key.startswith(KEY_NAMESPACE):  # the encryption context: any text
        return Clause(operator, key, tuple(values), if_exists, set_operator)
    if operator.endswith("Like"):
        raise KmsConfigError(f"attestation conditions: {operator} {key}: compare attestation values with "
                             "StringEquals or StringEqualsIgnoreCase (KMS compares them as whole hex text)")
    lengths = (96,) if key == IMAGE_SHA384_KEY else _HEX_LENGTHS
    for value in values:
        digits = decode_hex(value, what=f"attestation conditions: {key}", error=KmsConfigError).hex()
        # KMS compares the policy's text with the document's lower-case hex as it stands: a value that decodes
        # but carries a 0x prefix or spaces would never match there, so it is refused here too.
        if len(digits) != len(value):
            raise KmsConfigError(f"attestation conditions: {key}: write the value as bare hex digits (no 0x, no "
                                 "spaces): KMS compares it as text")
        if len(digits) not in lengths:
            raise KmsConfigError(f"attestation conditions: {key}: a value has {len(digits)} hex digits, expected "
                                 f"{' or '.join(str(n) for n in lengths)}")
    return Clause(operator, key, tuple(values), if_exists)


def _as_hex(value: bytes | str, *, what: str) -> str:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, str):
        return decode_hex(value, what=f"attestation conditions: {what}", error=KmsConfigError).hex()
    raise KmsConfigError(f"attestation conditions: {what}: expected bytes or hex, got {type(value).__name__}")


def _check_keys(data: Mapping[str, Any], allowed: set[str], what: str) -> None:
    unknown = sorted(escaped(str(key), 60) for key in data if key not in allowed)  # a policy's words: escaped
    if unknown:
        shown = ", ".join(unknown[:8]) + (", ..." if len(unknown) > 8 else "")
        raise KmsConfigError(f"attestation conditions: {what}: unknown field(s) {shown}")


def _bounded(items: Iterable[Any], what: str) -> list[Any]:
    result = list(items)
    limit = _MAX_STATEMENTS if what == "statements" else _MAX_VALUES
    if len(result) > limit:
        raise KmsConfigError(f"attestation conditions: more than {limit} {what}")
    return result
