"""Before a stream: how much it will copy, how long that takes at its limit, and whether it fits.

A pull copies into the overlay every range whose data lives in a layer it pulls (above the base
it stops at); what the overlay already holds, or the base and below keep, is not copied. The
allocation map (``qemu-img map``) tells, range by range, the topmost layer holding data.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from blocktui.core.allocation import present
from blocktui.core.units import format_duration, format_size

#: Room the overlay needs beyond the data itself (qcow2 tables and refcounts, about 0.2 % of
#: the data at 64 KiB clusters), and a floor for small copies.
METADATA_SHARE = 0.01
METADATA_FLOOR = 4 * 1024**2


def bytes_to_copy(extents: Iterable[Mapping[str, Any]], pulled: range) -> int:
    """Bytes of ``qemu-img map --output=json`` extents whose data lies in a ``pulled`` layer.

    Args:
        pulled: the depths the stream pulls (1 is the overlay's backing file).
    """
    total = 0
    for extent in extents:
        if present(extent) and extent.get("depth", 0) in pulled:
            total += int(extent["length"])
    return total


def disk_length(extents: Iterable[Mapping[str, Any]]) -> int:
    """The disk's virtual size as its allocation map covers it: what a stream's progress counts."""
    return max((int(e["start"]) + int(e["length"]) for e in extents), default=0)


def pulled_depths(chain: Iterable[str], base: str | None) -> range:
    """The depths a stream pulls: every backing layer, or those above ``base`` (a path in ``chain``)."""
    layers = list(chain)
    stop = len(layers) + 1 if base is None else layers.index(base) + 1
    return range(1, stop)


def room_needed(copy: int) -> int:
    """Free space a copy of ``copy`` bytes needs where the overlay lives."""
    return copy + max(METADATA_FLOOR, int(copy * METADATA_SHARE))


@dataclass(frozen=True, slots=True)
class Preflight:
    """What a stream is expected to do; None where it cannot be told (``reason`` says why).

    Attributes:
        limit: the stream's limit in bytes/s (0: unlimited).
        seconds_at_limit: the copy's duration at ``limit`` (None when unlimited or unknown).
        seconds_at_share: at the stream's share of the host budget, when a budget is set.
        fits: whether the copy fits in ``free_bytes`` with room for the overlay's metadata.
        stream_total: what the stream's progress will count to (the whole disk: ranges the
            overlay already holds are counted as done, not copied).
    """

    domain: str
    disk: str
    bytes_to_copy: int | None
    free_bytes: int | None
    fits: bool | None
    limit: int
    seconds_at_limit: float | None
    seconds_at_share: float | None
    reason: str
    stream_total: int | None = None

    @classmethod
    def judge(
        cls,
        domain: str,
        disk: str,
        *,
        copy: int | None,
        free: int | None,
        limit: int,
        share: int = 0,
        unknown: str = "",
        total: int | None = None,
    ) -> Preflight:
        """Weigh a copy against the free space.

        Args:
            share: the stream's share of the host budget (0: no budget).
            unknown: why ``copy`` or ``free`` could not be read, when one is None.
        """
        fits = None if copy is None or free is None else room_needed(copy) <= free
        if fits is False:
            assert copy is not None and free is not None
            reason = (
                f"{format_size(copy)} to copy needs {format_size(room_needed(copy))} free where the overlay "
                f"is, and only {format_size(free)} is: free space there, or stream with --force"
            )
        else:
            reason = unknown
        return cls(
            domain=domain,
            disk=disk,
            bytes_to_copy=copy,
            free_bytes=free,
            fits=fits,
            limit=limit,
            seconds_at_limit=copy / limit if copy is not None and limit > 0 else None,
            seconds_at_share=copy / share if copy is not None and share > 0 else None,
            reason=reason,
            stream_total=total,
        )

    def as_json(self) -> dict[str, Any]:
        """The record ``stream --dry-run --json`` prints."""
        return asdict(self)

    def summary(self) -> str:
        """One line: the copy, its time at the limit, the free space."""
        copy = "unknown" if self.bytes_to_copy is None else format_size(self.bytes_to_copy)
        parts = [f"copies {copy}"]
        if self.seconds_at_limit is not None:
            parts.append(f"about {format_duration(self.seconds_at_limit)} at the limit")
        if self.seconds_at_share is not None:
            parts.append(f"{format_duration(self.seconds_at_share)} at its share of the host budget")
        free = "unknown" if self.free_bytes is None else format_size(self.free_bytes)
        parts.append(f"{free} free where the overlay is")
        return ", ".join(parts)
