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

The guard's only shared state is what every process reads from the host: each job's remaining
bytes and its speed. blocktui writes a *mark* into the speed it sets (the speed's low bits, see
``Mark``), so separate ``blocktui stream --wait`` processes agree without talking to each other,
and every speed it sets is also a *promise*: at that speed the job cannot end sooner than
``eta`` seconds from now. The rule (``decide``), applied only while a domain has more than one
job (or one just ended):

1. Promises. A job that is not ending keeps its promise at least ``approach_for`` seconds
   (``APPROACH``), or ``hold_for`` seconds once another job of the domain is ending (``HOLD``).
   The job is looked at many times within a promise, so a late poll or a slow speed change only
   makes it slower; none lets it reach its end unseen.
2. Turns. A job that wants to end (near its end, or a checkpoint, pause or abort on libvirt,
   which end the QEMU job) raises its flag (``WANT``) and, on a read taken after the flag landed,
   ends (``GO``) only if no other job has its flag up, nothing else of the domain can end before
   it has finished and settled, and nothing ended in the last ``settle`` seconds. A job that sees
   a flag of a smaller disk name up lowers its own (``HOLD``). This is Burns' mutual exclusion
   over single-writer registers: it depends on the order of writes and reads, never on timing.
3. Self-expiry. Held speeds are never a standstill: a held job ends by itself within
   ``hold_for`` seconds (plus one chunk at ``floor``) when its process is gone, and the holds of
   a domain's disks expire at different times (``slot``), so no job is stranded and abandoned
   holds do not end together.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum, StrEnum

from blocktui.core.model import JobState

KIB = 1024
MIB = 1024**2

#: Speeds blocktui sets on a guarded job are multiples of this plus a ``Mark`` (bytes/s).
QUANTUM = KIB

#: The speed of a ``GO`` job whose own limit is "unlimited" (0 cannot carry a mark).
UNLIMITED = 1 << 40

#: The pace assumed of a job with no limit when telling how long its end takes (bytes/s).
ASSUMED_PACE = 64 * MIB

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


class Mark(IntEnum):
    """What a job's speed says about it, in the speed's remainder modulo ``QUANTUM``.

    Odd values on purpose: speeds people type (``32M``, ``500K``) and budget shares blocktui sets
    are whole multiples of ``QUANTUM`` and read as ``PLAIN``.
    """

    PLAIN = 0  # nobody follows this job for the guard (or it runs alone)
    HOLD = 1  # held back, flag down
    WANT = 3  # held back, flag up: asks for its turn to end
    GO = 5  # flag up: ending now
    APPROACH = 7  # followed by a guard, kept at least ``approach_for`` seconds from its end

    @property
    def flag(self) -> bool:
        """Whether the job takes part in the turns (its flag is up)."""
        return self in (Mark.WANT, Mark.GO)


def mark_of(bandwidth: int) -> Mark:
    """The mark a speed carries (``PLAIN`` for unlimited or an unknown remainder)."""
    try:
        return Mark(bandwidth % QUANTUM) if bandwidth > 0 else Mark.PLAIN
    except ValueError:
        return Mark.PLAIN


def marked(speed: int, mark: Mark) -> int:
    """``speed`` (bytes/s, 0 = unlimited) carrying ``mark``; never 0, and from two quanta up never
    faster than asked (a budget's shares still sum within it)."""
    if speed <= 0:
        return 0 if mark is Mark.PLAIN else UNLIMITED + mark
    whole = max(QUANTUM, speed - speed % QUANTUM)
    return whole if mark is Mark.PLAIN else max(QUANTUM, whole - QUANTUM) + mark


@dataclass(frozen=True, slots=True)
class DomainJob:
    """One job of the domain as any process can read it from the host.

    Attributes:
        rate: measured bytes/s, when known: the pace of a job with no limit (speed 0).
    """

    disk: str
    state: JobState
    remaining: int
    bandwidth: int
    rate: float | None = None

    @property
    def mark(self) -> Mark:
        """The mark in its speed."""
        return mark_of(self.bandwidth)

    @property
    def flagged(self) -> bool:
        """Asking for, or having, its turn to end."""
        return self.mark.flag and self.state is JobState.ACTIVE

    def eta(self) -> float:
        """The soonest it can end at its current speed, in seconds (0: it may end now)."""
        if self.state is not JobState.ACTIVE:
            return float("inf")
        speed = float(self.bandwidth - self.mark) if self.bandwidth > 0 else (self.rate or 0.0)
        return self.remaining / speed if speed > 0 else 0.0


