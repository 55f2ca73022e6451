"""Where a disk's data lives: ranges held in the overlay, still in the backing chain, or nowhere.

The allocation map (``qemu-img map --output=json``) gives, range by range, the topmost layer
that holds data (``depth`` 0 is the overlay itself) and whether any layer holds it (``present``).
A range no layer holds reads as zeros and needs no pulling: it counts for neither side of the
percent local.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Where(StrEnum):
    """Where one range of a disk's data lives."""

    LOCAL = "local"  # allocated in the overlay (the top image)
    BACKING = "backing"  # allocated in a layer below: a stream still has to pull it
    UNALLOCATED = "unallocated"  # in no layer: reads as zeros wherever it is


#: One character per state for the strip, and the same in ASCII for a terminal without them.
CELLS: Mapping[Where, str] = {Where.LOCAL: "█", Where.BACKING: "▒", Where.UNALLOCATED: "·"}
ASCII_CELLS: Mapping[Where, str] = {Where.LOCAL: "#", Where.BACKING: "+", Where.UNALLOCATED: "."}

#: When a cell of the strip covers as many bytes of two states, the first of them is drawn:
#: data still to pull is never hidden behind local data.
_TIE_ORDER = (Where.BACKING, Where.LOCAL, Where.UNALLOCATED)


def present(extent: Mapping[str, Any]) -> bool:
    """Whether some layer of the chain holds a ``qemu-img map`` extent (data or zeros written).

    qemu-img before 6.0 writes no ``present``: a range any layer holds then says data or zero.
    """
    held = bool(extent.get("data") or extent.get("zero"))
    return bool(extent.get("present", held)) and held


def where_of(extent: Mapping[str, Any]) -> Where:
    """The state of one ``qemu-img map --output=json`` extent."""
    if not present(extent):
        return Where.UNALLOCATED
    return Where.LOCAL if int(extent.get("depth", 0)) == 0 else Where.BACKING


@dataclass(frozen=True, slots=True)
class Extent:
    """``length`` bytes from ``start`` whose data lives in one place."""

    start: int
    length: int
    where: Where

    @property
    def end(self) -> int:
        """The first byte after the range."""
        return self.start + self.length


def merge(extents: Iterable[Extent]) -> tuple[Extent, ...]:
    """Sorted ranges, neighbours of one state joined, gaps filled as unallocated from 0 on.

    A map that skips a range (or starts late) says nothing holds it: the ranges returned
    always cover the disk from its first byte without a hole. Where input ranges overlap, the
    earlier one keeps the bytes.
    """
    merged: list[Extent] = []

    def push(start: int, end: int, where: Where) -> None:
        if merged and merged[-1].where is where:
            merged[-1] = Extent(merged[-1].start, end - merged[-1].start, where)
        else:
            merged.append(Extent(start, end - start, where))

    for extent in sorted(extents, key=lambda e: e.start):
        at = merged[-1].end if merged else 0
        if extent.start > at:
            push(at, extent.start, Where.UNALLOCATED)
        if extent.end > max(at, extent.start):
            push(max(at, extent.start), extent.end, extent.where)
    return tuple(merged)


@dataclass(frozen=True, slots=True)
class DiskMap:
    """A disk's whole allocation map: ranges from byte 0 to its size, neighbours of one state joined."""

    ranges: tuple[Extent, ...]

    @classmethod
    def of(cls, extents: Iterable[Extent]) -> DiskMap:
        """The map of these ranges, in any order (see ``merge``)."""
        return cls(merge(extents))

    @classmethod
    def from_qemu_img(cls, extents: Iterable[Mapping[str, Any]]) -> DiskMap:
        """The map ``qemu-img map --output=json`` describes.

        Raises:
            ValueError: an extent lacks its start or length.
        """
        try:
            return cls.of(Extent(int(e["start"]), int(e["length"]), where_of(e)) for e in extents)
        except (KeyError, TypeError) as exc:
            raise ValueError(f"an allocation map extent lacks its start or length ({exc})") from exc

    @property
    def size(self) -> int:
        """The disk's virtual size: every range's length, added up."""
        return self.ranges[-1].end if self.ranges else 0

    def totals(self) -> dict[Where, int]:
        """Bytes in each state; they add up to ``size``."""
        totals = dict.fromkeys(Where, 0)
        for extent in self.ranges:
            totals[extent.where] += extent.length
        return totals

    @property
    def percent_local(self) -> float:
        """Of the data the disk holds, the share in the overlay (100 when nothing is left below)."""
        totals = self.totals()
        data = totals[Where.LOCAL] + totals[Where.BACKING]
        return 100.0 if data == 0 else 100.0 * totals[Where.LOCAL] / data

    def percent_text(self) -> str:
        """``37.5% local``, rounded down: 100% only once nothing is left in the backing chain."""
        return f"{math.floor(self.percent_local * 10) / 10:g}% local"

    def strip(self, width: int, cells: Mapping[Where, str] = CELLS) -> str:
        """``width`` characters, each the state holding most bytes of its slice of the disk.

        Args:
            cells: the character drawn for each state.
        """
        if width <= 0:
            return ""
        size = self.size
        if size == 0:
            return cells[Where.UNALLOCATED] * width
        out: list[str] = []
        index = 0
        for cell in range(width):
            low, high = size * cell // width, size * (cell + 1) // width
            counts = dict.fromkeys(Where, 0)
            while index < len(self.ranges) and self.ranges[index].end <= low:
                index += 1
            scan = index
            while scan < len(self.ranges) and self.ranges[scan].start < max(high, low + 1):
                extent = self.ranges[scan]
                counts[extent.where] += min(extent.end, max(high, low + 1)) - max(extent.start, low)
                scan += 1
            out.append(cells[max(_TIE_ORDER, key=lambda w: (counts[w], -_TIE_ORDER.index(w)))])
        return "".join(out)

    def as_json(self) -> dict[str, Any]:
        """What ``blocktui map --json`` prints, besides naming the disk."""
        return {
            "size": self.size,
            "percent_local": round(self.percent_local, 3),
            "totals": {where.value: count for where, count in self.totals().items()},
            "ranges": [{"start": e.start, "length": e.length, "state": e.where.value} for e in self.ranges],
        }
