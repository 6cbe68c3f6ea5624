"""The simulated KMS over HTTPS: the fixture TLS CA, boto3 and ``openssl s_client`` as peers, slow and
untrusting clients, the ``kms-sim --tls`` process and its options."""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import json
import logging
import re
import shutil
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import SSLError
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from nitrokit.cms import decrypt
from nitrokit.errors import UsageError
from nitrokit.kms import DEFAULT_ACCESS_KEY, KmsSimConfig, SimulatedKms
from nitrokit.testing import tls
from nitrokit.testing.pki import FixtureKeysMissingError
from nitrokit.testing.processes import NitrokitProcess
from tests.cli_helpers import run_cli
from tests.conftest import FIXTURES, REPO
from tests.test_kms_support import good_document, recipient, rsa_key

KMS_HOST = "kms.us-east-1.amazonaws.com"
ONE_ATTEMPT = {"mode": "standard", "total_max_attempts": 1}


@pytest.fixture
def kms() -> Iterator[SimulatedKms]:
    with SimulatedKms(tls=True) as simulator:
        yield simulator


def kms_client(url: str, *, verify: str | bool, read_timeout: float = 60) -> Any:
    """A plain boto3 client for ``url`` with the simulator's default credentials and one attempt."""
    return boto3.session.Session().client(
        "kms", endpoint_url=url, region_name="us-east-1", aws_access_key_id=DEFAULT_ACCESS_KEY.access_key_id,
        aws_secret_access_key=DEFAULT_ACCESS_KEY.secret_access_key, verify=verify,
        config=Config(retries=ONE_ATTEMPT, proxies={}, connect_timeout=5, read_timeout=read_timeout))


