"""What the simulated KMS would decide for one request under a policy, and why: ``nitrokit kms-sim explain``.

The policy is evaluated by the simulator's own evaluator (:mod:`nitrokit.kms.conditions`), statement by
statement, with the request's condition keys taken from an attestation document (verified as the simulator
verifies a Recipient's, so a document KMS would refuse is refused here too) and an encryption context::

    explanation = explain(policy, operation="Decrypt", pcrs=document_pcrs, encryption_context={"app": "x"})
    explanation.allowed        # False
    explanation.deciding       # the statement that decided, or None for the implicit deny
    print(explanation.text())

An applying ``Deny`` decides (explicit deny); otherwise the first applying ``Allow`` does; otherwise nothing
applies and the request is denied by default, each ``Allow`` saying what it lacked.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from nitrokit.kms.conditions import (
    ACCOUNT_ID,
    GENERATE_RANDOM,
    NO_RESOURCE,
    AttestationConditions,
    request_context,
)
from nitrokit.text import escaped

__all__ = ["Explanation", "StatementVerdict", "explain"]

#: the key ARN a key policy is evaluated against when none is given
DEFAULT_KEY_ARN = f"arn:aws:kms:us-east-1:{ACCOUNT_ID}:key/00000000-0000-0000-0000-000000000000"


@dataclass(frozen=True)
class StatementVerdict:
    """One statement: its name (Sid, or its position), effect, and None if it applies, else what did not match."""

    name: str
    effect: str
    unmet: str | None

    @property
    def applies(self) -> bool:
        return self.unmet is None


@dataclass(frozen=True)
class Explanation:
    """The decision (``allowed``), the statement that decided it (None: denied by default), and every verdict."""

    action: str
    resource: str
    allowed: bool
    deciding: StatementVerdict | None
    verdicts: tuple[StatementVerdict, ...]

    @property
    def decision(self) -> str:
        if self.allowed:
            return "ALLOW"
        return "DENY (explicit)" if self.deciding is not None else "DENY (implicit: no statement allows)"

    def text(self) -> str:
        """The decision for a terminal: the policy's own words (Sids, resource) escaped."""
        lines = [f"decision: {self.decision}", f"request: {self.action} on {escaped(self.resource, 200)}"]
        if self.deciding is not None:
            lines.append(f"decided by: {escaped(self.deciding.name, 80)} ({self.deciding.effect})")
        for verdict in self.verdicts:
            state = "applies" if verdict.applies else f"does not apply: {escaped(verdict.unmet or '', 200)}"
            mark = "  <- decided" if verdict is self.deciding else ""
            lines.append(f"  {escaped(verdict.name, 80)} ({verdict.effect}): {state}{mark}")
        return "\n".join(lines)


def explain(policy: AttestationConditions, *, operation: str, pcrs: Mapping[int, bytes] | None = None,
            encryption_context: Mapping[str, str] | None = None, resource: str | None = None) -> Explanation:
    """Evaluate ``policy`` for ``operation`` (``Decrypt`` or ``kms:Decrypt``) as the simulator does.

    ``pcrs`` are a verified document's (None: no Recipient). ``resource`` defaults to ``"*"`` for
    GenerateRandom (which uses no key) and to :data:`DEFAULT_KEY_ARN` for the key operations.
    """
    action = operation if operation.startswith("kms:") else f"kms:{operation}"
    if resource is None:
        resource = NO_RESOURCE if action.lower() == GENERATE_RANDOM.lower() else DEFAULT_KEY_ARN
    context = request_context(pcrs, encryption_context)
    verdicts = tuple(StatementVerdict(statement.sid or f"Statement[{index}]", statement.effect,
                                      statement.unmet(context, action=action, resource=resource))
                     for index, statement in enumerate(policy.statements))
    deny = next((v for v in verdicts if v.applies and v.effect == "Deny"), None)
    allow = next((v for v in verdicts if v.applies and v.effect == "Allow"), None)
    deciding = deny or allow
    return Explanation(action=action, resource=resource, allowed=deny is None and allow is not None,
                       deciding=deciding, verdicts=verdicts)
