"""Fields for a chunked stream: the chunk size and the gap between chunks, each explained as typed."""

from __future__ import annotations

import math
from collections.abc import Callable

from textual.validation import ValidationResult, Validator
from textual.widgets import Input

from blocktui.core.errors import InvalidInput
from blocktui.core.text import visible
from blocktui.core.units import parse_size

#: Gaps longer than a day are surely a typo.
MAX_GAP = 86400.0


def chunk_of(value: str) -> int:
    """The chunk size in bytes for what the field holds (empty: 0, no chunks).

    Raises:
        InvalidInput: not a size, or zero.
    """
    if not value.strip():
        return 0
    size = parse_size(value)
    if size <= 0:
        raise InvalidInput("a chunk must be larger than 0 (leave empty to stream in one go)")
    return size


def gap_of(value: str) -> float:
    """The pause between chunks in seconds (empty: 0).

    Raises:
        InvalidInput: not a number of seconds from 0 to a day.
    """
    stripped = value.strip().removesuffix("s").strip()
    if not stripped:
        return 0.0
    try:
        seconds = float(stripped)
    except ValueError:
        raise InvalidInput(f"gap {value!r} is not a number of seconds (e.g. 5 or 0.5)") from None
    if not math.isfinite(seconds) or seconds < 0 or seconds > MAX_GAP:
        raise InvalidInput(f"a gap must be from 0 to {MAX_GAP:.0f} seconds, not {value!r}")
    return seconds


class ParsedBy(Validator):
    """Accepts exactly what ``parse`` accepts; its error message is the failure's description."""

    def __init__(self, parse: Callable[[str], object]) -> None:
        super().__init__()
        self._parse = parse

    def validate(self, value: str) -> ValidationResult:
        try:
            self._parse(value)
        except InvalidInput as exc:
            # The message quotes what was typed: escape it, since a paste can hold control characters.
            return self.failure(visible(str(exc)))
        return self.success()


class ChunkInput(Input):
    """A chunk size such as ``1G`` or ``512M``; empty means one run to the end."""

    def __init__(self, value: str = "", *, id: str | None = None) -> None:
        super().__init__(
            value=value,
            placeholder="none (or 64M, 1G)",
            validators=[ParsedBy(chunk_of)],
            validate_on=["changed", "submitted"],
            id=id,
        )


class GapInput(Input):
    """Seconds to wait between chunks; empty means none."""

    def __init__(self, value: str = "", *, id: str | None = None) -> None:
        super().__init__(
            value=value,
            placeholder="0",
            validators=[ParsedBy(gap_of)],
            validate_on=["changed", "submitted"],
            id=id,
        )
