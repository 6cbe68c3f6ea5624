"""The strict CBOR decoder refuses every tag a format does not name, and ``shown`` never raises (issue 12, 5-6)."""

from __future__ import annotations

import cbor2
import pytest

from nitrokit.cbor import CborError, decode_exactly, shown

HUGE = 1 << 15000  # 4516 decimal digits: str() of it raises ValueError under Python's 4300-digit limit


def _tagged(tag: int) -> bytes:
    return cbor2.dumps(cbor2.CBORTag(tag, b"\x01"))


def test_every_tag_is_refused_unless_named() -> None:
    # cbor2's own semantic tags (bignums, dates, value sharing, string references, sets, complex numbers at
    # 43000, self-describe at 55799...) among them: none may reach cbor2's built-in decoders.
    for tag in [*range(1 << 11), 43000, 55799, 1 << 32, (1 << 64) - 1]:
        with pytest.raises(CborError, match=f"CBOR tag {tag}, which this format does not use"):
            decode_exactly(_tagged(tag))


def test_a_named_tag_is_returned_as_is() -> None:
    assert decode_exactly(_tagged(18), tags=frozenset({18})) == cbor2.CBORTag(18, b"\x01")
    with pytest.raises(CborError, match="CBOR tag 2"):
        decode_exactly(cbor2.dumps(cbor2.CBORTag(18, HUGE)), tags=frozenset({18}))


def test_bignums_are_refused_wherever_they_are() -> None:
    for item in (HUGE, -HUGE, 1 << 64, {HUGE: 1}, [[HUGE]]):
        with pytest.raises(CborError, match=r"CBOR tag [23],"):
            decode_exactly(cbor2.dumps(item))
    # Plain CBOR integers stay: they end at 2**64 - 1 and -2**64.
    assert decode_exactly(cbor2.dumps([(1 << 64) - 1, -(1 << 64)])) == [(1 << 64) - 1, -(1 << 64)]


def test_value_sharing_is_refused() -> None:
    shared = [b"x" * 16] * 64
    data = cbor2.dumps([shared] * 64, value_sharing=True)
    assert b"\xd8\x1c" in data and b"\xd8\x1d" in data  # tags 28 (shareable) and 29 (shared reference)
    with pytest.raises(CborError, match="CBOR tag 28"):
        decode_exactly(data)


SHOWN = [
    (HUGE, "an integer of 15001 bits"), (-HUGE, "an integer of 15001 bits"), ((1 << 64) - 1, str((1 << 64) - 1)),
    (-35, "-35"), (True, "true"), (None, "null"), (1.0, "1.0"), ("ES384", "'ES384'"), ("\x1b[2J", r"'\\x1b[2J'"),
    ("a" * 1000, repr("a" * 37 + "...")), (b"\x00" * 9, "a 9-byte byte string"), ([1, 2], "array of 2"),
    ({1: 2}, "map of 1"), (cbor2.CBORTag(9, 1), "tag 9"),
]


# ids by position: pytest's own str() of HUGE would raise (the very bug).
@pytest.mark.parametrize(("value", "text"), SHOWN, ids=[str(i) for i in range(len(SHOWN))])
def test_shown_is_bounded_and_never_raises(value: object, text: str) -> None:
    assert shown(value) == text
