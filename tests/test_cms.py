"""nitrokit.cms against the real KMS samples, OpenSSL, and the shape KMS emits."""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

import nitrokit.cms._build as build_module
from nitrokit.cms import (
    MAX_ENVELOPE_SIZE,
    MAX_PLAINTEXT_SIZE,
    CmsDecryptionError,
    CmsError,
    CmsFormatError,
    EnvelopedData,
    RecipientMismatchError,
    UnsupportedKeyError,
    decrypt,
    encrypt_for_recipient,
    parse_enveloped_data,
    recipient_key_id,
)
from nitrokit.cms._parse import _parse_general, _parse_kms_layout
from nitrokit.errors import InputTooLargeError, NitrokitError, UsageError
from tests.conftest import vector_files, vector_path

SUBDIR = "kms-recipient"
ENCLAVER_PLAINTEXT = bytes.fromhex("3be82c440f06cb4d44c4c2ec3bf30d472407d3a9125aa4c1842b98f6bdd26e41")

# From vectors/kms-recipient/README.md.
SAMPLE_CONTENT = {
    "enclaver-generatedatakey.ber": ("constructed", (48,)),
    "rustcrypto-1.ber": ("constructed", (16,)),
    "rustcrypto-2.ber": ("constructed", (48,)),
    "rustcrypto-3-primitive.ber": ("primitive", ()),
    "rustcrypto-4-chunked-4096.ber": ("constructed", (1000, 1000, 1000, 1000, 112)),
}


def spki(key: rsa.RSAPrivateKey | rsa.RSAPublicKey) -> bytes:
    public = key.public_key() if isinstance(key, rsa.RSAPrivateKey) else key
    return public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.fixture(scope="module")
