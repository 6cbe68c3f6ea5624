"""Parsing CiphertextForRecipient and checking it has the one shape KMS produces.

Two paths give the same result. Input laid out exactly like KMS output (``_shape.TEMPLATES``) is read by
slicing at known offsets: a full BER parse costs several times the RSA decryption it precedes. Everything
else goes through asn1crypto's BER parser and a field-by-field check whose errors name what differs. The
fast path only ever says "yes, and here are the values" or "not sure": it never rejects anything itself.
"""

from __future__ import annotations

from typing import Any

from asn1crypto import cms, core
from asn1crypto import parser as asn1_parser

from nitrokit._rsa import RSA_KEY_SIZES, SIZES_TEXT
from nitrokit.cms._model import (
    OID_AES256_CBC,
    OID_DATA,
    OID_ENVELOPED_DATA,
    OID_MGF1,
    OID_RSAES_OAEP,
    OID_SHA256,
    ContentForm,
    EnvelopedData,
    describe_oid,
)
from nitrokit.cms._shape import (
    CLOSE,
    END_OF_CONTENTS,
    INDEFINITE_CONTEXT_0,
    IV_LENGTH,
    RID_LENGTH,
    TEMPLATES,
)
from nitrokit.cms.errors import CmsFormatError, CmsInputTooLargeError
from nitrokit.errors import UsageError
from nitrokit.text import escaped

# KMS's CiphertextForRecipient is at most 6144 bytes; a 4 KiB plaintext for RSA-4096 is under 5 KiB. The cap
# leaves room for anything legitimate (our own envelopes of up to MAX_PLAINTEXT_SIZE included) while keeping
# a hostile input's parse bounded.
MAX_ENVELOPE_SIZE = 64 * 1024

