"""``nitrokit cms decrypt|encrypt|inspect`` through the real dispatcher (cli.main)."""

from __future__ import annotations

import argparse
import base64
import io
import json
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from nitrokit import cli
from nitrokit.cli import cms as cms_cli
from nitrokit.cms import CmsDecryptionError, decrypt, parse_enveloped_data
from tests.cli_helpers import only_commands
from tests.conftest import vector_files, vector_path

SUBDIR = "kms-recipient"
ENCLAVER_PLAINTEXT = bytes.fromhex("3be82c440f06cb4d44c4c2ec3bf30d472407d3a9125aa4c1842b98f6bdd26e41")


@pytest.fixture(autouse=True)
def only_cms_commands(monkeypatch):
    # The real dispatcher and error mapping, without importing every other command group.
    only_commands(monkeypatch, "nitrokit.cli.cms")


def run(*argv: str) -> int:
    return cli.main(list(argv))


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict[str, Path]:
    folder: Path = tmp_path_factory.mktemp("keys")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key()
    files = {
        "key.pem": key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                     serialization.NoEncryption()),
        "key.der": key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()),
        "locked.pem": key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.BestAvailableEncryption(b"pw")),
        "pub.pem": public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
        "pub.der": public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo),
        "ec.pem": ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
        "ec-pub.pem": ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
        "junk.pem": b"-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n",
    }
    paths = {}
    for name, data in files.items():
        (folder / name).write_bytes(data)
        paths[name] = folder / name
    return paths


def private_key(keys: dict[str, Path]) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(keys["key.pem"].read_bytes(), None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def set_stdin(monkeypatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))


# -- decrypt -----------------------------------------------------------------------------------------------


def test_decrypt_the_enclaver_sample(tmp_path):
    out = tmp_path / "plain"
    code = run("cms", "decrypt", "--key", str(vector_path(SUBDIR, "enclaver-generatedatakey.key.pem")),
               str(vector_path(SUBDIR, "enclaver-generatedatakey.ber")), "--out", str(out))
    assert code == 0
    assert out.read_bytes() == ENCLAVER_PLAINTEXT


def test_decrypt_base64_from_stdin_to_stdout(monkeypatch, capsysbinary):
    sample = vector_path(SUBDIR, "enclaver-generatedatakey.ber").read_bytes()
    set_stdin(monkeypatch, base64.encodebytes(sample))
    code = run("cms", "decrypt", "--key", str(vector_path(SUBDIR, "enclaver-generatedatakey.key.pem")))
    assert code == 0
    assert capsysbinary.readouterr().out == ENCLAVER_PLAINTEXT


@pytest.mark.parametrize("key_file", ["key.pem", "key.der"])
def test_encrypt_then_decrypt(keys, tmp_path, key_file):
    (tmp_path / "in").write_bytes(b"hello enclave")
    assert run("cms", "encrypt", "--recipient", str(keys["pub.pem"]), str(tmp_path / "in"),
               "--out", str(tmp_path / "env")) == 0
    assert run("cms", "decrypt", "--key", str(keys[key_file]), str(tmp_path / "env"),
               "--out", str(tmp_path / "out")) == 0
    assert (tmp_path / "out").read_bytes() == b"hello enclave"


def test_decrypt_with_another_key_writes_nothing(keys, tmp_path, capsys):
    out = tmp_path / "plain"
    code = run("cms", "decrypt", "--key", str(keys["key.pem"]),
               str(vector_path(SUBDIR, "enclaver-generatedatakey.ber")), "--out", str(out))
    assert code == 1
    assert "not this key" in capsys.readouterr().err
    assert not out.exists()


def test_decrypt_failure_after_the_rid_check_writes_nothing(tmp_path, capsysbinary):
    sample = bytearray(vector_path(SUBDIR, "enclaver-generatedatakey.ber").read_bytes())
    sample[-20] ^= 0x01  # last ciphertext block: the padding breaks
    (tmp_path / "env").write_bytes(bytes(sample))
    key = str(vector_path(SUBDIR, "enclaver-generatedatakey.key.pem"))
    for out in (str(tmp_path / "plain"), "-"):
        code = run("cms", "decrypt", "--key", key, str(tmp_path / "env"), "--out", out)
        captured = capsysbinary.readouterr()
        assert code == 1
        assert captured.out == b""
        assert captured.err.decode().strip() == f"nitrokit: {CmsDecryptionError.MESSAGE}"
    assert not (tmp_path / "plain").exists()


def test_decrypt_malformed_input(keys, tmp_path, capsys):
    (tmp_path / "env").write_bytes(b"\x30\x80\x06\x09junk")
    code = run("cms", "decrypt", "--key", str(keys["key.pem"]), str(tmp_path / "env"), "--out",
               str(tmp_path / "plain"))
    assert code == 1
    assert "not a KMS CiphertextForRecipient" in capsys.readouterr().err
    assert not (tmp_path / "plain").exists()


