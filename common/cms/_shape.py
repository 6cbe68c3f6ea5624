"""The exact byte shape AWS KMS gives CiphertextForRecipient, as reusable pieces.

KMS output (see docs/cms.md) is BER with indefinite lengths on the outer containers and DER inside them:

    30 80  ContentInfo
      06 09 id-envelopedData
      a0 80  [0]
        30 80  EnvelopedData
          02 01 02                           version 2
          31 82 ....  SET { KeyTransRecipientInfo }   (DER: rid, rsaesOaep params with NULLs, encryptedKey)
          30 80  EncryptedContentInfo
            06 09 id-data
            30 1d { aes256-CBC, OCTET STRING iv }
            a0 80  04 <=1000 bytes ... 00 00   encryptedContent, constructed [0] of OCTET STRING chunks
          00 00
        00 00
      00 00
    00 00

The DER pieces are encoded once, here, by asn1crypto; only the indefinite-length framing around them is
written by hand. The builder fills the holes (rid, encryptedKey, IV, chunks); the parser's fast path matches
the same pieces byte for byte, so anything shaped exactly like KMS output is recognised without a full
BER parse.
"""

from __future__ import annotations

from dataclasses import dataclass

from asn1crypto import algos, cms, core

from nitrokit.cms._keys import SUPPORTED_RSA_BITS

INDEFINITE_SEQUENCE = b"\x30\x80"
INDEFINITE_CONTEXT_0 = b"\xa0\x80"  # [0] constructed, indefinite length
END_OF_CONTENTS = b"\x00\x00"
CHUNK_SIZE = 1000  # KMS splits encryptedContent into OCTET STRINGs of at most 1000 bytes
RID_LENGTH = 32
IV_LENGTH = 16

# Closes EncryptedContentInfo, EnvelopedData, [0] and ContentInfo.
CLOSE = END_OF_CONTENTS * 4


@dataclass(frozen=True, slots=True)
class KmsTemplate:
    """The fixed bytes of a KMS envelope for one RSA size; the holes are rid, encryptedKey, IV, content."""

    key_bytes: int
    head: bytes  # ContentInfo ... KeyTransRecipientInfo up to and including the rid's "80 20" header
    after_rid: bytes  # keyEncryptionAlgorithm and the encryptedKey OCTET STRING header
    content_head: bytes  # end of encryptedKey ... the IV OCTET STRING header


def octet_string_header(length: int) -> bytes:
    return b"\x04" + der_length(length)


def der_length(length: int) -> bytes:
    if length < 0x80:
        return bytes((length,))
    body = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(body),)) + body


def key_encryption_algorithm() -> cms.KeyEncryptionAlgorithm:
    """rsaesOaep with SHA-256 and MGF1-SHA-256, both sha256 identifiers carrying an explicit NULL."""
    return cms.KeyEncryptionAlgorithm(
        {
            "algorithm": "rsaes_oaep",
            "parameters": algos.RSAESOAEPParams(
                {
                    "hash_algorithm": {"algorithm": "sha256", "parameters": core.Null()},
                    "mask_gen_algorithm": {
                        "algorithm": "mgf1",
                        "parameters": {"algorithm": "sha256", "parameters": core.Null()},
                    },
                }
            ),
        }
    )


def _template(key_bytes: int) -> KmsTemplate:
    rid_hole = b"\x00" * RID_LENGTH
    key_hole = b"\x00" * key_bytes
    ktri = cms.KeyTransRecipientInfo(
        {
            "version": "v2",
            "rid": cms.RecipientIdentifier(name="subject_key_identifier", value=rid_hole),
            "key_encryption_algorithm": key_encryption_algorithm(),
            "encrypted_key": key_hole,
        }
    )
    recipients = cms.RecipientInfos([cms.RecipientInfo(name="ktri", value=ktri)]).dump()
    rid_at = recipients.index(b"\x02\x01\x02\x80\x20") + 5
    if recipients[rid_at : rid_at + RID_LENGTH] != rid_hole or not recipients.endswith(key_hole):
        raise RuntimeError("asn1crypto encoded KeyTransRecipientInfo unexpectedly")
    head = (
        INDEFINITE_SEQUENCE
        + cms.ContentType("enveloped_data").dump()
        + INDEFINITE_CONTEXT_0
        + INDEFINITE_SEQUENCE
        + cms.CMSVersion("v2").dump()
        + recipients[:rid_at]
    )
    after_rid = recipients[rid_at + RID_LENGTH : len(recipients) - key_bytes]
    iv_hole = b"\x00" * IV_LENGTH
    content_algorithm = cms.EncryptionAlgorithm({"algorithm": "aes256_cbc", "parameters": iv_hole}).dump()
    content_head = INDEFINITE_SEQUENCE + cms.ContentType("data").dump() + content_algorithm[:-IV_LENGTH]
    return KmsTemplate(key_bytes=key_bytes, head=head, after_rid=after_rid, content_head=content_head)


TEMPLATES: dict[int, KmsTemplate] = {bits // 8: _template(bits // 8) for bits in SUPPORTED_RSA_BITS}
