"""One host's plans moved on, in that host's worker: start, follow, stop at boundaries, set speeds.

The speed set on the host is the smallest of the stream's own limit, its share of the host
budget, the taper before a chunk boundary, and what the completion guard allows. Stopping at a
boundary: QMP hosts pause the job there (``supports_pause``); libvirt cannot, so the job's offset
is read and the job aborted as a checkpoint (what it copied stays) once the guard gives it its
turn, and after the gap a new pull passes over what is present. Only the last chunk lets the job
complete and drop the backing file.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from blocktui.core.errors import BlocktuiError, Conflict, NoJob, NotFound
from blocktui.core.guard import GuardRule, Mark, Verdict, marked
from blocktui.core.model import JobKey, JobState
from blocktui.core.scheduler import HostPolicy, admit
from blocktui.core.views import JobView
from blocktui.engine.guarding import GuardDriver, domain_job
from blocktui.engine.lookup import stream_disk
from blocktui.engine.plan_book import PlanBook
from blocktui.engine.plan_speeds import SpeedKeeper
from blocktui.engine.plans import Plan, PlanStatus
from blocktui.engine.session import Session
from blocktui.engine.windows import local_ranges

#: Poll interval while a stream is close to a boundary: each progress step is caught quickly.
FAST_POLL = 0.05

#: How far (in seconds at the current speed) before a boundary the fast polling starts.
APPROACH_LEAD = 1.0

#: A new job's speed while the guard has a say, until its size is known (bytes/s).
LAUNCH_SPEED = 1024**2


class HostRunner:
    """Moves the plans of each host on; every method runs in the host's worker."""

    def __init__(
        self,
        session: Session,
        book: PlanBook,
        guard: GuardDriver,
        *,
        rule: GuardRule,
        policy: Callable[[str], HostPolicy],
        guarded: Callable[[str], bool],
        clock: Callable[[], float],
    ) -> None:
        self.session = session
        self.book = book
        self.guard = guard
        self.rule = rule
        self.policy = policy
        self.guarded = guarded
        self._clock = clock
        self.speeds = SpeedKeeper(session, book, guard, rule=rule, policy=policy, guarded=guarded)
        # Set by the planner's close(): no step moves a plan after the plans were handed back.
        self.closing = False

    def poll_interval(self, plans: list[Plan]) -> float:
        """How long to wait before the next step over ``plans``: short near boundaries and guarded ends."""
        interval = self.session.poll_interval
        for plan in plans:
            if plan.status is PlanStatus.STOPPING:
                return FAST_POLL
            if plan.status is PlanStatus.ACTIVE:
                view = self.session.job(plan.key)
                if view is None:
                    continue
                if plan.boundary is not None:
                    speed = plan.applied or view.rate or 0
                    if plan.boundary - view.cur <= max(speed * APPROACH_LEAD, 4 * 1024**2):
                        return FAST_POLL
                if self.guarded(plan.key.host) and (
                    GuardDriver.followed(plan.applied) or self.rule.in_zone(domain_job(view))
                ):
                    interval = min(interval, self.rule.poll)
            elif plan.status is PlanStatus.GAP:
                interval = min(interval, max(FAST_POLL, plan.resume_at - self._clock()))
        return interval

    def close_host(self, host: str) -> None:
        for plan in self.book.host_plans(host):
            if plan.running and plan.pulls_prefix:
                self._stop_prefix_at_close(plan)
            if plan.running and not plan.going and GuardDriver.followed(plan.applied):
                with contextlib.suppress(BlocktuiError):
                    self.session.set_speed(plan.key, self._hand_back_speed(plan))
            if plan.cancel_requested and not plan.abort_sent:
                # Its turn did not come: the next blocktui stops it (a pause), never completes it.
                self.book.journal.update(
                    plan.entry_id, pause_requested=1, note="abort requested, not sent before quitting"
                )
            if plan.status is not PlanStatus.DONE:
                self.book.journal.update(plan.entry_id, owner=None)

    def _stop_prefix_at_close(self, plan: Plan) -> None:
        """A prefix window's pull ends only because this process stops it: stop it now, keeping
        what it copied, unless the guard gives another job of the domain the turn (then the next
        blocktui stops it, as it would an abort that was not sent)."""
        if not self.guard_has_say(plan.key):
            with contextlib.suppress(BlocktuiError):
                self.session.abort(plan.key)
                plan.abort_sent = True
                plan.note = "window stopped when blocktui closed (what it copied stays)"
        self.book.journal.update(plan.entry_id, pause_requested=1, note=plan.note)

    def _hand_back_speed(self, plan: Plan) -> int:
        """What a job this process guards runs at once nobody does (see ``GuardDriver.hand_back``)."""
        if not self.guarded(plan.key.host):
            return plan.limit
        job = self.session.backend(plan.key.host).job_info(plan.key.domain, plan.key.disk)
        if job is None or job.end <= 0:
            return plan.limit  # its size unknown yet: at its own limit, it ends by itself
        return self.guard.hand_back(plan.key, job.end - job.cur, plan.limit)

    def set_bare_speed(self, key: JobKey, bandwidth: int) -> None:
        """Re-throttle a job no plan of this process drives, unless a guard holds it."""
        job = self.session.backend(key.host).job_info(key.domain, key.disk)
        if job is not None and self.guarded(key.host) and GuardDriver.followed(job.bandwidth):
            raise Conflict(
                f"{key.domain}/{key.disk} is held back by the completion guard of another blocktui "
                "process: change its limit there (the dashboard's l key), or once it runs alone"
            )
        self.session.set_speed(key, bandwidth)

    def guard_has_say(self, key: JobKey) -> bool:
        """Whether an end of ``key`` (an abort, or a start that may end at once) must wait its turn:
        another job of the domain runs, or was seen ending a moment ago."""
        if not self.guarded(key.host):
            return False
        now = self._clock()
        _own, others = self.guard.read(key, now)  # fresh: the snapshot's scan may be a second old
        since = self.guard.other_end_seen(key, now)
        return bool(others) or (since is not None and since < self.rule.settle)

    def step_host(self, host: str) -> None:
        if self.closing:
            return  # queued before close(): the plans are handed back, nothing moves them now
        # Read here, in the host's worker: the latest the session knows, after this host's last step.
        jobs = self.session.host_jobs(host, {plan.key for plan in self.book.host_plans(host)})
        now = self._clock()
        self.guard.note_live(host, jobs, now)
        self.book.sync_requests(host, now)
        plans = self.book.host_plans(host)
        for plan in plans:
            if plan.running:
                self._follow(plan, jobs.views.get(plan.key), now)
        policy = self.policy(host)
        # A plan between chunks keeps its place: it is part-way, and the queue must not starve it.
        busy = [p for p in plans if p.running or p.status is PlanStatus.GAP]
        for plan in plans:
            if plan.status is PlanStatus.GAP and plan.resume_at <= now and not plan.pause_requested:
                self._launch(plan, now)
        queued = [p for p in plans if p.status is PlanStatus.QUEUED]
        for plan in admit(queued, len(busy), policy.max_active):
            self._launch(plan, now)
        self.speeds.apply(host, jobs, now)

    def _follow(self, plan: Plan, view: JobView | None, now: float) -> None:
        if view is None:
            return
        if view.end > 0 and plan.size != view.end:
            first = plan.size == 0
            plan.size = view.end
            self.book.journal.update(plan.entry_id, size=view.end)
            if first and plan.status is PlanStatus.ACTIVE:
                plan.boundary = plan.next_boundary(view.cur)
        state = view.state
        if state is JobState.COMPLETED:
            self.book.finish(plan, JobState.COMPLETED, bytes_done=view.end)
            return
        if plan.cancel_requested and not state.is_final:
            self._end_job(plan, view, now)
            return
        ours = plan.status is PlanStatus.STOPPING or (
            plan.pause_requested and plan.status is PlanStatus.ACTIVE
        )
        if state is JobState.PAUSED and ours:
            # QMP paused at the boundary or as asked (an ask that was refused may have taken effect),
            # or libvirt's abort recorded as a checkpoint.
            self._checkpoint(plan, max(view.cur, plan.last_cur), now)
            return
        if state.is_final:
            self.book.finish(
                plan, state, bytes_done=max(view.cur, plan.last_cur), error=view.error, note=view.note
            )
            return
        if state is JobState.PAUSED and plan.status is PlanStatus.ACTIVE and not plan.pause_requested:
            return  # paused by someone else: leave it
        plan.last_cur = view.cur
        if plan.status is PlanStatus.STOPPING:
            if not self._pauses(plan):
                self._end_job(plan, view, now)
            # Else the pause is asked and the view has not caught up: asking again is refused.
            return
        stop_here = plan.pause_requested or (plan.boundary is not None and view.cur >= plan.boundary)
        if stop_here:
            plan.stop_reason = "pause" if plan.pause_requested else "checkpoint"
            self.book.set_status(plan, PlanStatus.STOPPING)
            if self._pauses(plan):
                try:
                    self.session.pause(plan.key)
                except BlocktuiError as exc:
                    self.book.set_status(plan, PlanStatus.ACTIVE)  # asked again at the next step
                    plan.note = str(exc)
            else:
                self._end_job(plan, view, now)

    def _pauses(self, plan: Plan) -> bool:
        """Whether a stop at a boundary or a pause keeps the job (QMP), rather than ending it (libvirt)."""
        return self.session.backend(plan.key.host).supports_pause

    def _end_job(self, plan: Plan, view: JobView, now: float) -> None:
        """Abort the job (a checkpoint on libvirt, or the user's abort) once the guard gives it its turn."""
        if plan.abort_sent:
            return
        if self.guarded(plan.key.host):
            # Read fresh, whatever the session holds: another process's job may be ending now.
            share = self.speeds.shares(plan.key.host, joining=plan.key).get(plan.key, plan.limit)
            decision = self.guard.decide(plan.key, share=share, now=now, wants_end=True)
            if decision is None:
                return  # gone already: the next poll tells how it ended
            plan.note = decision.reason
            if decision.verdict is not Verdict.GO:
                self.speeds.set(plan, decision.speed)
                return
        if plan.cancel_requested:
            self.session.abort(plan.key)
            plan.abort_sent = True
            self.guard.mark_end(plan.key, now)
            self.book.finish(plan, JobState.CANCELLED, note="cancelled by the user")
            return
        # The tracker reads the cancellation as this checkpoint, not as a cancelled job.
        fresh = self.session.backend(plan.key.host).job_info(plan.key.domain, plan.key.disk)
        if fresh is not None:
            plan.last_cur = fresh.cur
        self.session.expect_stop(plan.key, JobState.PAUSED, plan.stop_reason)
        with contextlib.suppress(NoJob):
            self.session.abort(plan.key)
        plan.abort_sent = True
        self.guard.mark_end(plan.key, now)

    def _checkpoint(self, plan: Plan, offset: int, now: float) -> None:
        boundary = plan.boundary
        if boundary is not None and plan.checkpointed < boundary <= offset:
            self.book.record_checkpoint(plan, boundary, offset)
        else:
            # A pause between boundaries, or a boundary already recorded: only the progress moves.
            self.book.journal.update(plan.entry_id, bytes_done=offset)
        if plan.pulls_prefix and boundary is not None and offset >= boundary:
            # The window's end: what the pull copied stays, and so does the backing file.
            note = "window copied; the backing file stays"
            self.session.end_checkpoint(plan.key, note, JobState.COMPLETED)
            self.book.finish(plan, JobState.COMPLETED, bytes_done=offset, note=note)
            return
        plan.going = False
        plan.applied = None if not self.session.backend(plan.key.host).supports_pause else plan.applied
        if plan.applied is not None and GuardDriver.followed(plan.applied):
            self.speeds.set(plan, marked(LAUNCH_SPEED, Mark.HOLD))  # paused in place: its flag goes down
        if plan.pause_requested:
            plan.note = "paused (checkpoint: the next pull passes over what is copied)"
            self.book.set_status(plan, PlanStatus.PAUSED)
        else:
            plan.resume_at = now + plan.gap
            self.book.set_status(plan, PlanStatus.GAP)

    def _launch(self, plan: Plan, now: float) -> None:
        """Start (or restart, or resume) the plan's job."""
        backend = self.session.backend(plan.key.host)
        try:
            job = backend.job_info(plan.key.domain, plan.key.disk)
            if job is not None and job.state is JobState.PAUSED and backend.supports_pause:
                if waiting := self._launch_waits(plan, now):
                    plan.note = waiting
                    return
                if self.guarded(plan.key.host):
                    self.speeds.set(plan, marked(LAUNCH_SPEED, Mark.HOLD))  # held until the guard's look
                self._begin_run(plan, job.cur)
                self.session.resume(plan.key)
            elif job is not None:
                self._begin_run(plan, job.cur)  # already running (adopted): just follow it
            else:
                waiting = self._launch_waits(plan, now)
                if waiting:
                    plan.note = waiting
                    return
                self.speeds.make_room(plan)
                start_speed = self.speeds.start_speed(plan)
                if self.guarded(plan.key.host):
                    # Held until the guard's first look, on a read taken after the start: a job
                    # started beside it at the same moment (by another process) is seen there.
                    start_speed = marked(min(start_speed or LAUNCH_SPEED, LAUNCH_SPEED), Mark.HOLD)
                if plan.by_filter and plan.window is not None:
                    # What the overlay holds is read here (qemu-img map, no host call) and skipped.
                    local = local_ranges(backend, stream_disk(backend, plan.key, None))
                    self.session.start_window(plan.key, plan.window, bandwidth=start_speed, local=local)
                else:
                    self.session.start_stream(
                        plan.key.host, plan.key.domain, plan.key.disk, bandwidth=start_speed, base=plan.base
                    )
                plan.applied = start_speed
                fresh = backend.job_info(plan.key.domain, plan.key.disk)
                if fresh is not None and fresh.end:
                    plan.size = fresh.end
                    self.book.journal.update(plan.entry_id, size=fresh.end)
                self._begin_run(plan, fresh.cur if fresh else plan.last_cur)
        except BlocktuiError as exc:
            if isinstance(exc, NotFound | Conflict):
                self.book.finish(plan, JobState.FAILED, bytes_done=plan.last_cur, error=str(exc))
            else:
                plan.note = str(exc)  # a host error: try again at the next step
                plan.resume_at = now + 1.0

    def _launch_waits(self, plan: Plan, now: float) -> str:
        """Why a new job must not start yet: starting can end it at once (nothing left to copy)."""
        if not self.guarded(plan.key.host):
            return ""
        # Read fresh: the session's own scan of jobs other processes run may be a second old.
        _own, others = self.guard.read(plan.key, now)
        blocking = [job for job in others if job.flagged or self.rule.ending(job)]
        if blocking:
            return f"starts once {blocking[0].disk} has ended"
        since = self.guard.other_end_seen(plan.key, now)
        if since is not None and since < self.rule.settle:
            return "starts once the job of the domain that just ended has settled"
        return ""

    def _begin_run(self, plan: Plan, cur: int) -> None:
        plan.boundary = plan.next_boundary(cur)
        plan.last_cur = cur
        plan.going = False
        plan.abort_sent = False
        plan.note = ""
        self.book.set_status(plan, PlanStatus.ACTIVE)