def key2048() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def enclaver_key() -> rsa.RSAPrivateKey:
    path = vector_path(SUBDIR, "enclaver-generatedatakey.key.pem")
    key = serialization.load_pem_private_key(path.read_bytes(), None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def walk(data: bytes) -> list[tuple[int, bytes, bytes | int]]:
    """Every TLV as (depth, header bytes, value), with the per-envelope random values (OCTET STRINGs and the
    [0] rid/primitive content) replaced by their length. Written here, independently of nitrokit.cms."""
    out: list[tuple[int, bytes, bytes | int]] = []

    def node(pos: int, depth: int) -> int:
        tag, first = data[pos], data[pos + 1]
        p = pos + 2
        size: int | None
        if first == 0x80:
            size = None
        elif first < 0x80:
            size = first
        else:
            size = int.from_bytes(data[p : p + (first & 0x7F)], "big")
            p += first & 0x7F
        header = data[pos:p]
        if tag & 0x20:
            out.append((depth, header, b""))
            if size is None:
                while data[p : p + 2] != b"\x00\x00":
                    p = node(p, depth + 1)
                out.append((depth, b"\x00\x00", b""))
                return p + 2
            end = p + size
            while p < end:
                p = node(p, depth + 1)
            return end
        assert size is not None
        value = data[p : p + size]
        out.append((depth, header, len(value) if tag in (0x04, 0x80) else value))
        return p + size

    assert node(0, 0) == len(data)
    return out


# -- the real samples --------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", vector_files(SUBDIR, "*.ber"))
def test_every_real_sample_parses_with_the_kms_shape(path: Path):
    data = path.read_bytes()
    parsed = parse_enveloped_data(data)
    form, chunks = SAMPLE_CONTENT[path.name]
    assert parsed.content_form == form
    assert parsed.chunk_sizes == chunks
    assert (parsed.version, parsed.recipient_version) == (2, 2)
    assert len(parsed.rid) == 32
    assert parsed.encrypted_key_length == 256
    assert len(parsed.iv) == 16
    assert parsed.oaep_hash_null_parameters and parsed.mgf_hash_null_parameters
    assert parsed.indefinite_length
    assert parsed.encrypted_content_length == (sum(chunks) if chunks else 16)
    # inspect's JSON form round-trips and hides no surprises
    described = json.loads(json.dumps(parsed.to_dict()))
    assert described["recipient"]["rid"]["value"] == parsed.rid.hex()
    assert described["recipient"]["key_encryption_algorithm"]["name"] == "rsaesOaep"
    assert described["content"]["content_encryption_algorithm"]["oid"] == "2.16.840.1.101.3.4.1.42"
    assert described["content"]["form"] == form
    # the fast layout match and the general BER parse agree
    assert _parse_kms_layout(data) == _parse_general(data) == parsed


def test_all_real_samples_share_one_skeleton():
    skeletons = []
    for name in SAMPLE_CONTENT:
        parsed = parse_enveloped_data(vector_path(SUBDIR, name).read_bytes())
        skeleton = parsed.skeleton()
        skeleton["content"].pop("encrypted_content_length")
        skeleton["content"].pop("form")
        skeleton["content"].pop("chunk_sizes")
        skeletons.append(skeleton)
    assert all(s == skeletons[0] for s in skeletons)


def test_the_enclaver_sample_decrypts_to_the_readme_bytes(enclaver_key):
    data = vector_path(SUBDIR, "enclaver-generatedatakey.ber").read_bytes()
    assert decrypt(data, enclaver_key) == ENCLAVER_PLAINTEXT
    assert decrypt(parse_enveloped_data(data), enclaver_key) == ENCLAVER_PLAINTEXT
    assert parse_enveloped_data(data).rid == recipient_key_id(enclaver_key.public_key())


@pytest.mark.parametrize("name", [n for n in SAMPLE_CONTENT if n.startswith("rustcrypto")])
def test_unpublished_key_samples_are_someone_elses(name, enclaver_key):
    with pytest.raises(RecipientMismatchError):
        decrypt(vector_path(SUBDIR, name).read_bytes(), enclaver_key)


# -- our envelopes have KMS's shape ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("plaintext_size", "sample"),
    [
        (1, "rustcrypto-1.ber"),
        (15, "rustcrypto-1.ber"),
        (32, "rustcrypto-2.ber"),
        (32, "enclaver-generatedatakey.ber"),
        (4096, "rustcrypto-4-chunked-4096.ber"),
    ],
)
def test_our_envelope_has_the_same_structure_as_kms_output(key2048, plaintext_size, sample):
    real = vector_path(SUBDIR, sample).read_bytes()
    ours = encrypt_for_recipient(b"\x5a" * plaintext_size, spki(key2048))
    # every header byte, OID, INTEGER and NULL identical; only random values (rid, key, IV, chunks) differ
    assert walk(ours) == walk(real)
    assert len(ours) == len(real)
    assert parse_enveloped_data(ours).skeleton() == parse_enveloped_data(real).skeleton()
    assert decrypt(ours, key2048) == b"\x5a" * plaintext_size


def test_walk_sees_a_difference_in_structure(key2048):
    # guard for the test above: the comparison is not vacuous
    ours = encrypt_for_recipient(b"x" * 32, spki(key2048))
    without_null = ours.replace(b"\x06\x09\x60\x86\x48\x01\x65\x03\x04\x02\x01\x05\x00", b"\x06\x09"
                                b"\x60\x86\x48\x01\x65\x03\x04\x02\x01\x04\x00", 1)
    assert walk(without_null) != walk(ours)


