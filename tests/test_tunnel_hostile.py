"""Tunnel mode against hostile peers: a parent, a network, a DNS server, a credentials source or a server that
misbehaves on purpose, over real sockets on loopback. Each test is an attack that once got through."""

from __future__ import annotations

import pytest

from nitrokit.enclave.tunnel import CredentialsCache
from nitrokit.errors import UsageError
from nitrokit.wire.credentials import AwsCredentials
from tests.test_enclave_tunnel import ACCESS_KEY, SECRET, StaticCredentials, _http, _transport, canned

# -- the enclave: credentials a provider hands over -------------------------------------------------------------


@pytest.mark.parametrize(("member", "credentials"), [
    ("SessionToken", AwsCredentials(access_key_id=ACCESS_KEY, secret_access_key=SECRET,
                                    session_token="token\r\nX-Injected: 1")),
    ("SessionToken", AwsCredentials(access_key_id=ACCESS_KEY, secret_access_key=SECRET, session_token="t\u20ac")),
    ("AccessKeyId", AwsCredentials(access_key_id=ACCESS_KEY + "\r\nX-Injected: 1", secret_access_key=SECRET)),
    ("SecretAccessKey", AwsCredentials(access_key_id=ACCESS_KEY, secret_access_key="")),
])
def test_credentials_that_would_break_the_request_head_are_refused_before_sending(
        member: str, credentials: AwsCredentials) -> None:
    """A provider's credentials go into HTTP headers: a CR/LF would add headers of the provider's choosing to a
    signed request, a non-Latin-1 character escaped as a bare UnicodeEncodeError. Both are refused, by name."""
    with pytest.raises(UsageError, match=member) as caught:
        CredentialsCache(StaticCredentials(credentials)).credentials()
    assert "Injected" not in str(caught.value) and "\u20ac" not in str(caught.value)
    with canned(_http("200 OK", b"{}")) as server, \
            _transport(server.address, credentials=StaticCredentials(credentials)) as transport, \
            pytest.raises(UsageError, match=member):
        transport.call("GenerateRandom", {"NumberOfBytes": 8})
    assert not server.requests
