"""Windows: one part of a disk (offset, length) pulled from its backing chain, and the pace of reading it.

A window is copied by reading it through a copy-on-read filter (QMP hosts) or, for a prefix, by
a pull stopped at the window's end (any host). Both work in whole clusters: a window is widened
outward to ``GRAIN`` so that no cluster is half copied.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from blocktui.core.allocation import Where, where_of
from blocktui.core.errors import InvalidInput
from blocktui.core.units import format_size

#: Windows are whole multiples of this (qcow2's default cluster size).
GRAIN = 64 * 1024

#: The most one read asks for (QEMU's NBD server accepts up to 32 MiB per request).
MAX_PIECE = 4 * 1024**2

#: Pieces are never smaller than one cluster.
MIN_PIECE = GRAIN


@dataclass(frozen=True, slots=True)
class Window:
    """The bytes ``[offset, offset + length)`` of a disk."""

    offset: int
    length: int

    @property
    def end(self) -> int:
        """The first byte past the window."""
        return self.offset + self.length

    @property
    def is_prefix(self) -> bool:
        """The window starts at the disk's first byte (a pull stopped at its end can copy it)."""
        return self.offset == 0

    def describe(self) -> str:
        """``16 MiB + 8 MiB`` for messages."""
        return f"{format_size(self.offset)} + {format_size(self.length)}"


def window_of(offset: int, length: int) -> tuple[Window, str]:
    """The window to copy for ``offset``/``length``, widened outward to whole ``GRAIN`` units.

    Returns:
        The window and, when it had to be widened, one line saying so (else "").

    Raises:
        InvalidInput: a negative offset or a length that is not positive.
    """
    if offset < 0:
        raise InvalidInput(f"a window offset cannot be negative ({offset})")
    if length <= 0:
        raise InvalidInput(f"a window length must be positive, not {length}")
    start = offset - offset % GRAIN
    end = -(-(offset + length) // GRAIN) * GRAIN
    window = Window(start, end - start)
    if (start, end) == (offset, offset + length):
        return window, ""
    return window, (
        f"window widened to whole 64 KiB clusters: offset {format_size(start)} ({start} B), "
        f"length {format_size(window.length)} ({window.length} B)"
    )


def fit_to_disk(window: Window, size: int) -> Window:
    """``window`` cut at the disk's end.

    Raises:
        InvalidInput: the window starts at or past the end of a ``size``-byte disk.
    """
    if window.offset >= size:
        raise InvalidInput(
            f"the window starts at {format_size(window.offset)}, at or past the end of the disk "
            f"({format_size(size)}): give an offset below {size}"
        )
    return Window(window.offset, min(window.length, size - window.offset))


def local_extents(extents: Iterable[Mapping[str, object]]) -> list[tuple[int, int]]:
    """The ``(start, length)`` ranges held by the top image itself, from ``qemu-img map --output=json``."""
    local: list[tuple[int, int]] = []
    for extent in extents:
        start, length = extent.get("start"), extent.get("length")
        if isinstance(start, int) and isinstance(length, int) and where_of(extent) is Where.LOCAL:
            local.append((start, length))
    return local


def ranges_to_read(window: Window, local: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """The parts of ``window`` not covered by ``local`` ranges, as ``(start, length)``, ascending."""
    covered = sorted((max(s, window.offset), min(s + n, window.end)) for s, n in local)
    todo: list[tuple[int, int]] = []
    at = window.offset
    for start, end in covered:
        if end <= at:
            continue
        if start > at:
            todo.append((at, start - at))
        at = max(at, end)
        if at >= window.end:
            break
    if at < window.end:
        todo.append((at, window.end - at))
    return todo


def piece_size(speed: int) -> int:
    """How much one read asks for at ``speed`` bytes/s (0 = unlimited): about an eighth of a
    second's worth, in whole clusters, so a limit is kept smoothly and a change takes hold soon."""
    if speed <= 0:
        return MAX_PIECE
    wanted = speed // 8
    return max(MIN_PIECE, min(MAX_PIECE, wanted - wanted % GRAIN))


class Pacer:
    """Holds a reader to a speed: how long to wait before the next read.

    The pace is counted from the last change of speed (or resume), so a new limit takes hold at
    once instead of paying back or spending what an earlier one left over.
    """

    def __init__(self, speed: int, now: float) -> None:
        self.speed = speed
        self._since = now
        self._done = 0

    def restart(self, speed: int, now: float) -> None:
        """Count anew from ``now`` at ``speed`` (a new limit, or a resume after a pause)."""
        self.speed = speed
        self._since = now
        self._done = 0

    def read(self, count: int) -> None:
        """``count`` bytes were just read."""
        self._done += count

    def delay(self, now: float) -> float:
        """Seconds to wait before the next read (0: read now)."""
        if self.speed <= 0:
            return 0.0
        due = self._since + self._done / self.speed
        return max(0.0, due - now)