_BLOCK = 16
# An RSA OAEP ciphertext is as long as the modulus: 256, 384 or 512 bytes.
_ENCRYPTED_KEY_BYTES = ", ".join(str(bits // 8) for bits in RSA_KEY_SIZES[:-1]) + f" or {RSA_KEY_SIZES[-1] // 8}"
_RECIPIENT_INFO_NAMES = {
    "ktri": "KeyTransRecipientInfo",
    "kari": "KeyAgreeRecipientInfo",
    "kekri": "KEKRecipientInfo",
    "pwri": "PasswordRecipientInfo",
    "ori": "OtherRecipientInfo",
}


def parse_enveloped_data(data: bytes) -> EnvelopedData:
    """Parse a CiphertextForRecipient (raw BER/DER bytes) and check it has the shape KMS produces.

    Raises :class:`~nitrokit.cms.errors.CmsInputTooLargeError` over :data:`MAX_ENVELOPE_SIZE` bytes and
    :class:`~nitrokit.cms.errors.CmsFormatError` (naming what differs) for anything else it does not accept.
    """
    if isinstance(data, bytearray | memoryview):
        data = bytes(data)
    if not isinstance(data, bytes):
        raise UsageError(f"envelope must be bytes, not {type(data).__name__}")
    if len(data) > MAX_ENVELOPE_SIZE:
        raise CmsInputTooLargeError("CMS envelope", len(data), MAX_ENVELOPE_SIZE)
    if not data:
        raise CmsFormatError("envelope is empty")
    parsed = _parse_kms_layout(data)
    if parsed is not None:
        return parsed
    return _parse_general(data)


# -- fast path: byte-exact KMS layout --------------------------------------------------------------------


def _parse_kms_layout(data: bytes) -> EnvelopedData | None:
    for template in TEMPLATES.values():
        if data.startswith(template.head):
            break
    else:
        return None
    pos = len(template.head)
    rid = data[pos : pos + RID_LENGTH]
    pos += RID_LENGTH
    if not data.startswith(template.after_rid, pos):
        return None
    pos += len(template.after_rid)
    encrypted_key = data[pos : pos + template.key_bytes]
    pos += template.key_bytes
    if not data.startswith(template.content_head, pos):
        return None
    pos += len(template.content_head)
    iv = data[pos : pos + IV_LENGTH]
    pos += IV_LENGTH
    form: ContentForm
    if data.startswith(INDEFINITE_CONTEXT_0, pos):
        form = "constructed"
        pos += len(INDEFINITE_CONTEXT_0)
        chunks = []
        while not data.startswith(END_OF_CONTENTS, pos):
            if data[pos : pos + 1] != b"\x04":
                return None
            length, pos = _read_length(data, pos + 1)
            if length < 0 or pos + length > len(data):
                return None
            chunks.append(data[pos : pos + length])
            pos += length
        pos += len(END_OF_CONTENTS)
        content = b"".join(chunks)
        chunk_sizes = tuple(len(chunk) for chunk in chunks)
    elif data[pos : pos + 1] == b"\x80":
        form = "primitive"
        length, pos = _read_length(data, pos + 1)
        if length < 0:
            return None
        content = data[pos : pos + length]
        pos += length
        chunk_sizes = ()
    else:
        return None
    if data[pos:] != CLOSE or len(iv) != IV_LENGTH or not content or len(content) % _BLOCK:
        return None
    return _accepted_shape(rid=rid, iv=iv, form=form, chunk_sizes=chunk_sizes, indefinite=True,
                           encrypted_key=encrypted_key, encrypted_content=content)


def _read_length(data: bytes, pos: int) -> tuple[int, int]:
    """A minimal definite length (at most two bytes of it) at ``pos``: (length, next position), or -1."""
    first = data[pos : pos + 1]
    if not first:
        return -1, pos
    value = first[0]
    if value < 0x80:
        return value, pos + 1
    if value == 0x81 and len(data) > pos + 1 and data[pos + 1] >= 0x80:
        return data[pos + 1], pos + 2
    if value == 0x82 and len(data) > pos + 2 and data[pos + 1] != 0:
        return int.from_bytes(data[pos + 1 : pos + 3], "big"), pos + 3
    return -1, pos


# -- general path: asn1crypto + explicit checks ----------------------------------------------------------


def _parse_general(data: bytes) -> EnvelopedData:
    try:
        return _check(cms.ContentInfo.load(data, strict=True), indefinite=data[1:2] == b"\x80")
    except CmsFormatError:
        raise
    except Exception as exc:  # asn1crypto signals malformed BER with many exception types
        raise CmsFormatError(f"not a well-formed BER ContentInfo: {_summary(exc)}") from None


def _check(info: cms.ContentInfo, *, indefinite: bool) -> EnvelopedData:
    _expect_oid(info["content_type"].dotted, OID_ENVELOPED_DATA, "ContentInfo contentType")
    _no_extra_fields(info, "ContentInfo")
    enveloped = info["content"]
    if not isinstance(enveloped, cms.EnvelopedData):
        raise CmsFormatError("ContentInfo has no content, expected an EnvelopedData")
    _no_extra_fields(enveloped, "EnvelopedData")
    _expect_version(enveloped["version"], "EnvelopedData")
    if _present(enveloped["originator_info"]):
        raise CmsFormatError("EnvelopedData has originatorInfo, expected none")
    if _present(enveloped["unprotected_attrs"]):
        raise CmsFormatError("EnvelopedData has unprotectedAttrs, expected none")

    recipients = enveloped["recipient_infos"]
    if len(recipients) != 1:
        raise CmsFormatError(f"EnvelopedData has {len(recipients)} recipientInfos, expected exactly 1")
    recipient = recipients[0]
    if recipient.name != "ktri":
        kind = _RECIPIENT_INFO_NAMES.get(recipient.name, recipient.name)
        raise CmsFormatError(f"recipientInfo is a {kind}, expected a KeyTransRecipientInfo")
    ktri = recipient.chosen
    _no_extra_fields(ktri, "KeyTransRecipientInfo")
    _expect_version(ktri["version"], "KeyTransRecipientInfo")
    rid_choice = ktri["rid"]
    if rid_choice.name != "subject_key_identifier":
        raise CmsFormatError("rid is issuerAndSerialNumber, expected [0] subjectKeyIdentifier")
    rid = rid_choice.chosen.native
    if len(rid) != RID_LENGTH:
        raise CmsFormatError(
            f"rid is {len(rid)} bytes, expected {RID_LENGTH} (SHA-256 of the SubjectPublicKeyInfo)"
        )

    algorithm = ktri["key_encryption_algorithm"]
    _expect_oid(algorithm["algorithm"].dotted, OID_RSAES_OAEP, "keyEncryptionAlgorithm")
    _no_extra_fields(algorithm, "keyEncryptionAlgorithm")
    params = algorithm["parameters"]
    if not _present(params):
        raise CmsFormatError("RSAES-OAEP-params are absent (SHA-1 defaults), expected SHA-256 and MGF1-SHA-256")
    _no_extra_fields(params, "RSAES-OAEP-params")
    oaep_hash = params["hash_algorithm"]
    _no_extra_fields(oaep_hash, "RSAES-OAEP hashAlgorithm")
    _expect_oid(oaep_hash["algorithm"].dotted, OID_SHA256, "RSAES-OAEP hashAlgorithm")
    oaep_null = _null_or_absent(oaep_hash["parameters"], "RSAES-OAEP hashAlgorithm")
    mgf = params["mask_gen_algorithm"]
    _expect_oid(mgf["algorithm"].dotted, OID_MGF1, "RSAES-OAEP maskGenAlgorithm")
    _no_extra_fields(mgf, "RSAES-OAEP maskGenAlgorithm")
    mgf_hash = mgf["parameters"]
    if not _present(mgf_hash):
        raise CmsFormatError("MGF1 parameters are absent, expected the sha256 AlgorithmIdentifier")
    _no_extra_fields(mgf_hash, "MGF1 hash algorithm")
    _expect_oid(mgf_hash["algorithm"].dotted, OID_SHA256, "MGF1 hash algorithm")
    mgf_null = _null_or_absent(mgf_hash["parameters"], "MGF1 hash algorithm")
    label_source = params["p_source_algorithm"]
    _no_extra_fields(label_source, "RSAES-OAEP pSourceAlgorithm")
    if label_source["algorithm"].native != "p_specified" or label_source["parameters"].native != b"":
        raise CmsFormatError("RSAES-OAEP pSourceAlgorithm is not the empty label")
    encrypted_key = ktri["encrypted_key"].native
    if len(encrypted_key) not in TEMPLATES:
        raise CmsFormatError(
            f"encryptedKey is {len(encrypted_key)} bytes, expected {_ENCRYPTED_KEY_BYTES} ({SIZES_TEXT})"
        )

    content_info = enveloped["encrypted_content_info"]
    _expect_oid(content_info["content_type"].dotted, OID_DATA, "EncryptedContentInfo contentType")
    _no_extra_fields(content_info, "EncryptedContentInfo")
    content_algorithm = content_info["content_encryption_algorithm"]
    _expect_oid(content_algorithm["algorithm"].dotted, OID_AES256_CBC, "contentEncryptionAlgorithm")
    _no_extra_fields(content_algorithm, "contentEncryptionAlgorithm")
    iv_value = content_algorithm["parameters"]
    if not isinstance(iv_value, core.OctetString):
        raise CmsFormatError("aes256-CBC parameters are not an OCTET STRING IV")
    iv = iv_value.native
    if len(iv) != IV_LENGTH:
        raise CmsFormatError(f"aes256-CBC IV is {len(iv)} bytes, expected {IV_LENGTH}")
    encrypted = content_info["encrypted_content"]
    if not _present(encrypted):
        raise CmsFormatError("encryptedContent is absent (detached), expected it inline")
    form, content, chunk_sizes = _content(encrypted)
    if not content or len(content) % _BLOCK:
        raise CmsFormatError(
            f"encryptedContent is {len(content)} bytes, expected a positive multiple of {_BLOCK}"
        )
    return _accepted_shape(rid=rid, iv=iv, form=form, chunk_sizes=chunk_sizes, indefinite=indefinite,
                           encrypted_key=encrypted_key, encrypted_content=content, oaep_null=oaep_null,
                           mgf_null=mgf_null)


def _accepted_shape(*, rid: bytes, iv: bytes, form: ContentForm, chunk_sizes: tuple[int, ...], indefinite: bool,
                    encrypted_key: bytes, encrypted_content: bytes, oaep_null: bool = True,
                    mgf_null: bool = True) -> EnvelopedData:
    """The one shape both parse paths accept; only these fields vary from envelope to envelope."""
    return EnvelopedData(
        version=2,
        recipient_version=2,
        rid=rid,
        key_encryption_algorithm=OID_RSAES_OAEP,
        oaep_hash_algorithm=OID_SHA256,
        oaep_hash_null_parameters=oaep_null,
        mgf_algorithm=OID_MGF1,
        mgf_hash_algorithm=OID_SHA256,
        mgf_hash_null_parameters=mgf_null,
        content_type=OID_DATA,
        content_encryption_algorithm=OID_AES256_CBC,
        iv=iv,
        content_form=form,
        chunk_sizes=chunk_sizes,
        indefinite_length=indefinite,
        encrypted_key=encrypted_key,
        encrypted_content=encrypted_content,
    )


def _content(value: core.OctetString) -> tuple[ContentForm, bytes, tuple[int, ...]]:
    """encryptedContent as primitive [0], or constructed [0] of primitive OCTET STRING chunks only."""
    if value.method == 0:
        return "primitive", value.contents, ()
    contents: bytes = value.contents
    chunks: list[bytes] = []
    pos = 0
    while pos < len(contents):
        class_, method, tag, header, body, trailer = asn1_parser.parse(contents[pos:])
        if (class_, method, tag) != (0, 0, 4):
            raise CmsFormatError(
                f"encryptedContent chunk {len(chunks)} is not a primitive OCTET STRING "
                f"(class {class_}, {'constructed' if method else 'primitive'}, tag {tag})"
            )
        chunks.append(body)
        pos += len(header) + len(body) + len(trailer)
    return "constructed", b"".join(chunks), tuple(len(chunk) for chunk in chunks)


def _expect_oid(found: str, expected: str, what: str) -> None:
    if found != expected:
        raise CmsFormatError(f"{what} is {describe_oid(found)}, expected {describe_oid(expected)}")


def _expect_version(value: core.Integer, what: str) -> None:
    number = int.from_bytes(value.contents, "big", signed=True)
    if number != 2:
        raise CmsFormatError(f"{what} version is {number}, expected 2")


def _no_extra_fields(value: core.Sequence, what: str) -> None:
    # asn1crypto keeps elements past the last defined field instead of refusing them.
    extra = len(value) - len(value._fields)
    if extra > 0:
        raise CmsFormatError(f"{what} has {extra} unexpected trailing element(s)")


def _present(value: Any) -> bool:
    return not isinstance(value, core.Void)


def _null_or_absent(value: Any, what: str) -> bool:
    """True for an explicit NULL (what KMS sends), False when absent (what OpenSSL sends); else an error."""
    if not _present(value):
        return False
    if isinstance(value, core.Null) and value.contents == b"":
        return True
    raise CmsFormatError(f"{what} parameters are not NULL or absent")


def _summary(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return escaped(text, 160)
