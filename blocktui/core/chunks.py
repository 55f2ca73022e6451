"""Chunk plans: a stream cut into fixed-size pieces that stop at boundaries (checkpoints).

A block pull copies a disk sequentially from offset 0, and its progress counter (``cur``) moves
with that offset, so "stop at a boundary" means "stop when ``cur`` reaches it". Only the last
chunk is allowed to finish the job (and so drop the backing file).
"""

from __future__ import annotations

from dataclasses import dataclass

from blocktui.core.errors import InvalidInput


@dataclass(frozen=True, slots=True)
class ChunkPlan:
    """A disk of ``size`` bytes streamed in chunks of ``chunk`` bytes (the last one may be short).

    Attributes:
        size: the job's total (its ``end``), normally the disk's virtual size.
        chunk: the chunk length in bytes; a chunk at least as large as the disk means one chunk.
    """

    size: int
    chunk: int

    def __post_init__(self) -> None:
        if self.size <= 0:
            raise InvalidInput(f"a chunk plan needs a positive disk size, not {self.size}")
        if self.chunk <= 0:
            raise InvalidInput(f"a chunk size must be positive, not {self.chunk}")

    @property
    def count(self) -> int:
        """Number of chunks (at least 1)."""
        return -(-self.size // self.chunk)

    @property
    def boundaries(self) -> tuple[int, ...]:
        """The offsets where the stream stops before the last chunk, ascending (``count - 1`` of them)."""
        return tuple(self.chunk * index for index in range(1, self.count))

    def index_of(self, cur: int) -> int:
        """The 0-based chunk a progress offset ``cur`` lies in; an offset on a boundary starts the next."""
        if cur <= 0:
            return 0
        return min(cur // self.chunk, self.count - 1)

    def stop_at(self, cur: int) -> int | None:
        """The boundary the stream must stop at next, from offset ``cur``; None in the last chunk."""
        index = self.index_of(cur)
        if index >= self.count - 1:
            return None
        return self.chunk * (index + 1)

    def label(self, cur: int) -> tuple[int, int]:
        """``(k, n)``: the stream works on chunk k of n (1-based) at offset ``cur``."""
        return self.index_of(cur) + 1, self.count


def approach_speed(distance: int, limit: int, *, lead: float = 1.0, floor: int = 4 * 1024**2) -> int:
    """The speed to use ``distance`` bytes before a boundary so the stream stops close to it.

    The speed tapers with the distance (it would reach the boundary in ``lead`` seconds) down to
    ``floor``, so the last progress steps before the boundary are slow enough for a poll to catch
    them. Never above ``limit`` (0 = unlimited).

    Returns:
        bytes/s, always positive (a positive speed is a real limit, never "unlimited").
    """
    tapered = max(floor, int(max(0, distance) / lead))
    if limit > 0:
        return min(limit, tapered)
    return tapered
