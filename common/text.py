"""Making untrusted text safe to put in an error message or a log line: escaped and clipped."""

from __future__ import annotations


def clip(text: str, limit: int = 80) -> str:
    """``text`` cut to ``limit`` characters, marked with "..." when cut."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def escaped(text: str, limit: int | None = None) -> str:
    """``text`` with control and other non-printable characters escaped (and clipped if ``limit`` is given).

    A peer's words reach terminals and logs: escaping keeps them from carrying terminal control sequences or
    forging log lines.
    """
    safe = text if text.isprintable() else text.encode("unicode_escape").decode("ascii")
    return safe if limit is None else clip(safe, limit)
