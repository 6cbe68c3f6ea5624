"""What a verified document must also say: expected PCRs, nonce, user data, public key, no debug mode.

(The attestation ``Policy``. KMS policy statements are written by :mod:`nitrokit.policy_statements` and
evaluated by the simulated KMS in :mod:`nitrokit.kms.conditions`.)

A :class:`Policy` compiles into small checks, each with a ``verify(document)`` that raises
:class:`PolicyError` naming the field that differs. Defaults fail closed: debug-mode documents are refused
unless ``allow_debug=True``, and an explicitly empty PCR policy is a usage error, not a pass.
``Verifier.verify`` requires a policy; one that accepts any enclave image (no PCR pinned) is spelled
:meth:`Policy.any_enclave_image`, so that choice reads as one in the caller's code.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol

from nitrokit.attestation._parse import PCR_COUNT, PCR_LENGTHS, PCR_LENGTHS_TEXT
from nitrokit.attestation.errors import PolicyError
from nitrokit.attestation.models import AttestationDocument
from nitrokit.errors import UsageError
from nitrokit.hextext import decode_hex


class Check(Protocol):
    """One policy rule."""

    @property
    def name(self) -> str: ...

    def verify(self, document: AttestationDocument) -> None:
        """Return if the document satisfies the rule, else raise :class:`PolicyError`."""


@dataclass(frozen=True)
class PcrsMatch:
    """Every listed PCR is present and equal to its expected value."""

    expected: Mapping[int, bytes]

    @property
    def name(self) -> str:
        return "pcrs " + ",".join(str(index) for index in self.expected)

    def verify(self, document: AttestationDocument) -> None:
        for index, want in self.expected.items():
            got = document.pcrs.get(index)
            if got is None:
                raise PolicyError("expected by the policy but absent from the document", field=f"pcrs[{index}]")
            if not hmac.compare_digest(got, want):
                raise PolicyError(f"is {got.hex()}, the policy expects {want.hex()}", field=f"pcrs[{index}]")


@dataclass(frozen=True)
class NotDebugMode:
    """The enclave is not running in debug mode (debug enclaves report PCR0 as all zeros)."""

    name: str = "not debug mode"

    def verify(self, document: AttestationDocument) -> None:
        if document.is_debug:
            raise PolicyError("all zero: the enclave runs in debug mode (allow debug mode to accept it)",
                              field="pcrs[0]")


@dataclass(frozen=True)
class FieldEquals:
    """An optional document field (nonce, user_data, public_key) equals the expected bytes."""

    field_name: str
    expected: bytes = field(repr=False)

    @property
    def name(self) -> str:
        return self.field_name

    def verify(self, document: AttestationDocument) -> None:
        got: bytes | None = getattr(document, self.field_name)
        if got is None:
            raise PolicyError("expected by the policy but null in the document", field=self.field_name)
        # Values are not printed: user data may be sensitive, and the caller holds the expected value.
        if not hmac.compare_digest(got, self.expected):
            raise PolicyError(f"does not match the expected value ({len(got)} bytes in the document, "
                              f"{len(self.expected)} expected)", field=self.field_name)


@dataclass(frozen=True, kw_only=True)
class Policy:
    """Optional expectations for a document; every one given must hold.

    ``pcrs`` maps an index (0..31) to bytes or a hex string. Passing an empty mapping is refused: it
    would look like a PCR policy while checking nothing. Without ``pcrs`` any enclave image passes: say so
    with :meth:`any_enclave_image`.
    """

    pcrs: Mapping[int, bytes | str] | None = None
    allow_debug: bool = False
    nonce: bytes | None = field(default=None, repr=False)
    user_data: bytes | None = field(default=None, repr=False)
    public_key: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.pcrs is not None:
            object.__setattr__(self, "pcrs", MappingProxyType(_normalise_pcrs(self.pcrs)))
        for name in ("nonce", "user_data", "public_key"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, bytes):
                raise UsageError(f"policy {name} must be bytes, got {type(value).__name__}")

    @classmethod
    def any_enclave_image(cls, *, allow_debug: bool = False, nonce: bytes | None = None,
                          user_data: bytes | None = None, public_key: bytes | None = None) -> Policy:
        """A policy that pins no PCR: any enclave image passes (debug mode still refused unless allowed).

        For tests, tools and services that check the image elsewhere; an authenticated document proves only
        that *some* Nitro enclave made it.
        """
        return cls(pcrs=None, allow_debug=allow_debug, nonce=nonce, user_data=user_data, public_key=public_key)

    @property
    def pins_image(self) -> bool:
        """True if the policy expects at least one PCR value, so not every enclave image passes."""
        return self.pcrs is not None

    def checks(self) -> tuple[Check, ...]:
        """The checks this policy stands for, in the order they run."""
        checks: list[Check] = []
        if not self.allow_debug:
            checks.append(NotDebugMode())
        if self.pcrs is not None:
            checks.append(PcrsMatch(self.pcrs))  # type: ignore[arg-type]  # normalised to bytes above
        for name in ("nonce", "user_data", "public_key"):
            value = getattr(self, name)
            if value is not None:
                checks.append(FieldEquals(name, value))
        return tuple(checks)


def _normalise_pcrs(pcrs: Mapping[int, bytes | str]) -> dict[int, bytes]:
    if not isinstance(pcrs, Mapping):
        raise UsageError(f"policy pcrs must be a mapping of index to value, got {type(pcrs).__name__}")
    if not pcrs:
        raise UsageError("policy pcrs is empty: give at least one PCR, or pass None for no PCR policy")
    normalised: dict[int, bytes] = {}
    for index, value in pcrs.items():
        if type(index) is not int or not 0 <= index < PCR_COUNT:
            raise UsageError(f"policy PCR index {index!r} is not an integer in 0..{PCR_COUNT - 1}")
        digest = _pcr_bytes(index, value)
        if len(digest) not in PCR_LENGTHS:
            raise UsageError(f"policy PCR{index} is {len(digest)} bytes, expected {PCR_LENGTHS_TEXT}")
        normalised[index] = digest
    return dict(sorted(normalised.items()))


def _pcr_bytes(index: int, value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return decode_hex(value, what=f"policy PCR{index}")
    raise UsageError(f"policy PCR{index} must be bytes or hex, got {type(value).__name__}")
