"""The tunnel's allow-list: AWS vsock-proxy's YAML file of ``{address, port}`` entries, read strictly.

The format is vsock-proxy's (its default file lists every region's KMS endpoints), so an operator can switch
either way::

    allowlist:
    - {address: kms.eu-west-1.amazonaws.com, port: 443}
    - address: kms-fips.eu-west-1.amazonaws.com     # the block form works too
      port: 443

There is no YAML library in the dependencies, and this file decides where the parent may connect, so it is
read by a parser of exactly this subset: one top-level ``allowlist:`` key, a non-empty list of maps with the
keys ``address`` (a host name or IP literal) and ``port`` (1..65535), each map written as a flow map on one
line or as a block map; comments, blank lines, an optional ``---`` first, plain or quoted scalars. Anything
else (anchors, aliases, tags, other keys, tabs, duplicate keys, a missing member, multi-line flow maps) is an
:class:`AllowListError` naming the line: an unknown construct is never skipped (fail closed).

Matching is exact: host names case-insensitively with any trailing dot ignored, IP literals as addresses
(``::ffff:10.0.0.1`` is ``10.0.0.1``). A name ending in a numeric label (``127.1``, ``010.0.0.1``: IPv4 in
getaddrinfo's shorthand, octal, hex) is neither and refused. Unlike vsock-proxy, a host name target is never
matched by resolving the entries: what is allowed is what the file says.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path

from nitrokit.errors import UsageError
from nitrokit.text import escaped
from nitrokit.wire.address import is_host_name

__all__ = ["MAX_ALLOW_LIST_BYTES", "MAX_ALLOW_LIST_ENTRIES", "AllowList", "AllowListError", "AllowedTarget",
           "load_allow_list", "normalise_host", "parse_allow_list"]

#: The largest allow-list file read (vsock-proxy's default, every region's KMS endpoints, is about 3 KB).
MAX_ALLOW_LIST_BYTES = 1 << 20
MAX_ALLOW_LIST_ENTRIES = 4096

_PORT = re.compile(r"[1-9][0-9]{0,4}")
_KEYS = ("address", "port")
# A plain scalar may not start with these (YAML's indicators): anchors, aliases, tags, block scalars...
_INDICATORS = frozenset("-?:,[]{}#&*!|>'\"%@`")

Host = str | ipaddress.IPv4Address | ipaddress.IPv6Address


class AllowListError(UsageError):
    """The allow-list file is unreadable, empty, too large or not in the supported format (the message says
    which line and why)."""


@dataclass(frozen=True)
class AllowedTarget:
    """One allowed ``host:port``; ``host`` as :func:`normalise_host` gives it."""

    host: Host
    port: int

    def __str__(self) -> str:
        host = str(self.host)
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"


@dataclass(frozen=True)
class AllowList:
    """The targets the tunnel may connect to (never empty)."""

    entries: tuple[AllowedTarget, ...]

    def __post_init__(self) -> None:
        if not self.entries:
            raise AllowListError("the allow-list is empty: nothing would be allowed")

    @classmethod
    def of(cls, host: str, port: int) -> AllowList:
        """The list holding ``host:port`` alone (the tunnel's default: only its target)."""
        return cls((AllowedTarget(normalise_host(host), _check_port(port)),))

    def allows(self, host: str, port: int) -> bool:
        try:
            wanted = AllowedTarget(normalise_host(host), port)
        except AllowListError:
            return False
        return wanted in self.entries


def normalise_host(host: str) -> Host:
    """An IP literal as an address (an IPv4-mapped IPv6 one as IPv4), a host name lower-cased without its
    trailing dot; :class:`AllowListError` for anything else."""
    if not isinstance(host, str):
        raise AllowListError(f"a host must be a string, not {type(host).__name__}")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            return address.ipv4_mapped
        return address
    if not is_host_name(host):
        raise AllowListError(f"{escaped(host, 80)!r} is not a host name or IP address")
    return host.lower().removesuffix(".")


def load_allow_list(path: str | os.PathLike[str]) -> AllowList:
    """Read and parse the allow-list file at ``path`` (at most :data:`MAX_ALLOW_LIST_BYTES`)."""
    shown = escaped(os.fspath(path), 200)
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_ALLOW_LIST_BYTES + 1)
    except OSError as exc:
        raise AllowListError(f"cannot read the allow-list {shown}: {exc.strerror or type(exc).__name__}") from None
    if len(data) > MAX_ALLOW_LIST_BYTES:
        raise AllowListError(f"the allow-list {shown} is over {MAX_ALLOW_LIST_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise AllowListError(f"the allow-list {shown} is not UTF-8 (byte {exc.start})") from None
    return parse_allow_list(text, source=Path(path).name)


def parse_allow_list(text: str, *, source: str = "allow-list") -> AllowList:
    """Parse the YAML subset of the module docstring; ``source`` names the file in errors."""
    if len(text) > MAX_ALLOW_LIST_BYTES:
        raise AllowListError(f"{source}: over {MAX_ALLOW_LIST_BYTES} characters")
    return _Parser(text, source).parse()


def _check_port(port: object) -> int:
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        raise AllowListError(f"a port must be an integer from 1 to 65535, not {port!r}")
    return port


class _Parser:
    """Line by line: ``allowlist:``, then items ``- {flow map}`` or ``- key: value`` with indented keys."""

    def __init__(self, text: str, source: str) -> None:
        self.source = source
        self.lines = text.removeprefix("\ufeff").split("\n")
        self.entries: list[AllowedTarget] = []

    def error(self, number: int, problem: str) -> AllowListError:
        return AllowListError(f"{self.source} line {number}: {problem}")

    def parse(self) -> AllowList:
        content = self._content_lines()
        if content and content[0][2] == "---" and content[0][1] == 0:
            content = content[1:]
        if not content:
            raise AllowListError(f"{self.source}: no 'allowlist:' key (the file is empty)")
        number, indent, body = content[0]
        if indent != 0 or not body.startswith("allowlist:"):
            raise self.error(number, "expected 'allowlist:' at the start of the line")
        rest = body[len("allowlist:"):].strip()
        if rest == "[]":
            raise self.error(number, "the allow-list is empty: nothing would be allowed")
        if rest:
            raise self.error(number, "'allowlist:' must be followed by the list on the next lines")
        items = content[1:]
        if not items:
            raise self.error(number, "the allow-list is empty: nothing would be allowed")
        item_indent = items[0][1]
        item: dict[str, tuple[int, str, bool]] | None = None
        key_indent = -1
        start = 0
        for number, indent, body in items:
            if indent == item_indent and (body == "-" or body.startswith("- ")):
                self._finish(item, start)
                item, start = {}, number
                after = body[1:]
                inner = after.lstrip(" ")
                if not inner:
                    raise self.error(number, "an empty list item")
                if inner[0] in _INDICATORS - {"{"}:
                    raise self.error(number, f"unsupported YAML: an item starting with {escaped(inner[0], 4)!r} "
                                             "(anchors, aliases, tags and nested lists are not read)")
                if inner.startswith("{"):
                    self._flow_map(number, inner, item)
                    key_indent = -1
                else:
                    key_indent = indent + 1 + len(after) - len(inner)
                    self._block_pair(number, inner, item)
            elif item is not None and indent == key_indent:
                self._block_pair(number, body, item)
            elif indent == 0 and body.startswith("allowlist:"):
                raise self.error(number, "the key allowlist twice")
            elif indent == 0 and ":" in body:
                key = body.partition(":")[0]
                raise self.error(number, f"unknown key {escaped(key, 40)!r}: only 'allowlist' is read")
            else:
                raise self.error(number, "expected a list item '- ...' or a key of the item above, at its "
                                         "indentation")
        self._finish(item, start)
        return AllowList(tuple(self.entries))

    def _content_lines(self) -> list[tuple[int, int, str]]:
        """(line number, indentation, text without comment or trailing spaces) of every line with content."""
        out: list[tuple[int, int, str]] = []
        for number, raw in enumerate(self.lines, 1):
            line = raw.removesuffix("\r")
            if "\t" in line:
                raise self.error(number, "a tab (YAML allows only spaces for indentation; none are read here)")
            if any(not ch.isprintable() for ch in line):
                raise self.error(number, "a control character")
            body = _strip_comment(line).rstrip(" ")
            if body.strip(" "):
                out.append((number, len(body) - len(body.lstrip(" ")), body.lstrip(" ")))
        return out

    def _flow_map(self, number: int, text: str, item: dict[str, tuple[int, str, bool]]) -> None:
        position = 1
        while True:
            position = _skip_spaces(text, position)
            if position < len(text) and text[position] == "}" and not item:
                position += 1
                break
            colon = text.find(":", position)
            if colon < 0:
                raise self.error(number, "a flow map must be {address: HOST, port: PORT} on one line")
            key = self._add(number, item, text[position:colon].strip(" "))
            position, value, quoted = self._scalar(number, text, colon + 1, flow=True)
            item[key] = (number, value, quoted)
            position = _skip_spaces(text, position)
            if position >= len(text):
                raise self.error(number, "a flow map must end with '}' on the same line")
            if text[position] == ",":
                position += 1
                continue
            if text[position] == "}":
                position += 1
                break
            raise self.error(number, f"expected ',' or '}}' in the flow map, not {escaped(text[position], 8)!r}")
        if text[position:].strip(" "):
            raise self.error(number, "text after the flow map")

    def _block_pair(self, number: int, text: str, item: dict[str, tuple[int, str, bool]]) -> None:
        key, sep, _ = text.partition(":")
        if not sep:
            raise self.error(number, "expected 'address: HOST' or 'port: PORT'")
        name = self._add(number, item, key.strip(" "))
        position, value, quoted = self._scalar(number, text, len(key) + 1, flow=False)
        if text[position:].strip(" "):
            raise self.error(number, "text after the value")
        item[name] = (number, value, quoted)

    def _add(self, number: int, item: dict[str, tuple[int, str, bool]], key: str) -> str:
        if key not in _KEYS:
            raise self.error(number, f"unknown key {escaped(key, 40)!r}: an entry has only address and port")
        if key in item:
            raise self.error(number, f"the key {key} twice in one entry")
        return key

    def _scalar(self, number: int, text: str, position: int, *, flow: bool) -> tuple[int, str, bool]:
        """The scalar after ``key:`` at ``position``: (position after it, its value, whether it was quoted)."""
        if position < len(text) and text[position] != " ":
            raise self.error(number, "a ':' must be followed by a space")
        position = _skip_spaces(text, position)
        if position >= len(text):
            raise self.error(number, "a key without a value")
        first = text[position]
        if first in "'\"":
            return self._quoted(number, text, position)
        if first in _INDICATORS and not (first == ":" and position + 1 < len(text) and text[position + 1] != " "):
            raise self.error(number, f"unsupported YAML: a value starting with {escaped(first, 4)!r} (anchors, "
                                     "aliases, tags, nested lists or maps and block scalars are not read)")
        end = len(text)
        if flow:
            ends = [index for index in (text.find(",", position), text.find("}", position)) if index >= 0]
            end = min(ends, default=len(text))
        value = text[position:end].rstrip(" ")
        if ": " in value or value.endswith(":"):
            raise self.error(number, "a nested map (only address and port are read)")
        return end, value, False

    def _quoted(self, number: int, text: str, position: int) -> tuple[int, str, bool]:
        quote = text[position]
        out: list[str] = []
        index = position + 1
        while index < len(text):
            ch = text[index]
            if ch == quote:
                if quote == "'" and text[index + 1:index + 2] == "'":
                    out.append("'")
                    index += 2
                    continue
                return index + 1, "".join(out), True
            if ch == "\\" and quote == '"':
                escape = text[index + 1:index + 2]
                if escape not in ('"', "\\"):
                    raise self.error(number, "only \\\" and \\\\ escapes are read in a double-quoted value")
                out.append(escape)
                index += 2
                continue
            out.append(ch)
            index += 1
        raise self.error(number, "a quoted value must end on the same line")

    def _finish(self, item: dict[str, tuple[int, str, bool]] | None, start: int) -> None:
        if item is None:
            return
        for key in _KEYS:
            if key not in item:
                raise self.error(start, f"the entry has no {key}")
        address_line, address, _ = item["address"]
        port_line, port, quoted = item["port"]
        if quoted or not _PORT.fullmatch(port) or not 1 <= int(port) <= 65535:
            raise self.error(port_line, f"port must be an integer from 1 to 65535, not {escaped(port, 16)!r}")
        try:
            host = normalise_host(address)
        except AllowListError as exc:
            raise self.error(address_line, f"address: {exc}") from None
        if len(self.entries) >= MAX_ALLOW_LIST_ENTRIES:
            raise self.error(start, f"more than {MAX_ALLOW_LIST_ENTRIES} entries")
        self.entries.append(AllowedTarget(host, int(port)))


def _skip_spaces(text: str, position: int) -> int:
    while position < len(text) and text[position] == " ":
        position += 1
    return position


def _strip_comment(line: str) -> str:
    """``line`` without its comment: a ``#`` at the start or after a space, outside quotes."""
    quote = ""
    for index, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (index == 0 or line[index - 1] == " "):
            return line[:index]
    return line