def s_client(address: tuple[str, int], *args: str) -> subprocess.CompletedProcess[str]:
    """``openssl s_client`` to ``address`` (nothing sent: it handshakes, reports and closes)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl not installed")
    host, port = address
    return subprocess.run([openssl, "s_client", "-connect", f"{host}:{port}", *args], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=30, check=False)


def openssl_verify(ca_file: Path, cert_file: Path) -> subprocess.CompletedProcess[str]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl not installed")
    return subprocess.run([openssl, "verify", "-purpose", "sslserver", "-CAfile", str(ca_file), str(cert_file)],
                          capture_output=True, text=True, timeout=30, check=False)


# --- the fixture TLS CA and its leaves ------------------------------------------------------------------------

def test_the_fixture_tls_ca() -> None:
    ca = x509.load_pem_x509_certificate(tls.tls_ca_file().read_bytes())
    assert ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "nitrokit TEST TLS CA"
    assert ca.subject == ca.issuer
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca
    usage = ca.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.key_cert_sign and usage.value.crl_sign and not usage.value.digital_signature
    public_key = ca.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey) and public_key.curve.name == "secp256r1"
    assert ca.not_valid_after_utc.year == 2059
    key_text = (tls.tls_ca_file().parent / "tls-ca.key.pem").read_text()
    assert key_text.startswith("# TEST KEY for nitrokit's fixture PKI.")


def test_a_server_certificate(tmp_path: Path) -> None:
    cert_pem, key_pem = tls.issue_server_certificate(["localhost", "127.0.0.1", "::1", KMS_HOST, "KMS.Example."],
                                                     lifetime=timedelta(hours=2))
    cert = x509.load_pem_x509_certificate(cert_pem)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost", KMS_HOST, "kms.example"]
    assert names.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1"),
                                                         ipaddress.ip_address("::1")]
    assert cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage(
        [ExtendedKeyUsageOID.SERVER_AUTH])
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    now = datetime.now(UTC)
    assert cert.not_valid_before_utc <= now < cert.not_valid_after_utc <= now + timedelta(hours=2)
    assert b"PRIVATE KEY" in key_pem
    (tmp_path / "leaf.pem").write_bytes(cert_pem)
    verified = openssl_verify(tls.tls_ca_file(), tmp_path / "leaf.pem")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    foreign = openssl_verify(FIXTURES / "pki" / "root.pem", tmp_path / "leaf.pem")  # the attestation root: no
    assert foreign.returncode != 0


@pytest.mark.parametrize(("hosts", "lifetime", "message"), [
    ([], timedelta(days=1), "sequence of 1..64"),
    ("localhost", timedelta(days=1), "sequence of 1..64"),
    (["host-"] * 65, timedelta(days=1), "sequence of 1..64"),
    (["a b"], timedelta(days=1), "'a b' is not a host name"),
    (["-lead"], timedelta(days=1), "is not a host name"),
    (["x" * 300], timedelta(days=1), "is not a host name"),
    (["fe80::1%eth0"], timedelta(days=1), "scoped IPv6"),
    (["\x1b[2Jx"], timedelta(days=1), "'\\x1b[2Jx'"),
    (["localhost"], timedelta(0), "lifetime"),
    (["localhost"], timedelta(days=91), "lifetime"),
])
def test_bad_certificate_requests(hosts: Any, lifetime: timedelta, message: str) -> None:
    with pytest.raises(UsageError, match=re.escape(message)):
        tls.issue_server_certificate(hosts, lifetime=lifetime)


def test_without_the_ca_key_issuing_is_a_typed_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """As in an enclave image, where the TEST keys are deleted: the CA certificate is there, its key is not."""
    shutil.copy(tls.tls_ca_file(), tmp_path / "tls-ca.pem")
    monkeypatch.setattr(tls, "_PKI_DIR", tmp_path)
    tls._tls_ca.cache_clear()
    try:
        with pytest.raises(FixtureKeysMissingError, match="TLS CA's TEST key is not installed"):
            tls.issue_server_certificate(["localhost"])
        simulator = SimulatedKms(tls=True)
        with pytest.raises(FixtureKeysMissingError):
            simulator.start()
        assert not simulator.running
        assert tls.tls_ca_file() == tmp_path / "tls-ca.pem"  # the public certificate is still served
    finally:
        tls._tls_ca.cache_clear()


def test_make_pki_can_write_the_tls_ca_alone(tmp_path: Path) -> None:
    """--tls-ca-only writes the two TLS CA files and nothing else (tests pin the attestation chain)."""
    (tmp_path / "fixtures").mkdir()
    script = shutil.copy(REPO / "fixtures" / "make_pki.py", tmp_path / "fixtures" / "make_pki.py")
    subprocess.run([sys.executable, str(script), "--tls-ca-only"], check=True, capture_output=True, timeout=60)
    assert sorted(path.name for path in tmp_path.rglob("*") if path.is_file()) == [
        "make_pki.py", "tls-ca.key.pem", "tls-ca.pem"]
    made = x509.load_pem_x509_certificate((tmp_path / "fixtures" / "pki" / "tls-ca.pem").read_bytes())
    assert made.subject == x509.load_pem_x509_certificate(tls.tls_ca_file().read_bytes()).subject
    assert made.public_key() != x509.load_pem_x509_certificate(tls.tls_ca_file().read_bytes()).public_key()


# --- boto3 and openssl against SimulatedKms(tls=True) ---------------------------------------------------------

def test_boto3_over_https(kms: SimulatedKms) -> None:
    assert kms.url.startswith("https://127.0.0.1:") and kms.ca_file == tls.tls_ca_file()
    assert len(kms.client().generate_random(NumberOfBytes=32)["Plaintext"]) == 32
    independent = kms_client(kms.url, verify=str(tls.tls_ca_file()))
    response = independent.generate_random(NumberOfBytes=16, Recipient=recipient(good_document()))
    assert len(decrypt(response["CiphertextForRecipient"], rsa_key())) == 16
    assert kms.outcomes() == {"ok": 2}


def test_without_tls_nothing_changes() -> None:
    with SimulatedKms() as simulator:
        assert simulator.url.startswith("http://") and simulator.ca_file is None
        assert len(simulator.client().generate_random(NumberOfBytes=8)["Plaintext"]) == 8


@pytest.mark.parametrize("check", [("-verify_hostname", KMS_HOST), ("-verify_hostname", "kms-fips.eu-west-3"
                                   ".amazonaws.com"), ("-verify_hostname", "localhost"), ("-verify_ip", "127.0.0.1")],
                         ids=["kms", "kms-fips", "localhost", "ip"])
def test_openssl_verifies_the_chain_and_name(check: tuple[str, str]) -> None:
    with SimulatedKms(KmsSimConfig(region="eu-west-3") if "eu-west-3" in check[1] else None, tls=True) as simulator:
        result = s_client(simulator.address, "-CAfile", str(simulator.ca_file), "-verify_return_error",
                          "-servername", check[1] if check[0] == "-verify_hostname" else "localhost", *check)
    assert result.returncode == 0, result.stderr
    assert "Verify return code: 0 (ok)" in result.stdout


@pytest.mark.parametrize("args", [("-verify_hostname", "kms.evil.example"), ("-verify_ip", "10.0.0.1"), ()],
                         ids=["other-name", "other-ip", "untrusted-ca"])
def test_openssl_refuses_other_names_and_an_untrusted_ca(kms: SimulatedKms, args: tuple[str, ...]) -> None:
    ca = kms.ca_file if args else FIXTURES / "pki" / "root.pem"  # untrusted: a CA, but not the TLS one
    result = s_client(kms.address, "-CAfile", str(ca), "-verify_return_error", *args)
    assert result.returncode != 0
    expected = ("hostname mismatch" if args[:1] == ("-verify_hostname",) else
                "IP address mismatch" if args else "unable to get local issuer certificate")
    assert expected in result.stdout + result.stderr


def test_tls_1_2_and_1_3_are_served_1_1_is_refused(kms: SimulatedKms, caplog: pytest.LogCaptureFixture) -> None:
    for version, shown in (("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")):
        result = s_client(kms.address, version, "-CAfile", str(kms.ca_file), "-verify_return_error")
        assert result.returncode == 0 and f"New, {shown}," in result.stdout, result.stderr
    with caplog.at_level(logging.INFO, logger="nitrokit.kms_sim"):
        # The client's own security level would forbid TLS 1.1 first; lowered, the refusal is the server's.
        old = s_client(kms.address, "-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0")
        assert old.returncode != 0
        assert "alert protocol version" in old.stderr
        served = kms.client().generate_random(NumberOfBytes=8)  # the refusal cost nothing but that connection
    assert len(served["Plaintext"]) == 8
    assert "TLS handshake with 127.0.0.1 failed: UNSUPPORTED_PROTOCOL" in caplog.text
    assert tls.server_context(["localhost"]).minimum_version == ssl.TLSVersion.TLSv1_2


def test_clients_not_trusting_the_ca_fail(kms: SimulatedKms, caplog: pytest.LogCaptureFixture,
                                          capfd: pytest.CaptureFixture[str]) -> None:
    with caplog.at_level(logging.INFO, logger="nitrokit.kms_sim"):
        with pytest.raises(SSLError, match="CERTIFICATE_VERIFY_FAILED"):  # botocore's own CA bundle
            kms_client(kms.url, verify=True).generate_random(NumberOfBytes=8)
        host, port = kms.address
        for context in (ssl.create_default_context(),  # the system's roots
                        ssl.create_default_context(cafile=FIXTURES / "pki" / "root.pem")):  # another CA
            with socket.create_connection((host, port), timeout=10) as raw, \
                    pytest.raises(ssl.SSLCertVerificationError):
                context.wrap_socket(raw, server_hostname=KMS_HOST)
        with socket.create_connection((host, port), timeout=10) as raw, \
                pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
            tls.client_context().wrap_socket(raw, server_hostname="kms.evil.example")
        with socket.create_connection((host, port), timeout=10) as raw, \
                tls.client_context().wrap_socket(raw, server_hostname=KMS_HOST) as trusted:
            assert trusted.version() in ("TLSv1.2", "TLSv1.3")
        assert len(kms.client().generate_random(NumberOfBytes=8)["Plaintext"]) == 8
    assert "failed: TLSV1_ALERT_UNKNOWN_CA" in caplog.text
    assert kms.outcomes() == {"ok": 1}  # nothing reached the service over an unverified connection
    assert "Traceback" not in capfd.readouterr().err


def test_plain_http_to_the_https_port_is_refused_quietly(kms: SimulatedKms, caplog: pytest.LogCaptureFixture,
                                                         capfd: pytest.CaptureFixture[str]) -> None:
    with caplog.at_level(logging.INFO, logger="nitrokit.kms_sim"):
        with socket.create_connection(kms.address, timeout=10) as raw:
            raw.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
            assert b"x-amzn-RequestId" not in raw.recv(4096)  # a TLS alert at most, never an HTTP answer
        assert len(kms.client().generate_random(NumberOfBytes=8)["Plaintext"]) == 8
    assert "TLS handshake with 127.0.0.1 failed: HTTP_REQUEST" in caplog.text
    assert "Traceback" not in capfd.readouterr().err


# --- clients that never finish the handshake; the connection limit; stop -------------------------------------

def test_silent_clients_do_not_block_others() -> None:
    """Three connections that never send a byte, each waiting out a long handshake timeout in its own thread: a
    client arriving after them is served at once (were the handshake in the accept loop, its 5 s read timeout
    would expire first)."""
    with SimulatedKms(tls=True, max_connections=4, handshake_timeout=120) as simulator:
        silent = [socket.create_connection(simulator.address, timeout=10) for _ in range(3)]
        try:
            client = kms_client(simulator.url, verify=str(simulator.ca_file), read_timeout=5)
            for _ in range(2):
                assert len(client.generate_random(NumberOfBytes=8)["Plaintext"]) == 8
        finally:
            for sock in silent:
                sock.close()


def test_a_silent_client_holds_its_slot_only_until_the_handshake_timeout(
        caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> None:
    with caplog.at_level(logging.INFO, logger="nitrokit.kms_sim"), \
            SimulatedKms(tls=True, max_connections=1, handshake_timeout=0.3) as simulator:
        with socket.create_connection(simulator.address, timeout=30) as silent:
            assert silent.recv(1024) == b""  # the server gave up on it and closed it
        client = kms_client(simulator.url, verify=str(simulator.ca_file))  # one attempt: the one slot is free
        assert len(client.generate_random(NumberOfBytes=8)["Plaintext"]) == 8
    assert "TLS handshake with 127.0.0.1 failed: not finished within 0.3 seconds" in caplog.text
    assert "Traceback" not in capfd.readouterr().err


def test_over_the_connection_limit_a_tls_connection_is_closed(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="nitrokit.kms_sim"), \
            SimulatedKms(tls=True, max_connections=1, handshake_timeout=120) as simulator:
        held = socket.create_connection(simulator.address, timeout=10)  # accepted first: it has the slot
        try:
            # Closed unanswered (or reset): no plaintext 503 on a TLS port.
            with socket.create_connection(simulator.address, timeout=30) as refused, \
                    contextlib.suppress(ConnectionResetError):
                assert refused.recv(1024) == b""
        finally:
            held.close()
        assert simulator.outcomes() == {"ServiceUnavailableException": 1}
        assert len(simulator.client().generate_random(NumberOfBytes=8)["Plaintext"]) == 8  # retries ride over
    assert "reason='connection limit; closed before the TLS handshake'" in caplog.text


def test_stop_closes_idle_tls_connections() -> None:
    simulator = SimulatedKms(tls=True).start()
    host, port = simulator.address
    conn = http.client.HTTPSConnection(host, port, timeout=10, context=tls.client_context())
    try:
        conn.request("POST", "/", body=b"{}", headers={"Content-Type": "application/x-amz-json-1.1"})
        answer = conn.getresponse()
        assert answer.status == 400 and json.loads(answer.read())["__type"]  # unsigned: refused, but served
        simulator.stop()
        assert not simulator.running
        with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):
            conn.request("POST", "/", body=b"{}", headers={"Content-Type": "application/x-amz-json-1.1"})
            conn.getresponse()
    finally:
        conn.close()
        simulator.stop()


def test_stop_closes_a_connection_in_its_handshake() -> None:
    """stop() shuts down a connection whose thread waits in the handshake (a long timeout), not just the plain
    socket it started as."""
    simulator = SimulatedKms(tls=True, handshake_timeout=120).start()
    try:
        with socket.create_connection(simulator.address, timeout=30) as silent:
            silent.sendall(b"\x16\x03\x01")  # the start of a ClientHello: the server's thread is now reading it
            assert len(simulator.client().generate_random(NumberOfBytes=8)["Plaintext"]) == 8  # it was accepted
            simulator.stop()
            assert silent.recv(1024) == b""  # closed by stop(), long before the handshake timeout
    finally:
        simulator.stop()


def test_tls_options_are_checked(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    with pytest.raises(UsageError, match="go together"):
        SimulatedKms(tls=True, tls_cert=cert)
    with pytest.raises(UsageError, match="for tls=True"):
        SimulatedKms(tls_cert=cert, tls_key=cert)
    with pytest.raises(UsageError, match="handshake_timeout"):
        SimulatedKms(tls=True, handshake_timeout=0)
    with pytest.raises(UsageError, match="cannot read"):
        SimulatedKms(tls=True, tls_cert=cert, tls_key=cert).start()


def test_a_certificate_of_ones_own(tmp_path: Path) -> None:
    cert_file, key_file = write_own_certificate(tmp_path)
    with SimulatedKms(tls=True, tls_cert=cert_file, tls_key=key_file) as simulator:
        assert simulator.ca_file is None  # only the caller knows what issued it
        result = s_client(simulator.address, "-CAfile", str(tls.tls_ca_file()), "-verify_return_error",
                          "-verify_hostname", "own.example")
        assert result.returncode == 0, result.stderr
        client = kms_client(simulator.url, verify=str(tls.tls_ca_file()))
        assert len(client.generate_random(NumberOfBytes=8)["Plaintext"]) == 8


def write_own_certificate(folder: Path) -> tuple[Path, Path]:
    """A certificate for own.example and 127.0.0.1 (from the fixture CA, but loaded as the caller's files)."""
    cert_pem, key_pem = tls.issue_server_certificate(["own.example", "127.0.0.1"])
    cert_file, key_file = folder / "own.pem", folder / "own.key.pem"
    cert_file.write_bytes(cert_pem)
    key_file.write_bytes(key_pem)
    return cert_file, key_file


# --- nitrokit kms-sim --tls ------------------------------------------------------------------------------------

def test_kms_sim_tls_process() -> None:
    with NitrokitProcess("kms-sim", "--tls") as process:
        url = process.first_line
        assert url.startswith("https://127.0.0.1:")
        client = kms_client(url, verify=str(tls.tls_ca_file()))
        assert len(client.generate_random(NumberOfBytes=32)["Plaintext"]) == 32
        assert process.stop() == 0
        log = process.stderr_text()
    assert f"clients must trust the fixture TLS CA {tls.tls_ca_file()}" in log
    assert "operation=GenerateRandom outcome=ok status=200" in log


def test_kms_sim_tls_cert_and_key_imply_tls(tmp_path: Path) -> None:
    cert_file, key_file = write_own_certificate(tmp_path)
    with NitrokitProcess("kms-sim", "--tls-cert", str(cert_file), "--tls-key", str(key_file)) as process:
        assert process.first_line.startswith("https://127.0.0.1:")
        client = kms_client(process.first_line, verify=str(tls.tls_ca_file()))
        assert len(client.generate_random(NumberOfBytes=8)["Plaintext"]) == 8
        assert process.stop() == 0
        assert f"TLS with the certificate {cert_file}" in process.stderr_text()


@pytest.mark.parametrize(("args", "message"), [
    (("--tls-cert", "{cert}"), "--tls-cert and --tls-key go together"),
    (("--tls", "--tls-key", "{key}"), "--tls-cert and --tls-key go together"),
    (("--tls-cert", "{cert}", "--tls-key", "{tmp}/missing.pem"), "cannot read {tmp}/missing.pem"),
    (("--tls-cert", "{key}", "--tls-key", "{cert}"), "cannot be loaded"),
], ids=["cert-alone", "key-alone", "missing-key", "swapped"])
def test_kms_sim_tls_usage_errors(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    cert_file, key_file = write_own_certificate(tmp_path)
    names = {"cert": str(cert_file), "key": str(key_file), "tmp": str(tmp_path)}
    result = run_cli("kms-sim", *(arg.format(**names) for arg in args))
    assert result.returncode == 2
    assert result.stdout == b""  # nothing listened, no URL
    stderr = result.stderr.decode()
    assert message.format(**names) in stderr and "Traceback" not in stderr
    assert "PRIVATE KEY" not in stderr


def test_a_record_altered_in_transit_ends_the_connection_quietly(kms: SimulatedKms,
                                                                  caplog: pytest.LogCaptureFixture,
                                                                  capfd: pytest.CaptureFixture[str]) -> None:
    """After the handshake, bytes that are not the client's records (as a relay injecting them would send): the
    server drops that connection with a log line, answers nothing, and serves the next client."""
    with caplog.at_level(logging.INFO, logger="nitrokit.kms_sim"), \
            socket.create_connection(kms.address, timeout=10) as raw, \
            tls.client_context().wrap_socket(raw, server_hostname=KMS_HOST) as connection:
        forged = b"\x17\x03\x03\x00\x40" + bytes(range(64))  # an application-data record no key produced
        socket.socket.sendall(connection, forged)  # past the TLS layer, onto the wire
        with contextlib.suppress(ssl.SSLError, ConnectionError):
            assert connection.recv(1024) == b""  # closed; never an HTTP answer
        assert len(kms.client().generate_random(NumberOfBytes=8)["Plaintext"]) == 8
    assert re.search(r"TLS connection with 127\.0\.0\.1 failed: \w*(BAD_RECORD_MAC|DECRYPT)\w*", caplog.text)
    assert kms.outcomes() == {"ok": 1}
    assert "Traceback" not in capfd.readouterr().err
