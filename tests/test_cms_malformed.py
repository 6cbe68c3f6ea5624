"""Malformed and hostile CiphertextForRecipient inputs: only typed errors, never a traceback or plaintext.

Variants are built by a small BER writer below that is independent of nitrokit.cms; with the pieces of a real
sample it reproduces that sample byte for byte (tested), so each variant differs from KMS output in exactly
the one place the test names.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest
from asn1crypto import core
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nitrokit.cms import (
    MAX_ENVELOPE_SIZE,
    CmsDecryptionError,
    CmsError,
    CmsFormatError,
    EnvelopedData,
    RecipientMismatchError,
    decrypt,
    encrypt_for_recipient,
    parse_enveloped_data,
    recipient_key_id,
)
from nitrokit.cms._parse import _parse_general, _parse_kms_layout
from nitrokit.errors import InputTooLargeError
from tests.conftest import vector_files, vector_path

SUBDIR = "kms-recipient"
ENCLAVER = "enclaver-generatedatakey.ber"
ENCLAVER_KEY = "enclaver-generatedatakey.key.pem"
ENCLAVER_PLAINTEXT = bytes.fromhex("3be82c440f06cb4d44c4c2ec3bf30d472407d3a9125aa4c1842b98f6bdd26e41")

OAEP = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)

# -- an independent BER writer -----------------------------------------------------------------------------


def length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def tlv(tag: int, *parts: bytes) -> bytes:
    body = b"".join(parts)
    return bytes([tag]) + length(len(body)) + body


def indef(tag: int, *parts: bytes) -> bytes:
    return bytes([tag, 0x80]) + b"".join(parts) + b"\x00\x00"


def oid(dotted: str) -> bytes:
    data: bytes = core.ObjectIdentifier(dotted).dump()
    return data


def integer(n: int) -> bytes:
    data: bytes = core.Integer(n).dump()
    return data


NULL = b"\x05\x00"
ENVELOPED_DATA = "1.2.840.113549.1.7.3"
SIGNED_DATA = "1.2.840.113549.1.7.2"
DATA = "1.2.840.113549.1.7.1"
RSAES_OAEP = "1.2.840.113549.1.1.7"
RSA_ENCRYPTION = "1.2.840.113549.1.1.1"
MGF1 = "1.2.840.113549.1.1.8"
SHA256 = "2.16.840.1.101.3.4.2.1"
SHA384 = "2.16.840.1.101.3.4.2.2"
SHA1 = "1.3.14.3.2.26"
AES256_CBC = "2.16.840.1.101.3.4.1.42"
AES128_CBC = "2.16.840.1.101.3.4.1.2"


def hash_id(dotted: str = SHA256, params: bytes | None = NULL) -> bytes:
    return tlv(0x30, oid(dotted), params or b"")


def oaep_algorithm(
    *,
    algorithm: str = RSAES_OAEP,
    hash_alg: bytes | None = None,
    mgf: str = MGF1,
    mgf_hash: bytes | None = None,
    extra_params: bytes = b"",
    params: bytes | None = None,
) -> bytes:
    if params is None:
        params = tlv(
            0x30,
            tlv(0xA0, hash_alg if hash_alg is not None else hash_id()),
            tlv(0xA1, tlv(0x30, oid(mgf), mgf_hash if mgf_hash is not None else hash_id())),
            extra_params,
        )
    return tlv(0x30, oid(algorithm), params)


def ktri(
    rid: bytes,
    encrypted_key: bytes,
    *,
    version: int = 2,
    rid_tlv: bytes | None = None,
    algorithm: bytes | None = None,
    extra: bytes = b"",
) -> bytes:
    return tlv(
        0x30,
        integer(version),
        rid_tlv if rid_tlv is not None else tlv(0x80, rid),
        algorithm if algorithm is not None else oaep_algorithm(),
        tlv(0x04, encrypted_key),
        extra,
    )


def envelope(
    *,
    rid: bytes,
    encrypted_key: bytes,
    iv: bytes,
    chunks: list[bytes] | None = None,
    primitive: bytes | None = None,
    content_tlv: bytes | None = None,
    content_type: str = ENVELOPED_DATA,
    version: int = 2,
    originator_info: bytes = b"",
    recipients: list[bytes] | None = None,
    inner_content_type: str = DATA,
    content_algorithm: bytes | None = None,
    eci_extra: bytes = b"",
    unprotected_attrs: bytes = b"",
    definite: bool = False,
    ci_extra: bytes = b"",
    trailing: bytes = b"",
) -> bytes:
    """A ContentInfo in KMS's layout, every piece replaceable."""
    wrap = tlv if definite else indef
    if content_tlv is None:
        if primitive is not None:
            content_tlv = tlv(0x80, primitive)
        else:
            content_tlv = wrap(0xA0, *(tlv(0x04, chunk) for chunk in (chunks or [])))
    if recipients is None:
        recipients = [ktri(rid, encrypted_key)]
    if content_algorithm is None:
        content_algorithm = tlv(0x30, oid(AES256_CBC), tlv(0x04, iv))
    eci = wrap(0x30, oid(inner_content_type), content_algorithm, content_tlv, eci_extra)
    enveloped = wrap(
        0x30, integer(version), originator_info, tlv(0x31, *recipients), eci, unprotected_attrs
    )
    return wrap(0x30, oid(content_type), wrap(0xA0, enveloped), ci_extra) + trailing