@pytest.mark.parametrize(("key_file", "message"), [
    ("ec.pem", "not an RSA key"),
    ("locked.pem", "password-protected"),
    ("junk.pem", "cannot read a private key"),
    ("pub.pem", "cannot read a private key"),
])
def test_decrypt_with_an_unusable_key_is_a_usage_error(keys, tmp_path, capsys, key_file, message):
    code = run("cms", "decrypt", "--key", str(keys[key_file]),
               str(vector_path(SUBDIR, "rustcrypto-2.ber")), "--out", str(tmp_path / "plain"))
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "plain").exists()


# -- encrypt -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("recipient", ["pub.pem", "pub.der"])
def test_encrypt_from_stdin_has_the_kms_shape(keys, monkeypatch, capsysbinary, recipient):
    set_stdin(monkeypatch, b"\x00" * 32)
    assert run("cms", "encrypt", "--recipient", str(keys[recipient])) == 0
    envelope = capsysbinary.readouterr().out
    real = parse_enveloped_data(vector_path(SUBDIR, "rustcrypto-2.ber").read_bytes())
    assert parse_enveloped_data(envelope).skeleton() == real.skeleton()
    assert decrypt(envelope, private_key(keys)) == b"\x00" * 32


@pytest.mark.parametrize(("recipient", "message"), [("ec-pub.pem", "EC"), ("key.pem", "PUBLIC KEY")])
def test_encrypt_for_an_unsupported_key_is_a_usage_error(keys, tmp_path, capsys, recipient, message):
    (tmp_path / "in").write_bytes(b"x")
    code = run("cms", "encrypt", "--recipient", str(keys[recipient]), str(tmp_path / "in"),
               "--out", str(tmp_path / "env"))
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "env").exists()


def test_encrypt_refuses_an_oversized_plaintext(keys, tmp_path, capsys):
    (tmp_path / "in").write_bytes(b"x" * (60 * 1024 + 1))
    code = run("cms", "encrypt", "--recipient", str(keys["pub.pem"]), str(tmp_path / "in"),
               "--out", str(tmp_path / "env"))
    assert code == 2
    assert "over the limit" in capsys.readouterr().err
    assert not (tmp_path / "env").exists()


# -- inspect -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", vector_files(SUBDIR, "*.ber"))
def test_inspect_every_sample(path, capsys):
    assert run("cms", "inspect", str(path)) == 0
    text = capsys.readouterr().out
    parsed = parse_enveloped_data(path.read_bytes())
    assert parsed.rid.hex() in text
    assert parsed.iv.hex() in text
    assert "1.2.840.113549.1.1.7 (rsaesOaep)" in text
    assert "NULL parameters" in text
    assert f"{parsed.encrypted_content_length} bytes, {parsed.content_form}" in text

    assert run("cms", "inspect", str(path), "--json") == 0
    described = json.loads(capsys.readouterr().out)
    assert described == parsed.to_dict()
    assert described["version"] == 2
    assert described["recipient"]["encrypted_key_length"] == 256
    assert described["content"]["chunk_sizes"] == list(parsed.chunk_sizes)


def test_inspect_base64_on_stdin(monkeypatch, capsys):
    sample = vector_path(SUBDIR, "rustcrypto-4-chunked-4096.ber").read_bytes()
    set_stdin(monkeypatch, base64.b64encode(sample) + b"\n")
    assert run("cms", "inspect", "-", "--json") == 0
    assert json.loads(capsys.readouterr().out)["content"]["chunk_sizes"] == [1000, 1000, 1000, 1000, 112]


def test_inspect_names_what_differs(tmp_path, capsys):
    sample = vector_path(SUBDIR, "rustcrypto-2.ber").read_bytes()
    aes128 = sample.replace(bytes.fromhex("060960864801650304012a"), bytes.fromhex("0609608648016503040102"))
    assert aes128 != sample
    (tmp_path / "env").write_bytes(aes128)
    assert run("cms", "inspect", str(tmp_path / "env")) == 1
    err = capsys.readouterr().err
    assert "contentEncryptionAlgorithm is 2.16.840.1.101.3.4.1.2 (aes128-CBC)" in err


def test_register_adds_the_cms_group_to_any_parser():
    parser = argparse.ArgumentParser()
    cms_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["cms", "inspect", "x", "--json"])
    assert args.handler is cms_cli.run_inspect and args.json
    args = parser.parse_args(["cms", "decrypt", "--key", "k.pem"])
    assert args.handler is cms_cli.run_decrypt and args.input == "-" and args.out == "-"
    with pytest.raises(SystemExit):
        parser.parse_args(["cms", "encrypt"])  # --recipient is required


def test_decrypt_refuses_to_print_plaintext_on_a_terminal(tmp_path, monkeypatch, capsys):
    import sys

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from nitrokit.cms import encrypt_for_recipient

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key = tmp_path / "key.pem"
    key.write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    envelope = tmp_path / "env.ber"
    envelope.write_bytes(encrypt_for_recipient(b"secret bytes", private.public_key()))
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert run("cms", "decrypt", "--key", str(key), str(envelope)) == 2
    assert "terminal" in capsys.readouterr().err
    assert run("cms", "decrypt", "--key", str(key), str(envelope), "--out", str(tmp_path / "out")) == 0
    assert (tmp_path / "out").read_bytes() == b"secret bytes"