@pytest.mark.parametrize("size", [0, 1, 15, 16, 999, 1000, 1001, 3000, 4096, 10_000])
def test_content_is_chunked_like_kms(key2048, size):
    parsed = parse_enveloped_data(encrypt_for_recipient(bytes(size), key2048.public_key()))
    ciphertext_length = (size // 16 + 1) * 16
    expected = [1000] * (ciphertext_length // 1000) + ([ciphertext_length % 1000] if ciphertext_length % 1000 else [])
    assert parsed.content_form == "constructed"
    assert list(parsed.chunk_sizes) == expected
    assert parsed.encrypted_content_length == ciphertext_length


def test_rid_is_sha256_of_the_spki(key2048):
    der = spki(key2048)
    parsed = parse_enveloped_data(encrypt_for_recipient(b"x", der))
    assert parsed.rid == hashlib.sha256(der).digest() == recipient_key_id(der)


def test_every_envelope_has_a_fresh_content_key_and_iv(key2048):
    first = parse_enveloped_data(encrypt_for_recipient(b"same", key2048.public_key()))
    second = parse_enveloped_data(encrypt_for_recipient(b"same", key2048.public_key()))
    assert first.iv != second.iv
    assert first.encrypted_key != second.encrypted_key
    assert first.encrypted_content != second.encrypted_content


def test_content_key_and_iv_come_from_os_urandom(key2048, monkeypatch):
    drawn: list[int] = []

    def fake_urandom(n: int) -> bytes:
        drawn.append(n)
        return bytes([len(drawn)]) * n

    monkeypatch.setattr(os, "urandom", fake_urandom)  # looked up at call time by _build
    parsed = parse_enveloped_data(encrypt_for_recipient(b"x", key2048.public_key()))
    assert drawn[:2] == [32, 16]
    assert parsed.iv == b"\x02" * 16
    content_key = key2048.decrypt(parsed.encrypted_key, build_module.OAEP_SHA256)
    assert content_key == b"\x01" * 32


@pytest.fixture(scope="module")
def big_keys() -> dict[int, rsa.RSAPrivateKey]:
    return {bits: rsa.generate_private_key(public_exponent=65537, key_size=bits) for bits in (3072, 4096)}


@pytest.mark.parametrize("bits", [3072, 4096])
def test_larger_rsa_keys(big_keys, bits):
    key = big_keys[bits]
    data = encrypt_for_recipient(b"payload", spki(key))
    parsed = parse_enveloped_data(data)
    assert parsed.encrypted_key_length == bits // 8
    assert _parse_kms_layout(data) == _parse_general(data) == parsed
    assert decrypt(data, key) == b"payload"


def test_largest_plaintext_fits_the_envelope_cap(big_keys):
    key = big_keys[4096]
    plaintext = bytes(range(256)) * (MAX_PLAINTEXT_SIZE // 256)
    assert len(plaintext) == MAX_PLAINTEXT_SIZE
    data = encrypt_for_recipient(plaintext, key.public_key())
    assert len(data) <= MAX_ENVELOPE_SIZE
    assert decrypt(data, key) == plaintext
    with pytest.raises(InputTooLargeError):
        encrypt_for_recipient(plaintext + b"x", key.public_key())


# -- keys --------------------------------------------------------------------------------------------------


def test_recipient_key_id_is_the_same_for_every_form_of_the_key(key2048):
    public = key2048.public_key()
    pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    expected = hashlib.sha256(spki(key2048)).digest()
    assert recipient_key_id(public) == recipient_key_id(spki(key2048)) == recipient_key_id(pem) == expected
    assert recipient_key_id(bytearray(spki(key2048))) == expected  # type: ignore[arg-type]


def _unsupported_keys(key2048: rsa.RSAPrivateKey) -> dict[str, object]:
    public = key2048.public_key()
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(public).serial_number(1)
        .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1)).sign(key2048, hashes.SHA256())
    )
    return {
        "rsa-1024": spki(small),
        "rsa-1024-object": small,
        "ec-p256": ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo),
        "ec-object": ec.generate_private_key(ec.SECP256R1()).public_key(),
        "ed25519": ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
        "pkcs1-der": public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1),
        "pkcs1-pem": public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1),
        "certificate": cert.public_bytes(serialization.Encoding.PEM),
        "spki-plus-junk": spki(key2048) + b"\x00",
        "garbage": b"not a key",
        "empty": b"",
        "text": spki(key2048).hex(),
        "private-key": key2048,
    }