@dataclass(frozen=True, slots=True)
class GuardRule:
    """The guard's margins.

    Attributes:
        zone: remaining bytes at which a job wants to end (and stops approaching).
        settle: seconds after a job ended before another may end.
        approach_for: the promise of a job that is not ending (slot 0; later slots add
            ``approach_step``), far longer than a poll.
        hold_for: the promise of a held job (slot 0; later slots add ``hold_step``): also how
            long a held job waits for a process that died before it ends by itself.
        floor: the slowest held speed: with nothing left but one chunk it still ends.
        trust: a promise shorter than this is not being kept (its process is gone or stuck):
            the job counts as possibly ending now.
        plain_horizon: a job nobody guards counts as ending when its eta is below this.
        poll: the poll interval guarded jobs are followed at.
    """

    zone: int = 8 * MIB
    settle: float = 3.0
    approach_for: float = 4.0
    approach_step: float = 2.0
    hold_for: float = 60.0
    hold_step: float = 30.0
    floor: int = 4 * KIB
    trust: float = 2.0
    plain_horizon: float = 30.0
    poll: float = 0.2

    def in_zone(self, job: DomainJob) -> bool:
        """Whether ``job`` is near its end."""
        return job.remaining <= self.zone

    def approach_seconds(self, slot: int) -> float:
        """The promise of a job that is not ending, for a disk in ``slot``."""
        return self.approach_for + self.approach_step * min(slot, 5)

    def hold_seconds(self, slot: int) -> float:
        """The promise of a held job, for a disk in ``slot``: at most about four minutes."""
        return self.hold_for + self.hold_step * min(slot, 5)

    def promise(self, remaining: int, seconds: float, share: int, mark: Mark) -> int:
        """The speed that keeps ``remaining`` bytes at least ``seconds`` away, never above ``share``."""
        speed = max(self.floor, int(remaining / seconds))
        return marked(min(speed, share) if share > 0 else speed, mark)

    def ending(self, job: DomainJob) -> bool:
        """Whether ``job`` may end soon, whoever drives it: the others wait for it."""
        if job.state is not JobState.ACTIVE:
            return False
        mark = job.mark
        if mark is Mark.GO:
            return True
        limit = {Mark.PLAIN: self.plain_horizon}.get(mark, self.trust)
        return job.eta() < limit


class Verdict(StrEnum):
    """What the guard lets one job do now."""

    RUN = "run"  # run at ``Decision.speed`` (its share, or kept from its end)
    HOLD = "hold"  # held back, flag down
    WANT = "want"  # held back, flag up: decide again on a read taken after this speed landed
    GO = "go"  # may end now (complete at ``speed``, or stop at its checkpoint / abort)


@dataclass(frozen=True, slots=True)
class Decision:
    """The guard's answer: the verdict, the speed to set, and why (shown to people)."""

    verdict: Verdict
    speed: int
    reason: str = ""


def decide(
    own: DomainJob,
    others: Sequence[DomainJob],
    *,
    rule: GuardRule,
    share: int,
    slot: int = 0,
    wants_end: bool = False,
    going: bool = False,
    since_end: float | None = None,
) -> Decision:
    """Apply the rule (module docstring) to ``own``, given the domain's ``others`` jobs.

    ``own`` and ``others`` must come from one read of the host taken after the last speed this
    process set on ``own``: the turns rely on it.

    Args:
        share: the speed ``own`` runs at when nothing holds it (bytes/s, 0 = unlimited).
        slot: the disk's place among the domain's disks (sorted names): staggers the promises.
        wants_end: ``own`` must stop now (a checkpoint, pause or abort, which end the QEMU job).
        going: this process already let ``own`` go to its end; it keeps going.
        since_end: seconds since this process last saw a job of the domain end; None if never.
    """
    go = Decision(Verdict.GO, marked(share, Mark.GO))
    if going:
        return go
    live = [job for job in others if not job.state.is_final]
    settling = since_end is not None and since_end < rule.settle
    want = rule.promise(own.remaining, rule.hold_seconds(slot), share, Mark.WANT)
    if not live and (not settling or not (wants_end or rule.in_zone(own))):
        if wants_end and not own.mark.flag:
            # Even alone: a job another process starts now sees the flag and waits.
            return Decision(Verdict.WANT, want, "asking for its turn to end")
        return go if wants_end else Decision(Verdict.RUN, marked(share, Mark.PLAIN))
    ending = [job for job in live if rule.ending(job)]
    flagged = [job for job in live if job.flagged]
    hold = rule.promise(own.remaining, rule.hold_seconds(slot), share, Mark.HOLD)
    if not wants_end and not rule.in_zone(own):
        if ending or flagged:
            name = (ending or flagged)[0].disk
            return Decision(Verdict.HOLD, hold, f"holding while {name} ends")
        speed = rule.promise(own.remaining, rule.approach_seconds(slot), share, Mark.APPROACH)
        return Decision(Verdict.RUN, speed, "kept from its end: another job of the domain runs")
    first = sorted(job.disk for job in flagged)
    if first and first[0] < own.disk:
        return Decision(Verdict.HOLD, hold, f"{first[0]} ends first")
    if not own.mark.flag:
        return Decision(Verdict.WANT, want, "asking for its turn to end")
    if flagged:
        return Decision(Verdict.WANT, want, f"waiting for {flagged[0].disk} to give way")
    if ending:
        return Decision(Verdict.WANT, want, f"waiting for {ending[0].disk} to end")
    if settling:
        return Decision(Verdict.WANT, want, "another job of the domain just ended; letting it settle")
    # How long its end takes once it goes (a stop is at once); an unlimited job is taken to do at
    # least ``ASSUMED_PACE``, its held rate says nothing of its free one.
    finish = 0.0 if wants_end else own.remaining / (share if share > 0 else ASSUMED_PACE)
    soonest = min(live, key=DomainJob.eta)
    if soonest.eta() < finish + 2 * rule.settle:
        return Decision(Verdict.WANT, want, f"{soonest.disk} could end first")
    return go
