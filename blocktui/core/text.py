"""Make host-supplied strings safe to show: every control or formatting character becomes visible."""

from __future__ import annotations

import unicodedata

# Categories that move the cursor, change colours or reorder text when written to a terminal:
# Cc (C0/C1 controls, ESC, U+009B CSI), Cf (bidi overrides, zero-width joiners), Zl/Zp (separators).
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})


def _escape(char: str) -> str:
    code = ord(char)
    if code == 0x0A:
        return "\\n"
    if code == 0x09:
        return "\\t"
    if code == 0x0D:
        return "\\r"
    if code == 0x1B:
        return "\\e"
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def visible(text: str) -> str:
    """Return ``text`` with control, format and unassigned characters shown as escapes.

    A literal backslash is doubled so an escape shown can never be confused with one typed.
    The result is plain text: callers must still render it without markup.
    """
    if text.isprintable() and "\\" not in text:
        return text
    out: list[str] = []
    for char in text:
        if char == "\\":
            out.append("\\\\")
        elif unicodedata.category(char) in _INVISIBLE_CATEGORIES:
            out.append(_escape(char))
        else:
            out.append(char)
    return "".join(out)


def printable(text: str) -> str:
    """Like ``visible``, but backslashes stay single: for text that may already hold ``visible`` parts.

    Error messages mix names already shown with ``visible`` and raw text from a host; escaping
    them again would double every backslash, while leaving them raw would let a host's control
    characters reach the terminal.
    """
    if text.isprintable():
        return text
    return "".join(
        _escape(char) if unicodedata.category(char) in _INVISIBLE_CATEGORIES else char for char in text
    )


def counted(count: int, singular: str, plural: str | None = None) -> str:
    """``1 job``, ``2 jobs``, ``0 jobs``: a count with its noun in the right number."""
    return f"{count} {singular if count == 1 else plural or singular + 's'}"


def jobs_continue(running: int, hosts: int) -> str:
    """What leaving says about jobs left running: ``1 running job continues on the host``.

    Args:
        running: jobs still running that this process was showing.
        hosts: the hosts those jobs (or, with none, the session) are on.
    """
    where = "the host" if hosts == 1 else "the hosts"
    if running == 0:
        return f"no running jobs seen; any on {where} keep running"
    verb = "continues" if running == 1 else "continue"
    return f"{counted(running, 'running job')} {verb} on {where}"
