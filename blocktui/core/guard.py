"""The safe-completion guard: never let two block jobs of one domain end at the same moment.

Why: on affected QEMU versions, a stream job that ends (completes, or is cancelled) drops its
copy-on-read filter node from the graph but keeps a reference to it until the job is freed. A
``query-named-block-nodes`` sent in that window walks the half-removed filter and QEMU segfaults
(backtrace ``bdrv_refresh_filename <- bdrv_block_device_info <- bdrv_named_nodes_list``).
libvirt sends that command itself while it handles a job's completion, so two jobs of one domain
ending together crash the VM; on this project's lab (QEMU 7.2) that lost the pulled data.

Evidence for the versions (qemu-devel archive):

* Andrey Zhadchenko, "[PATCH 0/2] block: do not try to list nearly-dropped filters",
  2023-09-14: the same backtrace on a finalized-but-not-dismissed job; posted, not merged.
* The bug persisted into QEMU 10.1: gitlab issue qemu-project/qemu#3149, backtrace from
  ``qemu-1:10.1.0+ds-5ubuntu2`` with ``bdrv_refresh_filename`` on block-stream's cor_filter_bs.
* Fix: Wesley Hershberger, "block: Drop detach_subchain for bdrv_replace_node" (Resolves #3149),
  applied by Kevin Wolf 2025-11-04, sent in "[PULL v2 00/28] Block layer patches" 2025-11-11
  ("stream: Fix potential crash during job completion"), merged by Richard Henderson 2025-11-12
  with "Please update ChangeLog/10.2": first release with the fix is QEMU 10.2.0.

Stable backports to 10.0.x/10.1.x were not found, so every QEMU older than 10.2.0 is guarded, and
so is any host whose version cannot be read. ``--no-guard`` (or ``BLOCKTUI_GUARD=off``) turns
it off.

The rule (every process applies it to what it reads from the host, so separate
``blocktui stream --wait`` processes agree without talking to each other):

1. Zone. A job whose remaining bytes are at most ``zone`` is near its end. A guarded job that is
   about to reach the zone is slowed (``approach_cap``) so it cannot cross the whole zone between
   two polls; a job far from the zone runs freely.
2. Marker. A held job runs at exactly ``HOLD_SPEED`` bytes/s: any process sees "held" in the
   job's bandwidth. A paused job is held too, but does not contend (it is not trying to end).
3. Committed. Another job of the domain that is ACTIVE, in its zone and not held is about to
   complete (it is proceeding, or unguarded): everyone else holds until it is gone.
4. Settle. After a job of the domain was last seen ending, nobody ends for ``settle`` seconds.
5. Token. A job that wants to end (in its zone, or stopping at a checkpoint, which also ends the
   QEMU job on libvirt) first holds; after it has been held for ``confirm`` seconds, with nothing
   committed and nothing settling, it may end if its disk name is the smallest among itself and
   every other held (marker) job of the domain. Only held jobs contend, and a job ends only from
   the held state, so two processes never both see themselves first: the one that goes stops
   being held (or vanishes) at once, and every other sees it as committed (or settling).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from blocktui.core.model import JobState

MIB = 1024**2

#: The speed that marks a job as held by a guard (bytes/s). Odd on purpose: nobody types it.
HOLD_SPEED = 1

#: First QEMU release with the fix (see the module docstring).
FIXED_IN = (10, 2, 0)

_VERSION_RE = re.compile(r"(?<![\d.])(\d+)\.(\d+)(?:\.(\d+))?")


def qemu_versions(hypervisor: str) -> list[tuple[int, int, int]]:
    """Every ``major.minor[.micro]`` version in a host's hypervisor description."""
    return [
        (int(major), int(minor), int(micro or 0)) for major, minor, micro in _VERSION_RE.findall(hypervisor)
    ]


def guard_needed(hypervisor: str) -> bool:
    """Whether a host needs the guard: any QEMU it runs is older than ``FIXED_IN``, or none is known."""
    versions = qemu_versions(hypervisor)
    return not versions or any(version < FIXED_IN for version in versions)


