"""Sizes and bandwidths in binary units: parsing what people type, formatting what they read."""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation

import humanize

from blocktui.core.errors import InvalidInput

#: libvirt and QEMU carry speeds and sizes as signed 64-bit integers.
MAX_BYTES = 2**63 - 1

_MULTIPLIERS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "m": 1024**2,
    "g": 1024**3,
    "t": 1024**4,
    "p": 1024**5,
}

_SIZE_RE = re.compile(
    r"""^\s*
    (?P<number>\d+(?:\.\d+)?|\.\d+)
    \s*
    (?P<unit>[kmgtp]?)(?:i?b)?
    \s*$""",
    re.IGNORECASE | re.VERBOSE,
)

SIZE_HELP = "a size such as 4096, 512k, 64M, 64MiB or 1.5G (binary units)"
BANDWIDTH_HELP = "a rate such as 50M, 50MiB/s, 512k or 1.5G (binary units, per second), or 0 / 'unlimited'"


def _parse(text: str, what: str, accepted: str) -> int:
    match = _SIZE_RE.match(text)
    if match is None:
        raise InvalidInput(f"{what} {text!r} is not understood; use {accepted}")
    try:
        number = Decimal(match["number"])
    except InvalidOperation:  # pragma: no cover - the regex admits only decimals
        raise InvalidInput(f"{what} {text!r} is not understood; use {accepted}") from None
    multiplier = _MULTIPLIERS[match["unit"].lower()]
    value = number * multiplier
    if value != value.to_integral_value():
        raise InvalidInput(f"{what} {text!r} is not a whole number of bytes; use {accepted}")
    result = int(value)
    if result > MAX_BYTES:
        raise InvalidInput(f"{what} {text!r} is too large: the most libvirt and QEMU accept is 8 EiB")
    return result


def parse_size(text: str) -> int:
    """Parse a size in bytes: ``4096``, ``512k``, ``64M``, ``64MiB``, ``1.5G``.

    Raises:
        InvalidInput: for negative, malformed, fractional-byte or too-large sizes.
    """
    return _parse(text, "size", SIZE_HELP)


def parse_bandwidth(text: str) -> int:
    """Parse a bandwidth in bytes/s; ``0`` and ``unlimited`` give 0, which means no limit.

    Raises:
        InvalidInput: for negative, malformed, fractional-byte or too-large rates.
    """
    stripped = text.strip()
    if stripped.lower() in {"unlimited", "none", "max"}:
        return 0
    if stripped.lower().endswith(("/s", "ps")):
        stripped = stripped[:-2]
    if not stripped:
        raise InvalidInput(f"bandwidth {text!r} is not understood; use {BANDWIDTH_HELP}")
    return _parse(stripped, "bandwidth", BANDWIDTH_HELP)


def format_size(size: int | float) -> str:
    """A size for people: ``1.5 GiB``, ``512.0 KiB``, ``12 Bytes``."""
    return humanize.naturalsize(size, binary=True, format="%.1f")


def format_bandwidth(rate: int | float) -> str:
    """A limit for people; 0 reads as ``unlimited``."""
    if rate <= 0:
        return "unlimited"
    return f"{format_size(rate)}/s"


def format_rate(rate: float | None) -> str:
    """A measured rate for people; None (not yet measured) reads as an em dash."""
    if rate is None:
        return "—"
    return f"{format_size(rate)}/s"


def format_duration(seconds: float | None) -> str:
    """A duration as ``1h02m``, ``3m05s`` or ``42s``; None reads as an em dash."""
    if seconds is None or seconds < 0 or not math.isfinite(seconds):
        return "—"
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours >= 100:
        return f"{hours}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


#: From this many seconds on, an ETA is shown in whole minutes.
ETA_MINUTES_FROM = 600


def format_eta(seconds: float | None) -> str:
    """An ETA to the precision it has: as ``format_duration``, but in whole minutes (``17m``) from
    10 minutes on, where an estimate good to 5 % is good to 30 s, and a countdown in seconds would
    only redraw every running job's row each second."""
    if seconds is None or not math.isfinite(seconds) or seconds < ETA_MINUTES_FROM:
        return format_duration(seconds)
    minutes = round(seconds / 60)
    return f"{minutes}m" if minutes < 60 else format_duration(minutes * 60)
