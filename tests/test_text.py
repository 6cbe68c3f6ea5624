"""common/text.py is the one place untrusted text is clipped and escaped for messages; its callers use it."""

from __future__ import annotations

from email.message import Message

from nitrokit.cms._parse import _summary
from nitrokit.kms import KmsSimConfig
from nitrokit.kms._service import KmsService
from nitrokit.text import clip, escaped
from nitrokit.wire.messages import MAX_ERROR_MESSAGE_LENGTH, ErrorInfo, Response, decode_response, encode_response


def test_clip_and_escape() -> None:
    assert clip("abc", 3) == "abc" and clip("abcd", 3) == "..." and clip("x" * 100) == "x" * 77 + "..."
    assert escaped("a\x1b[31mb\n") == "a\\x1b[31mb\\n"
    assert escaped("\x00" * 50, 10) == "\\x00\\x0..."


def test_exception_summaries_are_escaped_and_clipped() -> None:
    # cms: a library's exception text was clipped by hand before, control characters included.
    summary = _summary(ValueError("bad \x1b[2J tag " + "y" * 500))
    assert "\x1b" not in summary and len(summary) == 160 and summary.endswith("...")


def test_wire_error_messages_are_clipped_to_the_limit() -> None:
    body = encode_response(Response(id=None, error=ErrorInfo("InternalError", "z" * 5000)))
    message = decode_response(body).error.message  # type: ignore[union-attr]
    assert len(message) == MAX_ERROR_MESSAGE_LENGTH and message.endswith("...")


def test_the_simulated_kms_escapes_what_it_echoes() -> None:
    service = KmsService(KmsSimConfig())
    headers = Message()
    headers["Content-Type"] = "application/x-amz-json-1.1"
    answer = service.handle(method="GET", path="/\x1b[31m" + "p" * 200, headers=headers, body=b"")
    assert b"\\u001b" not in answer.body and b"\\\\x1b" in answer.body and len(answer.body) < 400