# -- fixtures ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def enclaver() -> tuple[bytes, rsa.RSAPrivateKey]:
    data = vector_path(SUBDIR, ENCLAVER).read_bytes()
    key = serialization.load_pem_private_key(vector_path(SUBDIR, ENCLAVER_KEY).read_bytes(), None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return data, key


@pytest.fixture(scope="module")
def other_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def parts(enclaver) -> dict[str, bytes]:
    """A consistent set of pieces: rid/encryptedKey/IV/content of the real enclaver sample."""
    data, _ = enclaver
    parsed = parse_enveloped_data(data)
    return {
        "rid": parsed.rid,
        "encrypted_key": parsed.encrypted_key,
        "iv": parsed.iv,
        "content": parsed.encrypted_content,
    }


def build(parts: dict[str, bytes], **overrides: object) -> bytes:
    kwargs: dict[str, object] = {
        "rid": parts["rid"],
        "encrypted_key": parts["encrypted_key"],
        "iv": parts["iv"],
        "chunks": [parts["content"]],
    }
    kwargs.update(overrides)
    return envelope(**kwargs)  # type: ignore[arg-type]


def test_writer_reproduces_the_real_sample(enclaver, parts):
    data, key = enclaver
    assert build(parts) == data
    assert decrypt(build(parts), key) == ENCLAVER_PLAINTEXT


# -- accepted variants -------------------------------------------------------------------------------------


@pytest.mark.parametrize("oaep_null", [True, False])
@pytest.mark.parametrize("mgf_null", [True, False])
def test_sha256_parameters_may_be_null_or_absent(enclaver, parts, oaep_null, mgf_null):
    _, key = enclaver
    algorithm = oaep_algorithm(
        hash_alg=hash_id(params=NULL if oaep_null else None),
        mgf_hash=hash_id(params=NULL if mgf_null else None),
    )
    data = build(parts, recipients=[ktri(parts["rid"], parts["encrypted_key"], algorithm=algorithm)])
    parsed = parse_enveloped_data(data)
    assert parsed.oaep_hash_null_parameters is oaep_null
    assert parsed.mgf_hash_null_parameters is mgf_null
    assert decrypt(data, key) == ENCLAVER_PLAINTEXT


@pytest.mark.parametrize("definite", [True, False])
@pytest.mark.parametrize("form", ["primitive", "constructed", "many-chunks", "empty-chunk"])
def test_definite_lengths_and_content_forms(enclaver, parts, definite, form):
    _, key = enclaver
    content = parts["content"]
    if form == "primitive":
        data = build(parts, definite=definite, chunks=None, primitive=content)
        expected_chunks: tuple[int, ...] = ()
    elif form == "constructed":
        data = build(parts, definite=definite)
        expected_chunks = (48,)
    elif form == "many-chunks":
        data = build(parts, definite=definite, chunks=[content[:5], content[5:40], content[40:]])
        expected_chunks = (5, 35, 8)
    else:
        data = build(parts, definite=definite, chunks=[content, b""])
        expected_chunks = (48, 0)
    if definite and form != "primitive":
        # Valid BER, but neither KMS nor OpenSSL writes it and asn1crypto only takes constructed strings
        # with indefinite lengths: refused, with a message that says so.
        with pytest.raises(CmsFormatError, match="constructed"):
            parse_enveloped_data(data)
        return
    parsed = parse_enveloped_data(data)
    assert parsed.indefinite_length is not definite
    assert parsed.content_form == ("primitive" if form == "primitive" else "constructed")
    assert parsed.chunk_sizes == expected_chunks
    assert parsed.encrypted_content == content
    assert decrypt(data, key) == ENCLAVER_PLAINTEXT


def test_explicit_empty_label_is_accepted(parts):
    p_specified_empty = tlv(0xA2, tlv(0x30, oid("1.2.840.113549.1.1.9"), tlv(0x04)))
    algorithm = oaep_algorithm(extra_params=p_specified_empty)
    data = build(parts, recipients=[ktri(parts["rid"], parts["encrypted_key"], algorithm=algorithm)])
    assert parse_enveloped_data(data).rid == parts["rid"]


# -- rejected shapes ---------------------------------------------------------------------------------------


def _ktri(parts: dict[str, bytes], **kwargs: object) -> bytes:
    return ktri(parts["rid"], parts["encrypted_key"], **kwargs)  # type: ignore[arg-type]


def _alg(**kwargs: object) -> bytes:
    return oaep_algorithm(**kwargs)  # type: ignore[arg-type]


REJECTED: list[tuple[str, dict[str, object], str]] = [
    ("signedData", {"content_type": SIGNED_DATA},
     f"ContentInfo contentType is {SIGNED_DATA} (signedData), expected {ENVELOPED_DATA} (envelopedData)"),
    ("version-0", {"version": 0}, "EnvelopedData version is 0, expected 2"),
    ("version-3", {"version": 3}, "EnvelopedData version is 3, expected 2"),
    ("originatorInfo", {"originator_info": tlv(0xA0)}, "originatorInfo"),
    ("unprotectedAttrs", {"unprotected_attrs": tlv(0xA1, tlv(0x30, oid("1.2.3.4"), tlv(0x31, NULL)))},
     "unprotectedAttrs"),
    ("no-recipients", {"recipients": []}, "0 recipientInfos, expected exactly 1"),
    ("inner-signedData", {"inner_content_type": SIGNED_DATA},
     "EncryptedContentInfo contentType is 1.2.840.113549.1.7.2 (signedData), expected"),
    ("aes128", {"content_algorithm": tlv(0x30, oid(AES128_CBC), tlv(0x04, b"\x00" * 16))},
     "contentEncryptionAlgorithm is 2.16.840.1.101.3.4.1.2 (aes128-CBC), expected 2.16.840.1.101.3.4.1.42"),
    ("iv-8-bytes", {"content_algorithm": tlv(0x30, oid(AES256_CBC), tlv(0x04, b"\x00" * 8))},
     "IV is 8 bytes, expected 16"),
    ("iv-missing", {"content_algorithm": tlv(0x30, oid(AES256_CBC))}, "IV"),
    ("iv-not-octets", {"content_algorithm": tlv(0x30, oid(AES256_CBC), integer(5))}, ""),
    ("content-absent", {"content_tlv": b""}, "encryptedContent is absent"),
    ("content-17-bytes", {"chunks": [b"\x00" * 17]}, "encryptedContent is 17 bytes"),
    ("content-empty", {"chunks": []}, "encryptedContent is 0 bytes"),
    ("primitive-empty", {"chunks": None, "primitive": b""}, "encryptedContent is 0 bytes"),
    ("nested-chunk", {"content_tlv": indef(0xA0, indef(0x24, tlv(0x04, b"\x00" * 16)))},
     "chunk 0 is not a primitive OCTET STRING"),
    ("integer-chunk", {"content_tlv": indef(0xA0, tlv(0x02, b"\x01" * 16))},
     "chunk 0 is not a primitive OCTET STRING"),
    ("enveloped-extra-field", {"unprotected_attrs": integer(1)}, "EnvelopedData has 1 unexpected trailing"),
    ("contentinfo-extra-field", {"ci_extra": integer(1)}, "ContentInfo has 1 unexpected trailing element"),
    ("trailing-byte", {"trailing": b"\x00"}, ""),
    ("iv-extra-field", {"content_algorithm": tlv(0x30, oid(AES256_CBC), tlv(0x04, b"\x00" * 16), NULL)},
     "contentEncryptionAlgorithm has 1 unexpected trailing element"),
    ("trailing-envelope", {"trailing": b"\x30\x00"}, ""),
    ("eci-extra-field", {"eci_extra": integer(1)}, "EncryptedContentInfo has 1 unexpected trailing element"),
]


@pytest.mark.parametrize(("overrides", "message"), [pytest.param(o, m, id=i) for i, o, m in REJECTED])
def test_rejected_envelope_shapes(enclaver, parts, overrides, message):
    _, key = enclaver
    data = build(parts, **overrides)
    with pytest.raises(CmsFormatError) as info:
        parse_enveloped_data(data)
    assert message in str(info.value)
    with pytest.raises(CmsFormatError):
        decrypt(data, key)


RECIPIENT_REJECTED: list[tuple[str, dict[str, object], str]] = [
    ("ktri-version-0", {"version": 0}, "KeyTransRecipientInfo version is 0, expected 2"),
    ("issuerAndSerialNumber", {"rid_tlv": tlv(0x30, tlv(0x30), integer(1))},
     "rid is issuerAndSerialNumber, expected [0] subjectKeyIdentifier"),
    ("rid-20-bytes", {"rid_tlv": tlv(0x80, b"\x11" * 20)}, "rid is 20 bytes, expected 32"),
    ("rsaEncryption", {"algorithm": _alg(algorithm=RSA_ENCRYPTION, params=NULL)},
     "keyEncryptionAlgorithm is 1.2.840.113549.1.1.1 (rsaEncryption), expected 1.2.840.113549.1.1.7 "
     "(rsaesOaep)"),
    ("oaep-params-absent", {"algorithm": tlv(0x30, oid(RSAES_OAEP))}, "RSAES-OAEP-params are absent"),
    ("oaep-params-empty", {"algorithm": _alg(params=tlv(0x30))},
     "RSAES-OAEP hashAlgorithm is 1.3.14.3.2.26 (sha1), expected"),
    ("oaep-sha1", {"algorithm": _alg(hash_alg=hash_id(SHA1))}, "RSAES-OAEP hashAlgorithm is 1.3.14.3.2.26"),
    ("oaep-sha384", {"algorithm": _alg(hash_alg=hash_id(SHA384))},
     "RSAES-OAEP hashAlgorithm is 2.16.840.1.101.3.4.2.2 (sha384), expected 2.16.840.1.101.3.4.2.1 (sha256)"),
    ("mgf1-sha1", {"algorithm": _alg(mgf_hash=hash_id(SHA1))}, "MGF1 hash algorithm is 1.3.14.3.2.26"),
    ("mgf-unknown", {"algorithm": _alg(mgf="1.2.3.4")}, ""),
    ("hash-params-integer", {"algorithm": _alg(hash_alg=hash_id(params=integer(0)))}, ""),
    ("hash-null-with-content", {"algorithm": _alg(hash_alg=hash_id(params=b"\x05\x01\x00"))}, ""),
    ("mgf-hash-params-octets", {"algorithm": _alg(mgf_hash=hash_id(params=tlv(0x04, b"x")))}, ""),
    ("label", {"algorithm": _alg(extra_params=tlv(0xA2, tlv(0x30, oid("1.2.840.113549.1.1.9"),
                                                             tlv(0x04, b"label"))))},
     "pSourceAlgorithm is not the empty label"),
    ("ktri-extra-field", {"extra": integer(7)}, "KeyTransRecipientInfo has 1 unexpected trailing element"),
    ("oaep-params-extra-field", {"algorithm": _alg(extra_params=integer(1))}, ""),
    ("algorithm-extra-field", {"algorithm": tlv(0x30, oid(RSAES_OAEP), tlv(0x30, tlv(0xA0, hash_id()),
                                                   tlv(0xA1, tlv(0x30, oid(MGF1), hash_id()))), NULL)},
     "keyEncryptionAlgorithm has 1 unexpected trailing element"),
    ("hash-extra-field", {"algorithm": _alg(hash_alg=tlv(0x30, oid(SHA256), NULL, NULL))},
     "RSAES-OAEP hashAlgorithm has 1 unexpected trailing element"),
    ("mgf-hash-extra-field", {"algorithm": _alg(mgf_hash=tlv(0x30, oid(SHA256), NULL, NULL))},
     "MGF1 hash algorithm has 1 unexpected trailing element"),
]


@pytest.mark.parametrize(("kwargs", "message"), [pytest.param(k, m, id=i) for i, k, m in RECIPIENT_REJECTED])
def test_rejected_recipient_infos(parts, kwargs, message):
    data = build(parts, recipients=[_ktri(parts, **kwargs)])
    with pytest.raises(CmsFormatError) as info:
        parse_enveloped_data(data)
    assert message in str(info.value)


@pytest.mark.parametrize("size", [128, 255, 257, 1024])
def test_encrypted_key_of_an_unsupported_size_is_a_format_error(parts, size):
    data = build(parts, recipients=[ktri(parts["rid"], b"\x01" * size)])
    with pytest.raises(CmsFormatError, match=f"encryptedKey is {size} bytes, expected 256, 384 or 512"):
        parse_enveloped_data(data)


def test_two_recipients_are_refused_even_if_one_is_ours(enclaver, parts):
    _, key = enclaver
    one = _ktri(parts)
    data = build(parts, recipients=[one, one])
    with pytest.raises(CmsFormatError, match="2 recipientInfos, expected exactly 1"):
        decrypt(data, key)


def test_other_recipient_info_kinds_are_named(parts):
    kekri = tlv(0xA2, integer(4), tlv(0x30, tlv(0x04, b"kek")), tlv(0x30, oid("2.16.840.1.101.3.4.1.45")),
                tlv(0x04, b"\x00" * 40))
    data = build(parts, recipients=[kekri])
    with pytest.raises(CmsFormatError, match="recipientInfo is a KEKRecipientInfo, expected a KeyTrans"):
        parse_enveloped_data(data)


# -- recipient and key checks ------------------------------------------------------------------------------


class CountingKey(rsa.RSAPrivateKey):
    """Delegates to a real key, counting RSA private-key operations."""

    def __init__(self, key: rsa.RSAPrivateKey) -> None:
        self._key = key
        self.operations = 0

    def decrypt(self, ciphertext: bytes, padding: padding.AsymmetricPadding) -> bytes:
        self.operations += 1
        return self._key.decrypt(ciphertext, padding)

    def sign(self, data, padding, algorithm):
        self.operations += 1
        return self._key.sign(data, padding, algorithm)

    @property
    def key_size(self) -> int:
        return self._key.key_size

    def public_key(self) -> rsa.RSAPublicKey:
        return self._key.public_key()

    def private_numbers(self) -> rsa.RSAPrivateNumbers:
        return self._key.private_numbers()

    def private_bytes(self, encoding, format, encryption_algorithm):
        return self._key.private_bytes(encoding, format, encryption_algorithm)

    def __copy__(self) -> CountingKey:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> CountingKey:
        return self


def test_wrong_rid_is_refused_before_any_rsa_operation(enclaver, other_key):
    data, _ = enclaver
    counting = CountingKey(other_key)
    with pytest.raises(RecipientMismatchError) as info:
        decrypt(data, counting)
    assert counting.operations == 0
    assert info.value.envelope_rid == parse_enveloped_data(data).rid
    assert info.value.key_id == recipient_key_id(other_key.public_key())
    assert not isinstance(info.value, CmsDecryptionError)


def test_right_key_counts_one_rsa_operation(enclaver):
    data, key = enclaver
    counting = CountingKey(key)
    assert decrypt(data, counting) == ENCLAVER_PLAINTEXT
    assert counting.operations == 1


def _failures(enclaver, other_key, parts) -> dict[str, bytes]:
    """Envelopes that pass the shape and rid checks for the enclaver key but fail later, each differently."""
    _, key = enclaver
    public = key.public_key()
    iv = os.urandom(16)

    def content_with(content_key: bytes, padded: bytes) -> bytes:
        encryptor = Cipher(algorithms.AES(content_key), modes.CBC(iv)).encryptor()
        return encryptor.update(padded) + encryptor.finalize()

    good_key = os.urandom(32)
    wrong_key_envelope = encrypt_for_recipient(b"secret", other_key.public_key())
    wrong_key_parsed = parse_enveloped_data(wrong_key_envelope)
    return {
        # rid says "enclaver key" but everything was encrypted for another key
        "wrong-key": build(parts, encrypted_key=wrong_key_parsed.encrypted_key, iv=wrong_key_parsed.iv,
                           chunks=[wrong_key_parsed.encrypted_content]),
        "unwrap": build(parts, encrypted_key=os.urandom(255) + b"\x00"),
        "unwrap-too-big": build(parts, encrypted_key=b"\xff" * 256),
        "encrypted-key-for-4096": build(parts, encrypted_key=b"\x01" * 512),
        "content-key-16-bytes": build(parts, encrypted_key=public.encrypt(os.urandom(16), OAEP)),
        "content-key-33-bytes": build(parts, encrypted_key=public.encrypt(os.urandom(33), OAEP)),
        "padding-zero": build(parts, encrypted_key=public.encrypt(good_key, OAEP), iv=iv,
                              chunks=[content_with(good_key, b"A" * 31 + b"\x00")]),
        "padding-17": build(parts, encrypted_key=public.encrypt(good_key, OAEP), iv=iv,
                            chunks=[content_with(good_key, b"A" * 31 + b"\x11")]),
        "padding-inconsistent": build(parts, encrypted_key=public.encrypt(good_key, OAEP), iv=iv,
                                      chunks=[content_with(good_key, b"A" * 29 + b"\x02\x03\x03")]),
        "rid-ok-but-tampered": build(parts, chunks=[parts["content"][:-1] + bytes([parts["content"][-1] ^ 1])]),
    }


def test_every_failure_after_the_rid_check_is_the_same_error(enclaver, other_key, parts):
    _, key = enclaver
    seen = set()
    for name, data in _failures(enclaver, other_key, parts).items():
        assert parse_enveloped_data(data).rid == recipient_key_id(key.public_key()), name
        with pytest.raises(CmsDecryptionError) as info:
            decrypt(data, key)
        error = info.value
        assert type(error) is CmsDecryptionError, name
        assert error.__cause__ is None and error.__context__ is None, name
        seen.add((str(error), error.args))
    assert seen == {(CmsDecryptionError.MESSAGE, (CmsDecryptionError.MESSAGE,))}


# -- truncation, bit flips and fuzzing ---------------------------------------------------------------------


@pytest.mark.parametrize("path", vector_files(SUBDIR, "*.ber"))
def test_truncation_at_every_offset_is_a_format_error(path: Path, enclaver):
    data = path.read_bytes()
    _, key = enclaver
    for cut in range(len(data)):
        with pytest.raises(CmsFormatError):
            parse_enveloped_data(data[:cut])
    # decrypt() shares the parser; spot-check that nothing else is reached
    for cut in (0, 1, len(data) // 2, len(data) - 1):
        with pytest.raises(CmsFormatError):
            decrypt(data[:cut], key)


@pytest.mark.parametrize("mask", [0x01, 0x80, 0xFF])
def test_flipped_bytes_in_every_part(enclaver, mask):
    data, key = enclaver
    parsed = parse_enveloped_data(data)
    rid_at = data.index(parsed.rid)
    key_at = data.index(parsed.encrypted_key)
    iv_at = data.index(parsed.iv)
    content_at = data.index(parsed.encrypted_content)
    regions = {
        "rid": range(rid_at, rid_at + 32),
        "encrypted_key": range(key_at, key_at + 256),
        "iv": range(iv_at, iv_at + 16),
        "content": range(content_at, content_at + 48),
    }
    outcomes: dict[str, set[str]] = {}
    for offset in range(len(data)):
        mutated = bytearray(data)
        mutated[offset] ^= mask
        region = next((name for name, span in regions.items() if offset in span), "structure")
        try:
            result = decrypt(bytes(mutated), key)
        except CmsError as exc:
            outcome = type(exc).__name__
        else:
            # CBC is malleable: a changed IV or ciphertext can still unpad. Never the original plaintext.
            assert region in {"iv", "content"}, (offset, region)
            assert result != ENCLAVER_PLAINTEXT
            outcome = "changed plaintext"
        outcomes.setdefault(region, set()).add(outcome)
    assert outcomes["structure"] == {"CmsFormatError"}
    assert outcomes["rid"] == {"RecipientMismatchError"}
    assert outcomes["encrypted_key"] == {"CmsDecryptionError"}
    assert outcomes["iv"] == {"changed plaintext"}
    assert outcomes["content"] <= {"changed plaintext", "CmsDecryptionError"}


def test_oversized_input_is_refused_before_parsing(parts):
    data = build(parts) + b"\x00" * (MAX_ENVELOPE_SIZE + 1)
    with pytest.raises(InputTooLargeError):
        parse_enveloped_data(data)


@pytest.mark.parametrize("data", [b"", b"\x00", b"\x30", b"\x30\x80", b"\x30\x80\x00\x00", b"\x30\x00",
                                  b"\x04\x00", b"\xff" * 20, b"\x30\x84\xff\xff\xff\xff", b"\x24\x80" * 500])
def test_junk_is_a_format_error(data):
    with pytest.raises(CmsFormatError):
        parse_enveloped_data(data)


def _samples() -> list[bytes]:
    folder = vector_path(SUBDIR, ENCLAVER).parent
    return [path.read_bytes() for path in sorted(folder.glob("*.ber"))]


def _check_parse(data: bytes) -> EnvelopedData | None:
    try:
        parsed = parse_enveloped_data(data)
    except (CmsError, InputTooLargeError):
        return None
    # the fast path never disagrees with the general one
    fast = _parse_kms_layout(data)
    assert fast is None or fast == _parse_general(data)
    return parsed


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=700))
def test_random_bytes_raise_only_typed_errors(data):
    _check_parse(data)
    _check_parse(b"\x30\x80\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x07\x03" + data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_mutated_samples_raise_only_typed_errors(enclaver, data):
    _, key = enclaver
    samples = _samples()
    sample = bytearray(data.draw(st.sampled_from(samples)))
    for _ in range(data.draw(st.integers(1, 4))):
        kind = data.draw(st.sampled_from(["replace", "insert", "delete"]))
        at = data.draw(st.integers(0, len(sample) - 1))
        if kind == "replace":
            sample[at] = data.draw(st.integers(0, 255))
        elif kind == "insert":
            sample[at:at] = data.draw(st.binary(min_size=1, max_size=4))
        else:
            del sample[at : at + data.draw(st.integers(1, 4))]
    mutated = bytes(sample)
    parsed = _check_parse(mutated)
    if parsed is not None:
        with contextlib.suppress(CmsError):
            decrypt(parsed, key)


def test_non_minimal_length_octets_are_valid_ber(enclaver, parts):
    data, key = enclaver
    # the IV as 04 81 10 instead of 04 10, inside an AlgorithmIdentifier one byte longer
    algorithm = b"\x30\x1e" + oid(AES256_CBC) + b"\x04\x81\x10" + parts["iv"]
    relaxed = build(parts, content_algorithm=algorithm)
    assert relaxed != data
    assert _parse_kms_layout(relaxed) is None  # not the byte-exact KMS layout: the general path decides
    assert parse_enveloped_data(relaxed) == parse_enveloped_data(data)
    assert decrypt(relaxed, key) == ENCLAVER_PLAINTEXT
