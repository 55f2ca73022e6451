"""Per-host stream scheduling: how many streams may run, and how a bandwidth budget is shared."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from blocktui.core.errors import InvalidInput

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True, slots=True)
class HostPolicy:
    """The limits one host's streams run under.

    Attributes:
        max_active: at most this many streams run at once; None means no limit.
        budget: the sum of the streams' rates in bytes/s; 0 means no budget.
    """

    max_active: int | None = None
    budget: int = 0

    def __post_init__(self) -> None:
        if self.max_active is not None and self.max_active < 1:
            raise InvalidInput(f"--max-active must be 1 or more, not {self.max_active}")
        if self.budget < 0:
            raise InvalidInput(f"a budget cannot be negative ({self.budget})")


def admit(queued: Sequence[K], active: int, max_active: int | None) -> list[K]:
    """The queued streams to start now, in queue order, given ``active`` already running."""
    if max_active is None:
        return list(queued)
    free = max(0, max_active - active)
    return list(queued[:free])


def divide_budget(limits: Mapping[K, int], budget: int) -> dict[K, int]:
    """Share ``budget`` bytes/s among streams with their own ``limits`` (0 = unlimited), water-filling.

    Every stream gets an equal share, except that none gets more than its own limit; what a
    capped stream leaves over is shared among the others. The result never sums above the budget
    and never holds 0 (which libvirt and QEMU read as "unlimited"): with a budget smaller than the
    number of streams, each gets 1 byte/s.

    Without a budget (0), each stream keeps its own limit.
    """
    if budget <= 0:
        return dict(limits)
    # Capped streams first, smallest cap first: each takes min(cap, fair share of what is left).
    order = sorted(limits, key=lambda key: (limits[key] <= 0, limits[key]))
    shares: dict[K, int] = {}
    left = budget
    for position, key in enumerate(order):
        fair = left // (len(order) - position)
        own = limits[key]
        share = max(1, min(own, fair) if own > 0 else fair)
        shares[key] = share
        left = max(0, left - share)
    return {key: shares[key] for key in limits}
