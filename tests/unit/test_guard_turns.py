"""The guard's turns under every interleaving: processes that read, decide and write in any order.

Each simulated process owns one job near its end (or one it must stop: a checkpoint or an abort,
which ends the QEMU job too) and does what the planner does, one atomic host
call at a time: read every job of the domain, then set the speed ``decide`` asks for. A scheduler
picks, at random, which process's call lands next, how much time passes, and when a job that was
let go actually ends. No interleaving may let two jobs be ending at once, nor two ends come closer
than the settle time, and every job must end.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field

from blocktui.core.guard import DomainJob, GuardRule, Mark, Verdict, decide, mark_of
from blocktui.core.model import JobState

MIB = 1024**2
RULE = GuardRule()


@dataclass
class Proc:
    disk: str
    speed: int
    stop: bool = False  # ends by an abort or a checkpoint, not by completing
    ended_at: float | None = None
    going: bool = False
    reading: list[DomainJob] | None = None
    seen: set[str] = field(default_factory=set)
    last_end: float = float("-inf")


def _jobs(procs: list[Proc]) -> list[DomainJob]:
    return [DomainJob(p.disk, JobState.ACTIVE, MIB, p.speed) for p in procs if p.ended_at is None]


def _run(seed: int, disks: int) -> list[float]:
    rng = random.Random(seed)
    start_speed = RULE.promise(MIB, RULE.hold_seconds(0), 0, Mark.HOLD)
    procs = [Proc(f"vd{chr(ord('a') + i)}", start_speed, stop=rng.random() < 0.4) for i in range(disks)]
    now = 10.0
    ends: list[float] = []
    for _ in range(5000):
        if all(p.ended_at is not None for p in procs):
            return ends
        now += rng.choice((0.0, 0.05, 0.2, 1.0, 3.0))
        proc = rng.choice([p for p in procs if p.ended_at is None])
        free = mark_of(proc.speed) in (Mark.GO, Mark.PLAIN) and not (proc.stop and not proc.going)
        if free and rng.random() < 0.3:  # a job not held reaches its end some time after it was let go
            live = [p for p in procs if p.ended_at is None and p is not proc]
            assert not any(mark_of(p.speed) in (Mark.GO, Mark.PLAIN) for p in live), (
                f"seed {seed}: two ending"
            )
            proc.ended_at = now
            ends.append(now)
            continue
        if proc.going:
            continue
        if proc.reading is None:  # one host call: read the domain
            proc.reading = _jobs(procs)
            if proc.last_end == float("-inf"):
                proc.last_end = now  # a domain watched only now may have just seen an end
            present = {j.disk for j in proc.reading}
            if proc.seen - present:
                proc.last_end = now
            proc.seen = present
            continue
        own = next(j for j in proc.reading if j.disk == proc.disk)
        others = [j for j in proc.reading if j.disk != proc.disk]
        decision = decide(own, others, rule=RULE, share=0, since_end=now - proc.last_end, wants_end=proc.stop)
        proc.reading = None
        # The next host call: the speed lands (a GO among them lets the job run to its end).
        if decision.verdict is Verdict.GO:
            assert not any(
                mark_of(p.speed) is Mark.GO for p in procs if p is not proc and p.ended_at is None
            ), f"seed {seed}: two let go"
            proc.going = True
        proc.speed = decision.speed
    raise AssertionError(f"seed {seed}: not every job ended")


def test_no_interleaving_lets_two_jobs_end_together() -> None:
    for seed in range(600):
        ends = _run(seed, disks=2 + seed % 3)
        gaps = [later - earlier for earlier, later in itertools.pairwise(ends)]
        assert all(gap >= RULE.settle for gap in gaps), f"seed {seed}: ends {ends}"