class Verdict(StrEnum):
    """What the guard lets one job do now."""

    RUN = "run"  # no restriction
    SLOW = "slow"  # run, but no faster than ``Decision.cap``
    HOLD = "hold"  # set HOLD_SPEED and wait
    GO = "go"  # may end now (complete, or stop at its checkpoint)


@dataclass(frozen=True, slots=True)
class Decision:
    """The guard's answer and why (the reason is shown to people)."""

    verdict: Verdict
    cap: int = 0
    reason: str = ""


@dataclass(frozen=True, slots=True)
class DomainJob:
    """One job of the domain as any process can read it from the host."""

    disk: str
    state: JobState
    remaining: int
    bandwidth: int

    @property
    def held(self) -> bool:
        """Held by a guard (marker speed) or paused."""
        return self.bandwidth == HOLD_SPEED or self.state is JobState.PAUSED

    @property
    def contending(self) -> bool:
        """Waiting (with the marker) for its turn to end."""
        return self.bandwidth == HOLD_SPEED and self.state is JobState.ACTIVE


@dataclass(frozen=True, slots=True)
class GuardRule:
    """The guard's margins.

    Attributes:
        zone: remaining bytes at which a job counts as near its end.
        settle: seconds after a job ended before another may end.
        confirm: seconds a job must have been held before it may end (longer than a set-speed
            round trip, so a job another process just released is seen released).
        poll: the poll interval guarded jobs are followed at.
    """

    zone: int = 16 * MIB
    settle: float = 3.0
    confirm: float = 0.6
    poll: float = 0.2

    @property
    def approach_cap(self) -> int:
        """Speed near the zone: at most a quarter of the zone per poll."""
        return max(HOLD_SPEED + 1, int(self.zone / (4 * self.poll)))

    def in_zone(self, job: DomainJob) -> bool:
        """Whether ``job`` is near its end."""
        return job.remaining <= self.zone

    def approaching(self, job: DomainJob) -> bool:
        """Whether ``job`` could reach the zone soon (within one zone of it)."""
        return job.remaining <= 2 * self.zone


def decide(
    own: DomainJob,
    others: Sequence[DomainJob],
    *,
    rule: GuardRule,
    wants_end: bool = False,
    going: bool = False,
    held_for: float | None = None,
    since_end: float | None = None,
) -> Decision:
    """Apply the rule (module docstring) to ``own``, given the domain's ``others`` jobs.

    Args:
        wants_end: ``own`` is stopping at a checkpoint now (on libvirt, that ends the QEMU job).
        going: this process already let ``own`` go to its end; it keeps going.
        held_for: seconds this process has seen ``own`` held; None when it is not held.
        since_end: seconds since this process last saw a job of the domain end; None if never.
    """
    if going:
        return Decision(Verdict.GO)
    live = [job for job in others if not job.state.is_final]
    settling = since_end is not None and since_end < rule.settle
    if not live and not settling:
        return Decision(Verdict.GO if wants_end or rule.in_zone(own) else Verdict.RUN)
    if not wants_end and not rule.in_zone(own):
        if rule.approaching(own):
            return Decision(Verdict.SLOW, cap=rule.approach_cap, reason="near its end; another job may be")
        return Decision(Verdict.RUN)
    if settling:
        return Decision(Verdict.HOLD, reason="another job of the domain just ended; letting it settle")
    committed = [job for job in live if job.state is JobState.ACTIVE and not job.held and rule.in_zone(job)]
    if committed:
        return Decision(Verdict.HOLD, reason=f"waiting for {committed[0].disk} to complete")
    if not own.held or held_for is None or held_for < rule.confirm:
        return Decision(Verdict.HOLD, reason="holding before its end")
    rivals = sorted(job.disk for job in live if job.contending)
    if rivals and rivals[0] < own.disk:
        return Decision(Verdict.HOLD, reason=f"{rivals[0]} ends first")
    return Decision(Verdict.GO)
