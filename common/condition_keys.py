"""The AWS KMS condition keys that look at a request's Recipient attestation document, named once.

Both sides of a policy use them: :mod:`nitrokit.policy_statements` writes statements with these keys, and the
simulated KMS's evaluator (:mod:`nitrokit.kms.conditions`) reads them, so a renamed or misspelt key cannot make
the simulator accept statements that AWS would not understand (or the other way round). The spelling is
AWS's; IAM matches condition keys case-insensitively.
"""

from __future__ import annotations

__all__ = ["IMAGE_SHA384_KEY", "KEY_NAMESPACE", "PCR_KEY_PREFIX", "pcr_key"]

#: what every Recipient-attestation key starts with
KEY_NAMESPACE = "kms:RecipientAttestation:"
#: the image's SHA-384 measurement: PCR0 under another name
IMAGE_SHA384_KEY = f"{KEY_NAMESPACE}ImageSha384"
#: ``PCR<N>`` for N in 0..31, without leading zeros
PCR_KEY_PREFIX = f"{KEY_NAMESPACE}PCR"


def pcr_key(index: int) -> str:
    """The condition key of PCR ``index`` (``kms:RecipientAttestation:PCR<index>``)."""
    return f"{PCR_KEY_PREFIX}{index}"
