"""The safe-completion guard: version check and the hold/go rule."""

from __future__ import annotations

import itertools

from blocktui.core.guard import HOLD_SPEED, DomainJob, GuardRule, Verdict, decide, guard_needed
from blocktui.core.model import JobState

MIB = 1024**2
RULE = GuardRule(zone=16 * MIB, settle=3.0, confirm=0.5, poll=0.2)


def job(disk: str, remaining: int, bandwidth: int = 0, state: JobState = JobState.ACTIVE) -> DomainJob:
    return DomainJob(disk=disk, state=state, remaining=remaining, bandwidth=bandwidth)


def test_versions_before_the_fix_are_guarded() -> None:
    assert guard_needed("QEMU 7.2.0")
    assert guard_needed("QEMU 10.1.2")
    assert guard_needed("7.2.0, 10.2.0")
    assert not guard_needed("QEMU 10.2.0")
    assert not guard_needed("QEMU 11.0")


def test_unknown_version_is_guarded() -> None:
    assert guard_needed("QEMU (QMP)")
    assert guard_needed("")


def test_alone_in_the_domain_runs_and_goes() -> None:
    assert decide(job("vda", 100 * MIB), [], rule=RULE).verdict is Verdict.RUN
    assert decide(job("vda", MIB), [], rule=RULE).verdict is Verdict.GO


def test_far_from_the_end_runs_near_it_slows() -> None:
    other = [job("vdb", 500 * MIB)]
    assert decide(job("vda", 100 * MIB), other, rule=RULE).verdict is Verdict.RUN
    slow = decide(job("vda", 20 * MIB), other, rule=RULE)
    assert slow.verdict is Verdict.SLOW
    assert 0 < slow.cap <= RULE.zone / RULE.poll


def test_in_zone_holds_first_then_goes() -> None:
    other = [job("vdb", 500 * MIB)]
    assert decide(job("vda", 8 * MIB), other, rule=RULE).verdict is Verdict.HOLD
    held = job("vda", 8 * MIB, HOLD_SPEED)
    assert decide(held, other, rule=RULE, held_for=0.1).verdict is Verdict.HOLD
    assert decide(held, other, rule=RULE, held_for=1.0).verdict is Verdict.GO


def test_committed_other_makes_everyone_hold() -> None:
    held = job("vda", 8 * MIB, HOLD_SPEED)
    other = [job("vdb", 4 * MIB, 10 * MIB)]
    decision = decide(held, other, rule=RULE, held_for=5.0)
    assert decision.verdict is Verdict.HOLD
    assert "vdb" in decision.reason


def test_settling_after_an_end_holds() -> None:
    held = job("vda", 8 * MIB, HOLD_SPEED)
    assert decide(held, [], rule=RULE, held_for=5.0, since_end=1.0).verdict is Verdict.HOLD
    assert decide(held, [], rule=RULE, held_for=5.0, since_end=4.0).verdict is Verdict.GO


def test_smallest_name_among_contenders_goes() -> None:
    vda = job("vda", 8 * MIB, HOLD_SPEED)
    vdb = job("vdb", 8 * MIB, HOLD_SPEED)
    assert decide(vda, [vdb], rule=RULE, held_for=1.0).verdict is Verdict.GO
    assert decide(vdb, [vda], rule=RULE, held_for=1.0).verdict is Verdict.HOLD


def test_checkpoint_stop_is_an_end_too() -> None:
    stopping = job("vdb", 200 * MIB, HOLD_SPEED)
    committed = job("vda", 2 * MIB, 50 * MIB)
    assert decide(stopping, [committed], rule=RULE, wants_end=True, held_for=2.0).verdict is Verdict.HOLD
    assert decide(stopping, [], rule=RULE, wants_end=True).verdict is Verdict.GO


def test_paused_jobs_do_not_contend_and_ready_jobs_do_not_block() -> None:
    held = job("vdb", 8 * MIB, HOLD_SPEED)
    paused = job("vda", 8 * MIB, 0, JobState.PAUSED)
    ready = job("vdc", 0, 0, JobState.READY)
    assert decide(held, [paused, ready], rule=RULE, held_for=1.0).verdict is Verdict.GO


def test_never_two_go_from_any_pair_of_observations() -> None:
    """Exhaustively: whatever each side sees of the other, at most one may end from that state."""
    remainings = [4 * MIB, 16 * MIB, 40 * MIB]
    speeds = [0, HOLD_SPEED, 30 * MIB]
    for rem_a, bw_a, rem_b, bw_b in itertools.product(remainings, speeds, remainings, speeds):
        a, b = job("vda", rem_a, bw_a), job("vdb", rem_b, bw_b)
        go_a = decide(a, [b], rule=RULE, held_for=1.0 if a.held else None).verdict is Verdict.GO
        go_b = decide(b, [a], rule=RULE, held_for=1.0 if b.held else None).verdict is Verdict.GO
        assert not (go_a and go_b), (a, b)
