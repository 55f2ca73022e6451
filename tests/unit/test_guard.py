"""The safe-completion guard: version check, speed marks and promises, and the turns rule."""

from __future__ import annotations

import itertools

from blocktui.core.guard import (
    QUANTUM,
    Decision,
    DomainJob,
    GuardRule,
    Mark,
    Verdict,
    decide,
    guard_needed,
    mark_of,
    marked,
)
from blocktui.core.model import JobState

MIB = 1024**2
RULE = GuardRule()


def job(disk: str, remaining: int, bandwidth: int = 0, state: JobState = JobState.ACTIVE) -> DomainJob:
    return DomainJob(disk=disk, state=state, remaining=remaining, bandwidth=bandwidth)


def held(disk: str, remaining: int, mark: Mark = Mark.HOLD) -> DomainJob:
    return job(disk, remaining, RULE.promise(remaining, RULE.hold_seconds(0), 0, mark))


def test_versions_before_the_fix_are_guarded() -> None:
    assert guard_needed("QEMU 7.2.0")
    assert guard_needed("QEMU 10.1.2")
    assert guard_needed("7.2.0, 10.2.0")
    assert not guard_needed("QEMU 10.2.0")
    assert not guard_needed("QEMU 11.0")


def test_unknown_version_is_guarded() -> None:
    assert guard_needed("QEMU (QMP)")
    assert guard_needed("")


def test_typed_speeds_and_budget_shares_read_as_plain() -> None:
    assert mark_of(32 * MIB) is Mark.PLAIN
    assert mark_of(500 * 1024) is Mark.PLAIN
    assert mark_of(0) is Mark.PLAIN
    assert marked(1, Mark.PLAIN) == QUANTUM  # a 1 B/s budget share never looks like a mark
    assert mark_of(marked(12_345_678, Mark.WANT)) is Mark.WANT
    assert marked(12_345_678, Mark.WANT) <= 12_345_678
    assert marked(40 * MIB, Mark.APPROACH) <= 40 * MIB  # marks never take a budget past its sum
    assert mark_of(marked(0, Mark.GO)) is Mark.GO  # "unlimited" carries its mark too


def test_a_hold_ends_by_itself_within_minutes_and_the_slots_end_apart() -> None:
    for remaining in (64 * 1024, MIB, RULE.zone, 4 * RULE.zone):
        ends = []
        for slot in range(4):
            speed = RULE.promise(remaining, RULE.hold_seconds(slot), 0, Mark.HOLD)
            seconds = remaining / (speed - Mark.HOLD)
            assert seconds <= 300  # never a crawl that outlives its process by more than minutes
            ends.append(seconds)
        if remaining >= MIB:
            assert all(later - earlier >= 20 for earlier, later in itertools.pairwise(ends))


def test_a_promise_never_passes_the_share() -> None:
    speed = RULE.promise(10 * 1024 * MIB, RULE.hold_seconds(0), 32 * MIB, Mark.HOLD)
    assert speed - Mark.HOLD <= 32 * MIB


def test_alone_a_job_runs_at_its_share_and_a_stop_raises_its_flag_first() -> None:
    assert decide(job("vda", 100 * MIB), [], rule=RULE, share=0, since_end=10).verdict is Verdict.RUN
    stop = decide(job("vda", 100 * MIB), [], rule=RULE, share=0, since_end=10, wants_end=True)
    assert stop.verdict is Verdict.WANT  # a job another process starts meanwhile sees the flag
    flagged = job("vda", 100 * MIB, stop.speed)
    assert decide(flagged, [], rule=RULE, share=0, since_end=10, wants_end=True).verdict is Verdict.GO


def test_with_another_job_an_unlimited_stream_is_kept_from_its_end() -> None:
    other = [job("vdb", 5000 * MIB, 32 * MIB)]
    decision = decide(job("vda", 100 * MIB), other, rule=RULE, share=0, since_end=10)
    assert decision.verdict is Verdict.RUN
    own = job("vda", 100 * MIB, decision.speed)
    assert own.mark is Mark.APPROACH
    assert own.eta() >= RULE.approach_for  # whatever the bandwidth asked, never within polls of its end


def test_a_job_near_its_end_raises_its_flag_then_goes_on_a_later_read() -> None:
    other = [held("vdb", 200 * MIB)]
    first = decide(job("vda", MIB), other, rule=RULE, share=0, since_end=10)
    assert first.verdict is Verdict.WANT
    again = decide(job("vda", MIB, first.speed), other, rule=RULE, share=0, since_end=10)
    assert again.verdict is Verdict.GO
    assert mark_of(again.speed) is Mark.GO


def test_a_flag_of_a_smaller_name_wins_and_a_larger_one_is_waited_for() -> None:
    vda = held("vda", MIB, Mark.WANT)
    vdb = held("vdb", MIB, Mark.WANT)
    assert decide(vdb, [vda], rule=RULE, share=0, since_end=10).verdict is Verdict.HOLD
    assert decide(vda, [vdb], rule=RULE, share=0, since_end=10).verdict is Verdict.WANT
    lowered = held("vdb", MIB, Mark.HOLD)
    assert decide(vda, [lowered], rule=RULE, share=0, since_end=10).verdict is Verdict.GO


def test_nothing_ends_while_another_may_end_or_just_ended() -> None:
    want = held("vdb", MIB, Mark.WANT)
    unguarded = job("vda", 4 * MIB, 32 * MIB)  # virsh's, say: ends within a second
    assert decide(want, [unguarded], rule=RULE, share=0, since_end=10).verdict is Verdict.WANT
    alone = decide(want, [], rule=RULE, share=0, since_end=1.0)
    assert alone.verdict is Verdict.WANT
    assert decide(want, [], rule=RULE, share=0, since_end=4.0) == Decision(Verdict.RUN, 0)  # alone now


def test_an_abandoned_promise_counts_as_ending() -> None:
    # A job kept from its end by a process that died: its promise runs out, others wait for it.
    speed = RULE.promise(8 * MIB, RULE.approach_seconds(0), 0, Mark.APPROACH)
    later = job("vda", MIB, speed)  # 7 MiB later, its speed unchanged: eta under a second
    assert RULE.ending(later)
    want = held("vdb", MIB, Mark.WANT)
    assert decide(want, [later], rule=RULE, share=0, since_end=10).verdict is Verdict.WANT


def test_a_throttled_end_waits_for_a_job_that_could_end_before_it() -> None:
    want = held("vdb", 8 * MIB, Mark.WANT)
    near = held("vda", 200 * MIB)
    ok = decide(want, [near], rule=RULE, share=16 * MIB, since_end=10)
    assert ok.verdict is Verdict.GO
    slow = decide(want, [job("vda", 40 * MIB, 1 * MIB)], rule=RULE, share=MIB // 8, since_end=10)
    assert slow.verdict is Verdict.WANT  # its 64 s to the end would overlap the other's 40 s


def test_paused_jobs_do_not_contend() -> None:
    want = held("vdb", MIB, Mark.WANT)
    paused = job("vda", MIB, marked(MIB, Mark.HOLD), state=JobState.PAUSED)
    assert decide(want, [paused], rule=RULE, share=0, since_end=10).verdict is Verdict.GO