def test_unsupported_recipient_keys_are_refused(key2048):
    for name, key in _unsupported_keys(key2048).items():
        with pytest.raises(UnsupportedKeyError) as info:
            encrypt_for_recipient(b"x", key)  # type: ignore[arg-type]
        assert isinstance(info.value, UsageError) and isinstance(info.value, CmsError), name
        with pytest.raises(UnsupportedKeyError):
            recipient_key_id(key)  # type: ignore[arg-type]


def test_unsupported_private_keys_are_refused():
    data = vector_path(SUBDIR, "rustcrypto-2.ber").read_bytes()
    with pytest.raises(UnsupportedKeyError, match="RSA-1024"):
        decrypt(data, rsa.generate_private_key(public_exponent=65537, key_size=1024))
    with pytest.raises(UnsupportedKeyError, match="expected an RSAPrivateKey"):
        decrypt(data, ec.generate_private_key(ec.SECP256R1()))  # type: ignore[arg-type]


def test_wrong_argument_types_are_usage_errors(key2048):
    with pytest.raises(UsageError):
        parse_enveloped_data("30 80")  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        encrypt_for_recipient("text", key2048.public_key())  # type: ignore[arg-type]
    data = encrypt_for_recipient(bytearray(b"ok"), key2048.public_key())  # type: ignore[arg-type]
    assert decrypt(bytearray(data), key2048) == b"ok"  # type: ignore[arg-type]


def test_error_classes_share_the_nitrokit_root():
    for cls in (CmsError, CmsFormatError, RecipientMismatchError, CmsDecryptionError, UnsupportedKeyError):
        assert issubclass(cls, NitrokitError)
        assert issubclass(cls, CmsError)


def test_envelope_model_does_not_print_ciphertexts(key2048):
    parsed = parse_enveloped_data(encrypt_for_recipient(b"x" * 64, key2048.public_key()))
    text = repr(parsed)
    assert parsed.encrypted_key.hex() not in text and repr(parsed.encrypted_key) not in text
    assert repr(parsed.encrypted_content) not in text
    assert dataclasses.is_dataclass(parsed) and isinstance(parsed, EnvelopedData)


# -- OpenSSL interop ---------------------------------------------------------------------------------------

OPENSSL = shutil.which("openssl")
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="the openssl command is not installed")
INTEROP_SIZES = [1, 32, 1024, 4096]


