"""The tunnel's allow-list: vsock-proxy's YAML, both map styles, and every refusal naming its line."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from nitrokit.errors import UsageError
from nitrokit.parent._allowlist import (
    MAX_ALLOW_LIST_BYTES,
    AllowList,
    AllowListError,
    load_allow_list,
    parse_allow_list,
)
from nitrokit.parent.tunnel import TunnelConfig

REGIONS = ("us-east-2", "us-east-1", "eu-west-1", "ap-southeast-3", "us-gov-west-1")
# The layout of vsock-proxy's shipped configs/vsock-proxy.yaml: one flow map per line, two per region.
AWS_DEFAULT = "allowlist:\n" + "".join(
    f"- {{address: kms.{region}.amazonaws.com, port: 443}}\n- {{address: kms-fips.{region}.amazonaws.com, port: 443}}\n"
    for region in REGIONS)


def test_the_aws_default_file() -> None:
    allowed = parse_allow_list(AWS_DEFAULT)
    assert len(allowed.entries) == 2 * len(REGIONS)
    assert allowed.allows("kms.eu-west-1.amazonaws.com", 443)
    assert allowed.allows("KMS-FIPS.US-GOV-WEST-1.amazonaws.com.", 443)  # case and the trailing dot
    assert not allowed.allows("kms.eu-west-1.amazonaws.com", 80)
    assert not allowed.allows("kms.eu-west-2.amazonaws.com", 443)
    assert not allowed.allows("evil.kms.eu-west-1.amazonaws.com", 443)


def test_block_maps_comments_quotes_and_ip_literals() -> None:
    allowed = parse_allow_list("""\
# vsock-proxy allow-list
---
allowlist:   # the only key
  - address: "Example.COM."   # a comment
    port: 443

  - port: 8443
    address: '::1'
  - {address: ::ffff:10.0.0.1, port: 1}
  -   address: 10.0.0.2
      port: 65535
""")
    assert allowed.allows("example.com", 443)
    assert allowed.allows("0:0::1", 8443)
    assert allowed.allows("10.0.0.1", 1) and allowed.allows("::ffff:10.0.0.1", 1)
    assert allowed.allows("10.0.0.2", 65535)
    assert not allowed.allows("10.0.0.2", 443)
    assert ipaddress.ip_address("::1") in {entry.host for entry in allowed.entries}


def test_a_host_name_does_not_match_an_ip_entry() -> None:
    allowed = parse_allow_list("allowlist:\n- {address: 127.0.0.1, port: 443}\n")
    assert not allowed.allows("localhost", 443)


@pytest.mark.parametrize(("text", "line", "words"), [
    ("", None, "empty"),
    ("# nothing\n\n", None, "empty"),
    ("allowlist:\n", 1, "empty"),
    ("allowlist: []\n", 1, "empty"),
    ("allowlist: {address: a, port: 1}\n", 1, "next lines"),
    ("other:\n- {address: a, port: 1}\n", 1, "allowlist"),
    ("allowlist:\n- {address: a, port: 1}\nother: 1\n", 3, "unknown key 'other'"),
    ("allowlist:\n- {address: a, port: 1}\nallowlist:\n", 3, "twice"),
    ("allowlist:\n- &anchor {address: a, port: 1}\n", 2, "unsupported"),
    ("allowlist:\n- {address: *alias, port: 1}\n", 2, "unsupported"),
    ("allowlist:\n- {address: !!str a, port: 1}\n", 2, "unsupported"),
    ("allowlist:\n- address: |\n    a\n  port: 1\n", 2, "unsupported"),
    ("allowlist:\n\t- {address: a, port: 1}\n", 2, "tab"),
    ("allowlist:\n- {address: a, address: b, port: 1}\n", 2, "twice"),
    ("allowlist:\n- address: a\n  port: 1\n  port: 2\n", 4, "twice"),
    ("allowlist:\n- {address: a, port: 1, protocol: tcp}\n", 2, "unknown key 'protocol'"),
    ("allowlist:\n- {address: a}\n", 2, "no port"),
    ("allowlist:\n- port: 443\n", 2, "no address"),
    ("allowlist:\n- {address: a, port: 0}\n", 2, "port"),
    ("allowlist:\n- {address: a, port: 65536}\n", 2, "port"),
    ("allowlist:\n- {address: a, port: '443'}\n", 2, "port"),
    ("allowlist:\n- {address: a, port: 0443}\n", 2, "port"),
    ("allowlist:\n- {address: a, port: -1}\n", 2, "port"),
    ("allowlist:\n- {address: a,\n   port: 1}\n", 2, "one line"),
    ("allowlist:\n- {address: a, port: 1} trailing\n", 2, "after"),
    ("allowlist:\n- address: a b\n  port: 1\n", 2, "host name"),
    ("allowlist:\n- address: -bad-\n  port: 1\n", 2, "unsupported"),
    ("allowlist:\n- address: 'unterminated\n  port: 1\n", 2, "end"),
    ("allowlist:\n- address: a\n port: 1\n", 3, "indentation"),
    ("allowlist:\n- address:\n    port: 1\n", 2, "without a value"),
    ("allowlist:\n- address: {host: a}\n  port: 1\n", 2, "unsupported"),
    ("allowlist:\n-\n", 2, "empty list item"),
    ("allowlist:\n- {address: a, port: 1}\x00\n", 2, "control"),
])
def test_refusals_name_the_line(text: str, line: int | None, words: str) -> None:
    with pytest.raises(AllowListError) as caught:
        parse_allow_list(text, source="vp.yaml")
    message = str(caught.value)
    assert words in message
    if line is not None:
        assert f"vp.yaml line {line}:" in message
    assert isinstance(caught.value, UsageError)


def test_files_are_capped_and_read_strictly(tmp_path: Path) -> None:
    path = tmp_path / "vsock-proxy.yaml"
    path.write_text(AWS_DEFAULT)
    assert load_allow_list(path) == parse_allow_list(AWS_DEFAULT)
    path.write_bytes(b"allowlist:\n" + b"# padding\n" * (MAX_ALLOW_LIST_BYTES // 10 + 1))
    with pytest.raises(AllowListError, match="over"):
        load_allow_list(path)
    path.write_bytes(b"allowlist:\n- {address: \xff, port: 1}\n")
    with pytest.raises(AllowListError, match="UTF-8"):
        load_allow_list(path)
    with pytest.raises(AllowListError, match="cannot read"):
        load_allow_list(tmp_path / "missing.yaml")


def test_an_empty_list_allows_nothing() -> None:
    with pytest.raises(AllowListError, match="empty"):
        AllowList(())


def test_the_tunnel_fails_closed(tmp_path: Path) -> None:
    path = tmp_path / "vsock-proxy.yaml"
    path.write_text(AWS_DEFAULT)
    assert TunnelConfig(region="eu-west-1", allow_list=str(path), credentials_listen=None).target_port == 443
    with pytest.raises(AllowListError, match="not on the allow-list"):
        TunnelConfig(region="eu-west-2", allow_list=str(path), credentials_listen=None)
    with pytest.raises(AllowListError, match="not on the allow-list"):
        TunnelConfig(target="kms.eu-west-1.amazonaws.com:8443", allow_list=str(path), credentials_listen=None)
    # Without a list, the target alone is allowed.
    config = TunnelConfig(target="127.0.0.1:9", credentials_listen=None)
    assert config.allowed.allows("127.0.0.1", 9) and not config.allowed.allows("127.0.0.1", 10)
