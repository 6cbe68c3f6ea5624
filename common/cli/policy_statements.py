"""``nitrokit policy``: a policy statement that only an enclave with given measurements satisfies.

The command's front end to :mod:`nitrokit.policy_statements` (it writes statements; it does not verify).

``policy [--pcr N=HEX]... [--image-sha384 HEX] [--role-arn ARN] [--action ACTION]... [--sid SID]
[--allow-zero] [--document [--admin-arn ARN]]`` prints one statement (JSON) using
``kms:RecipientAttestation:ImageSha384`` and ``kms:RecipientAttestation:PCR<N>`` with ``StringEqualsIgnoreCase``.
Without ``--role-arn`` it is an IAM identity-policy statement (attach it to the role; the only kind that governs
kms:GenerateRandom, which uses no key); with ``--role-arn`` (key-based actions only, such as kms:Decrypt) it is a
key-policy statement. With ``--document`` it prints a whole policy document instead, loadable as it is: an IAM
policy, or a key policy with an administrators' statement for every other action, so KMS's lockout safety check
passes (:func:`nitrokit.policy_statements.build_document`). nitrokit's simulated KMS (``nitrokit kms-sim``) loads
either form as it is: as a key's policy (CreateKey, PutKeyPolicy) or as its GenerateRandom conditions
(``--policy``), and ``nitrokit kms-sim explain`` reads it. At least one measurement is required. Exit code 2 for
invalid input (the message says which value).
"""

from __future__ import annotations

import argparse

from nitrokit.attestation import PCR_BYTES, PCR_COUNT
from nitrokit.cli._io import EXIT_OK, parse_pcr_args, print_json
from nitrokit.condition_keys import IMAGE_SHA384_KEY
from nitrokit.errors import UsageError
from nitrokit.policy_statements import (
    DEFAULT_ACTIONS,
    DEFAULT_SID,
    RECIPIENT_ACTIONS,
    build_document,
    build_statement,
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    policy = subparsers.add_parser(
        "policy", help="print a policy statement bound to enclave measurements (PCRs)",
        description="Print a policy statement allowing KMS operations only from an enclave whose attestation "
                    "document has these measurements. Without --role-arn it is an IAM identity-policy statement "
                    "(no Principal, Resource \"*\"): attach it to the role's IAM policy. kms:GenerateRandom (the "
                    "default action) uses no KMS key, so only IAM policies govern it. With --role-arn it is a key "
                    "policy statement for key-based actions (kms:Decrypt, kms:GenerateDataKey, ...): add it to the "
                    "key's policy.",
        epilog="Example: nitrokit policy --pcr 0=$(jq -r .Measurements.PCR0 m.json) > statement.json; "
               "nitrokit policy --document --role-arn arn:aws:iam::111122223333:role/app --action kms:Decrypt "
               "--pcr 0=... > key-policy.json (for CreateKey --policy or PutKeyPolicy)",
    )
    policy.add_argument("--pcr", action="append", default=[], metavar="N=HEX",
                        help=f"require PCR N (0..{PCR_COUNT - 1}) to equal this SHA-384 value, {2 * PCR_BYTES} "
                             "hex digits (repeatable)")
    policy.add_argument("--image-sha384", metavar="HEX",
                        help=f"require {IMAGE_SHA384_KEY} (the image's PCR0)")
    policy.add_argument("--role-arn", metavar="ARN",
                        help="write a key-policy statement with this principal (key-based actions only; refused "
                             "with kms:GenerateRandom, which key policies do not govern). Omit for an IAM "
                             "identity-policy statement without Principal")
    policy.add_argument("--action", action="append", default=None, metavar="ACTION",
                        help=f"operation to allow (repeatable; default {', '.join(DEFAULT_ACTIONS)}; any of "
                             f"{', '.join(RECIPIENT_ACTIONS)})")
    policy.add_argument("--sid", default=DEFAULT_SID, help=f"statement id (default {DEFAULT_SID})")
    policy.add_argument("--allow-zero", action="store_true",
                        help="accept all-zero values (they match every debug-mode enclave)")
    policy.add_argument("--document", action="store_true",
                        help="print a whole policy document, loadable as it is: with --role-arn a key policy (an "
                             "administrators' statement for every other action, then this one), else an IAM policy")
    policy.add_argument("--admin-arn", metavar="ARN",
                        help="with --document and --role-arn: the key's administrators (default: the root of the "
                             "role's account)")
    policy.set_defaults(handler=run_policy)


def run_policy(args: argparse.Namespace) -> int:
    statement = build_statement(
        pcrs=parse_pcr_args(args.pcr),
        image_sha384=args.image_sha384,
        role_arn=args.role_arn,
        actions=args.action if args.action is not None else DEFAULT_ACTIONS,
        sid=args.sid,
        allow_zero=args.allow_zero,
    )
    if args.admin_arn is not None and not args.document:
        raise UsageError("--admin-arn is for --document")
    print_json(build_document(statement, admin_arn=args.admin_arn) if args.document else statement)
    return EXIT_OK