@pytest.fixture(scope="module")
def openssl_recipient(tmp_path_factory, key2048) -> Path:
    """key.pem and a self-signed cert.pem whose subjectKeyIdentifier is SHA-256(SPKI), so -keyid puts our rid."""
    folder: Path = tmp_path_factory.mktemp("openssl")
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nitrokit test recipient")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key2048.public_key()).serial_number(1)
        .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectKeyIdentifier(hashlib.sha256(spki(key2048)).digest()), critical=False)
        .sign(key2048, hashes.SHA256())
    )
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(key2048.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return folder


def _openssl(*args: str, stdin: bytes) -> bytes:
    assert OPENSSL is not None
    done = subprocess.run([OPENSSL, "cms", *args], input=stdin, capture_output=True, check=False, timeout=60)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout


@needs_openssl
@pytest.mark.parametrize("size", INTEROP_SIZES)
def test_we_open_envelopes_made_by_openssl(openssl_recipient, key2048, size):
    plaintext = bytes((i * 7 + size) % 256 for i in range(size))
    envelope = _openssl(
        "-encrypt", "-keyid", "-aes-256-cbc", "-recip", str(openssl_recipient / "cert.pem"),
        "-keyopt", "rsa_padding_mode:oaep", "-keyopt", "rsa_oaep_md:sha256", "-keyopt", "rsa_mgf1_md:sha256",
        "-outform", "DER", "-binary", stdin=plaintext,
    )
    parsed = parse_enveloped_data(envelope)
    assert parsed.rid == recipient_key_id(key2048.public_key())
    assert decrypt(envelope, key2048) == plaintext
    # OpenSSL's look-alike differs from KMS output in exactly these ways, and otherwise has its skeleton
    assert not parsed.oaep_hash_null_parameters and not parsed.mgf_hash_null_parameters
    assert not parsed.indefinite_length
    assert parsed.content_form == "primitive"
    kms_like = dataclasses.replace(parsed, oaep_hash_null_parameters=True, mgf_hash_null_parameters=True,
                                   indefinite_length=True, content_form="constructed", chunk_sizes=())
    ours = parse_enveloped_data(encrypt_for_recipient(plaintext, key2048.public_key()))
    expected = ours.skeleton()
    expected["content"]["chunk_sizes"] = []
    assert kms_like.skeleton() == expected


@needs_openssl
@pytest.mark.parametrize("size", INTEROP_SIZES)
def test_openssl_opens_our_envelopes(openssl_recipient, key2048, size):
    plaintext = bytes((i * 13 + size) % 256 for i in range(size))
    envelope = encrypt_for_recipient(plaintext, spki(key2048))
    opened = _openssl("-decrypt", "-inform", "DER", "-inkey", str(openssl_recipient / "key.pem"), "-binary",
                      stdin=envelope)
    assert opened == plaintext


def test_decryption_error_is_raised_for_a_wrong_key_with_a_forged_rid(key2048):
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    envelope = encrypt_for_recipient(b"secret", other.public_key())
    forged = envelope.replace(recipient_key_id(other.public_key()), recipient_key_id(key2048.public_key()))
    with pytest.raises(CmsDecryptionError):
        decrypt(forged, key2048)
    with pytest.raises(CmsFormatError):
        decrypt(forged[:-3], key2048)


def _good_and_unwrap_failing(key: rsa.RSAPrivateKey) -> tuple[EnvelopedData, EnvelopedData]:
    good = parse_enveloped_data(encrypt_for_recipient(b"k" * 32, key.public_key()))
    wrapped = bytearray(good.encrypted_key)
    wrapped[-1] ^= 1
    return good, dataclasses.replace(good, encrypted_key=bytes(wrapped))


def test_an_unwrap_failure_still_runs_the_aes_step_with_a_random_key(key2048, monkeypatch):
    # RFC 3218's countermeasure (issue 12): a wrapped key that does not unwrap (or unwraps to the wrong size)
    # goes on through the same AES-CBC and padding check as one that does, with a random content key, so the
    # two failures take the same time. Before, an unwrap failure returned without touching AES.
    from cryptography.hazmat.primitives.ciphers import algorithms

    keys: list[bytes] = []
    real_aes = algorithms.AES

    def recording_aes(content_key: bytes) -> object:
        keys.append(content_key)
        return real_aes(content_key)

    good, bad_oaep = _good_and_unwrap_failing(key2048)
    short_wrap = key2048.public_key().encrypt(b"s" * 16, build_module.OAEP_SHA256)
    short_key = dataclasses.replace(good, encrypted_key=short_wrap)
    # Patched only after a real AES-CBC use: cryptography resolves the cipher on first use.
    monkeypatch.setattr(algorithms, "AES", recording_aes)
    for envelope in (bad_oaep, short_key):
        with pytest.raises(CmsDecryptionError) as caught:
            decrypt(envelope, key2048)
        assert str(caught.value) == str(CmsDecryptionError())  # one error for every failure
    assert [len(k) for k in keys] == [32, 32]
    assert keys[0] != keys[1]  # fresh random keys, not a constant


def test_an_unwrap_failure_fails_even_when_the_random_key_unpads(key2048, monkeypatch):
    # The random content key of the countermeasure can unpad the content by chance (here: it is the real
    # key); the failure must still be reported, and nothing decrypted with it returned.
    good, bad_oaep = _good_and_unwrap_failing(key2048)
    real_key = key2048.decrypt(good.encrypted_key, build_module.OAEP_SHA256)
    monkeypatch.setattr(os, "urandom", lambda n: real_key[:n])
    assert decrypt(good, key2048) == b"k" * 32
    with pytest.raises(CmsDecryptionError):
        decrypt(bad_oaep, key2048)
