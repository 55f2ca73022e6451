"""Plans on top of a session: chunked streams, pause as checkpoint, a per-host queue and budget, the guard.

The planner owns the speed of every stream it runs: the speed set on the host is the smallest of
the stream's own limit, its share of the host budget, the taper before a chunk boundary, and the
guard's cap (or the guard's hold marker). Every plan lives in the journal, so a restarted
blocktui (or one that lost its connection) re-attaches to running jobs and carries the plans on.

Stopping at a boundary: QMP hosts pause the job there (``supports_pause``); libvirt cannot, so
the job is held at the boundary (marker speed), its offset read, then aborted as a checkpoint
(what it copied stays) and, after the gap, a new pull passes over what is present. Only the last
chunk lets the job complete and drop the backing file.

One thread drives ``step``; the action methods may be called from others. Everything that asks a
host runs on that host's worker (``Session.call``), one task at a time: a plan is only ever moved
by its host's worker, and a host that stops answering holds up only its own plans. The planner's
lock guards the table of plans and is never held across a host call.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import replace
from functools import partial

from blocktui.core.chunks import approach_speed
from blocktui.core.errors import BlocktuiError, Conflict, HostError, NoJob, NotFound
from blocktui.core.guard import GuardRule, Mark, Verdict, guard_needed, mark_of, marked
from blocktui.core.model import ConnectionState, Disk, JobKey, JobKind, JobState
from blocktui.core.scheduler import HostPolicy, admit, divide_budget
from blocktui.core.views import JobView, Snapshot
from blocktui.disk_identity import end_if_replaced, identity_now
from blocktui.guarding import GuardDriver, domain_job
from blocktui.hostwork import wait_for
from blocktui.journal import Entry, Journal
from blocktui.plans import Plan, PlanStatus
from blocktui.session import Session

__all__ = ["GUARD_ENV", "Plan", "PlanStatus", "Planner", "guard_disabled_by_env"]

#: A new job's speed while the guard has a say, until its size is known (bytes/s).
LAUNCH_SPEED = 1024**2

#: Environment switch for the guard: ``off`` disables it on every host.
GUARD_ENV = "BLOCKTUI_GUARD"

#: Poll interval while a stream is close to a boundary: each progress step is caught quickly.
FAST_POLL = 0.05

#: How far (in seconds at the current speed) before a boundary the fast polling starts.
APPROACH_LEAD = 1.0


def guard_disabled_by_env() -> bool:
    """``BLOCKTUI_GUARD=off`` (or 0/no/false) turns the guard off."""
    return os.environ.get(GUARD_ENV, "").strip().lower() in {"off", "0", "no", "false"}


class Planner:
    """Runs plans over a ``Session``; call ``step`` in a loop (``run_until_idle`` does)."""

    def __init__(
        self,
        session: Session,
        journal: Journal,
        *,
        policy: HostPolicy | None = None,
        guard: bool | None = None,
        rule: GuardRule | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Create a planner.

        Args:
            policy: the queue and budget for every host (changeable with ``set_policy``).
            guard: force the guard on or off; None applies it where the QEMU version is affected
                (unless ``BLOCKTUI_GUARD=off``).
        """
        self.session = session
        self.journal = journal
        self.rule = rule or GuardRule()
        self._clock = clock
        self._lock = threading.RLock()
        self._default_policy = policy or HostPolicy()
        self._policies: dict[str, HostPolicy] = {}
        self._guard_forced = False if guard is None and guard_disabled_by_env() else guard
        self._plans: dict[JobKey, Plan] = {}
        self.guard = GuardDriver(session, self.rule, clock)
        self._pid = os.getpid()
        self._last_sync: dict[str, float] = {}
        # Each host's plan step in flight: steps of one host never overlap or pile up.
        self._stepping: dict[str, Future[None]] = {}
        # Set by close(): no step moves a plan after the plans were handed back.
        self._closing = False

    # -- configuration ----------------------------------------------------------------------

    def policy(self, host: str) -> HostPolicy:
        """The queue and budget of ``host``."""
        return self._policies.get(host, self._default_policy)

    def set_policy(self, policy: HostPolicy, host: str | None = None) -> None:
        """Change max-active and budget for one host (or all); speeds are re-divided at the next step."""
        with self._lock:
            if host is None:
                self._default_policy = policy
                self._policies.clear()
            else:
                self._policies[host] = policy
        self.session.wake()

    def guarded(self, host: str) -> bool:
        """Whether the safe-completion guard applies to ``host``."""
        if self._guard_forced is not None:
            return self._guard_forced
        info = next((h for h in self.session.snapshot().hosts if h.uri == host), None)
        return info is None or guard_needed(info.hypervisor)

    # -- plans ------------------------------------------------------------------------------

    def plans(self) -> list[Plan]:
        """Every plan, in queue order."""
        with self._lock:
            return list(self._plans.values())

    def plan(self, key: JobKey) -> Plan | None:
        """The plan on one disk."""
        with self._lock:
            return self._plans.get(key)

    def add_stream(
        self,
        key: JobKey,
        *,
        bandwidth: int = 0,
        base: str | None = None,
        chunk: int = 0,
        gap: float = 0.0,
    ) -> Plan:
        """Queue a stream of ``key``; it starts at the next step when the host's queue allows.

        Raises:
            Conflict: the disk already has a plan or a job, or nothing to stream.
            NotFound: no such domain or disk.
        """
        plan = self.session.call(key.host, partial(self._add_stream, key, bandwidth, base, chunk, gap))
        self.session.wake()
        return plan

    def _add_stream(self, key: JobKey, bandwidth: int, base: str | None, chunk: int, gap: float) -> Plan:
        disk = self._disk(key)
        if not disk.has_backing:
            raise Conflict(f"{key.domain}/{key.disk} has no backing file: there is nothing to stream")
        current = self.plan(key)
        if current is not None and current.status is not PlanStatus.DONE:
            raise Conflict(f"{key.domain}/{key.disk} already has a plan ({current.status.value})")
        if self.session.backend(key.host).job_info(key.domain, key.disk) is not None:
            raise Conflict(f"{key.domain}/{key.disk} already has a block job")
        return self._new_plan(
            key, disk, JobKind.PULL, PlanStatus.QUEUED, bandwidth=bandwidth, base=base, chunk=chunk, gap=gap
        )

    def _new_plan(
        self,
        key: JobKey,
        disk: Disk,
        kind: JobKind,
        status: PlanStatus,
        *,
        bandwidth: int,
        base: str | None = None,
        chunk: int = 0,
        gap: float = 0.0,
        size: int = 0,
    ) -> Plan:
        """Journal a plan owned by this process and add it to the table."""
        chain = tuple(layer.path for layer in disk.chain)
        entry_id = self.journal.record_job(
            host=key.host,
            domain=key.domain,
            disk=key.disk,
            kind=kind.value,
            origin="planned",
            chain_before=chain,
            status=status.value,
            base=base,
            bandwidth=bandwidth,
            size=size,
            chunk=chunk,
            gap=gap,
            owner=self._pid,
            identity=identity_now(self.session.backend(key.host), key),
        )
        plan = Plan(entry_id, key, bandwidth, base, chunk, gap, chain, status=status, size=size)
        with self._lock:
            self._plans[key] = plan
        return plan

    def set_limit(self, key: JobKey, bandwidth: int) -> None:
        """Change a planned stream's own limit; the budget is re-divided at the next step."""
        self._on_host(key, self._set_limit, bandwidth)

    def _set_limit(self, key: JobKey, bandwidth: int) -> None:
        plan = self._require(key)
        plan.limit = bandwidth
        self.journal.update(plan.entry_id, bandwidth=bandwidth)

    def pause(self, key: JobKey) -> None:
        """Pause a stream: QMP holds the job in place; libvirt stops it at a checkpoint now."""
        self._on_host(key, self._pause)

    def _pause(self, key: JobKey) -> None:
        plan = self.plan(key) or self._adopt(key)
        plan.pause_requested = True
        self.journal.update(plan.entry_id, pause_requested=1)
        if plan.status in (PlanStatus.QUEUED, PlanStatus.GAP):
            self._set_status(plan, PlanStatus.PAUSED)

    def resume(self, key: JobKey) -> None:
        """Carry a paused stream on (a new pull over what is present on libvirt)."""
        self._on_host(key, self._resume)

    def _resume(self, key: JobKey) -> None:
        plan = self._require(key)
        plan.pause_requested = False
        self.journal.update(plan.entry_id, pause_requested=0)
        if plan.status is PlanStatus.PAUSED and plan.size == 0 and plan.last_cur == 0:
            # Paused before it ever ran: back to its place in the queue, not ahead of it.
            self._set_status(plan, PlanStatus.QUEUED)
        elif plan.status is PlanStatus.PAUSED:
            plan.resume_at = self._clock()
            self._set_status(plan, PlanStatus.GAP)

    def cancel(self, key: JobKey) -> None:
        """Drop a plan; a running job is aborted (a pull keeps what it copied)."""
        self._on_host(key, self._cancel)

    def abort(self, key: JobKey) -> Plan | None:
        """Abort ``key``'s job, planned or not, keeping the guard's promise.

        Returns the plan when the abort waits for the guard's turn (the loop sends it; the plan is
        DONE once it went), None when it was sent at once.
        """
        plan = self.plan(key)
        if plan is None or plan.status is PlanStatus.DONE:
            if not self._guard_has_say(key):
                self.session.abort(key)
                return None
            plan = self.adopt(key)
        self.cancel(key)
        current = self.plan(key)
        return current if current is not None and current.status is not PlanStatus.DONE else None

    def others_guarded(self, key: JobKey) -> list[str]:
        """The other live jobs of ``key``'s domain, read now, when the guard applies to its host."""
        if not self.guarded(key.host):
            return []
        _own, others = self.session.call(key.host, partial(self.guard.read, key, self._clock()))
        return [job.disk for job in others]

    def _guard_has_say(self, key: JobKey) -> bool:
        """Whether an end of ``key`` (an abort, or a start that may end at once) must wait its turn:
        another job of the domain runs, or was seen ending a moment ago."""
        if not self.guarded(key.host):
            return False
        snapshot, now = self.session.snapshot(), self._clock()
        others = any(
            v.key.host == key.host and v.key.domain == key.domain and v.key != key and not v.state.is_final
            for v in snapshot.jobs
        )
        since = self.guard.other_end_seen(key, now)
        return others or (since is not None and since < self.rule.settle)

    def _cancel(self, key: JobKey) -> None:
        plan = self._require(key)
        paused_in_place = (
            plan.status is not PlanStatus.QUEUED and self.session.backend(key.host).supports_pause
        )
        if plan.running or paused_in_place:
            if self._guard_has_say(key):
                # Aborting ends the QEMU job: it waits for its turn like any end (see _end_job).
                plan.cancel_requested = True
                plan.note = "abort requested: it goes when no other job of the domain is ending"
                self._set_status(plan, PlanStatus.STOPPING)
                return
            with contextlib.suppress(NoJob):
                self.session.abort(key)
        elif plan.status is not PlanStatus.QUEUED:
            # Stopped at a checkpoint (libvirt): no job is left to abort, the row ends here.
            self.session.end_checkpoint(key, "cancelled at a checkpoint")
        self._finish(plan, JobState.CANCELLED, note="cancelled by the user")

    def adopt(self, key: JobKey) -> Plan:
        """Take charge of a job started elsewhere (so it can be paused, queued under the budget)."""
        return self.session.call(key.host, partial(self._adopt, key))

    def _on_host(self, key: JobKey, action: Callable[..., None], *args: object) -> None:
        """Run one action on ``key``'s host worker (after the host's step in flight), then wake the loop."""
        self.session.call(key.host, partial(action, key, *args))
        self.session.wake()

    def _adopt(self, key: JobKey) -> Plan:
        existing = self.plan(key)
        if existing is not None and existing.status is not PlanStatus.DONE:
            return existing
        job = self.session.backend(key.host).job_info(key.domain, key.disk)
        if job is None:
            raise NoJob(f"{key.domain}/{key.disk} has no block job to take charge of")
        plan = self._new_plan(
            key, self._disk(key), job.kind, PlanStatus.ACTIVE, bandwidth=job.bandwidth, size=job.end
        )
        plan.applied = job.bandwidth
        return plan

    def reattach(self, timeout: float | None = None) -> list[Plan]:
        """Carry on the journal's open plans whose process is gone; return those taken over.

        Args:
            timeout: wait at most this long for the hosts (None: until each has answered); the
                plans of a host that answers later are taken over then, in its worker.
        """
        entries: dict[str, list[Entry]] = {}
        for entry in self.journal.open_entries():
            # A job only watched (not planned): the session's scan finds it again if it still runs.
            if entry.host in self.session.hosts and entry.origin == "planned":
                entries.setdefault(entry.host, []).append(entry)
        futures = [self.session.submit(host, partial(self._reattach, todo)) for host, todo in entries.items()]
        wait_for(futures, timeout)
        self.session.wake()
        done = [f for f in futures if f.done()]
        for future in done:
            if (error := future.exception()) is not None:
                raise error
        return [plan for future in done for plan in future.result()]

    def _reattach(self, entries: list[Entry]) -> list[Plan]:
        taken: list[Plan] = []
        failed: BlocktuiError | None = None
        for entry in entries:
            key = JobKey(entry.host, entry.domain, entry.disk)
            if self.plan(key) is not None or not self.journal.claim(entry.id, self._pid):
                continue
            try:
                plan = self._plan_from(entry)
            except BlocktuiError as exc:
                # Hand it back for the next try (or the next blocktui); the other entries go on.
                self.journal.update(entry.id, owner=None)
                failed = failed or exc
                continue
            with self._lock:
                self._plans[key] = plan
            taken.append(plan)
        if failed is not None and not taken:
            raise failed
        return taken

    def _plan_from(self, entry: Entry) -> Plan:
        key = JobKey(entry.host, entry.domain, entry.disk)
        plan = Plan(
            entry.id,
            key,
            entry.bandwidth,
            entry.base,
            entry.chunk,
            entry.gap,
            entry.chain_before,
            size=entry.size,
            checkpointed=max((c.boundary for c in entry.checkpoints), default=0),
            pause_requested=entry.pause_requested,
            overshoots=[c.overshoot for c in entry.checkpoints],
        )
        if end_if_replaced(self.session.backend(key.host), self.journal, entry):
            plan.status = PlanStatus.DONE  # its disk was destroyed and made anew: not this plan's disk
            return plan
        job = None
        try:
            job = self.session.backend(key.host).job_info(key.domain, key.disk)
        except BlocktuiError:
            job = None
        if job is not None and not job.state.is_final:
            plan.status = PlanStatus.ACTIVE
            plan.size = job.end or plan.size
            plan.applied = job.bandwidth
            plan.going = mark_of(job.bandwidth) is Mark.GO
            chunks = plan.chunks()
            plan.boundary = plan.next_boundary(job.cur)
            if job.state is JobState.PAUSED and plan.pause_requested:
                plan.status = PlanStatus.PAUSED
            elif job.state is JobState.PAUSED and entry.status == PlanStatus.GAP.value:
                # Paused at a boundary whose checkpoint is recorded: the next chunk follows.
                plan.status = PlanStatus.GAP
                plan.resume_at = self._clock()
            elif job.state is JobState.PAUSED and chunks is not None:
                # Paused at a boundary before its checkpoint was written: write it now.
                plan.status = PlanStatus.STOPPING
                plan.stop_reason = "checkpoint"
                plan.boundary = chunks.index_of(job.cur) * plan.chunk or None
                plan.last_cur = job.cur
            return plan
        if entry.status == PlanStatus.QUEUED.value:
            plan.status = PlanStatus.QUEUED
        elif entry.pause_requested or entry.status == PlanStatus.PAUSED.value:
            plan.status = PlanStatus.PAUSED
        else:
            # The job is gone: it ended while nobody watched, or it stopped at a checkpoint.
            disk = self._disk_or_none(key)
            if disk is not None and disk.chain_known and len(disk.chain) < len(entry.chain_before):
                plan.status = PlanStatus.DONE
                self.journal.finish(
                    entry.id, "completed", bytes_done=entry.size, note="ended while blocktui was away"
                )
            else:
                plan.status = PlanStatus.GAP
                plan.resume_at = self._clock()
        return plan

    # -- the loop ---------------------------------------------------------------------------

    def step(self) -> Snapshot:
        """Poll the hosts, then move every plan on; return the snapshot with chunk labels.

        Each host's plans move on in that host's worker; this waits for them as long as the
        session waits for a poll, so a host that stops answering delays only its own plans.
        """
        snapshot = self.session.step()
        started: list[Future[None]] = []
        for host in self.session.hosts:
            current = self._stepping.get(host)
            if self._closing or not self._host_connected(snapshot, host):
                continue
            if current is None or current.done():
                self._stepping[host] = self.session.submit(host, partial(self._step_host, host))
                started.append(self._stepping[host])
        wait_for(started, max(2 * self.session.poll_interval, 1.0))
        # A step that failed is reported once, whether it ended within the wait or after it.
        for host, future in list(self._stepping.items()):
            if future.done() and (error := future.exception()) is not None:
                del self._stepping[host]
                raise error
        return self.snapshot(snapshot)

    def snapshot(self, snapshot: Snapshot | None = None) -> Snapshot:
        """The session's snapshot with ``chunk`` (k, n) on planned jobs."""
        base = snapshot or self.session.snapshot()
        jobs: list[JobView] = []
        with self._lock:
            for view in base.jobs:
                plan = self._plans.get(view.key)
                chunks = plan.chunks() if plan is not None else None
                if plan is not None and chunks is not None and not view.state.is_final:
                    jobs.append(replace(view, chunk=chunks.label(view.cur)))
                else:
                    jobs.append(view)
        return Snapshot(hosts=base.hosts, domains=base.domains, jobs=tuple(jobs))

    def poll_interval(self) -> float:
        """How long to wait before the next step: short near boundaries and guarded ends."""
        interval = self.session.poll_interval
        for plan in self.plans():
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

    def idle(self) -> bool:
        """No plan is left to drive (all done, or paused by the user)."""
        return all(p.status in (PlanStatus.DONE, PlanStatus.PAUSED) for p in self.plans())

    def run_until(self, done: Callable[[], bool], timeout: float | None = None) -> None:
        """Step until ``done()`` is true (or ``timeout`` seconds pass: then raise HostError)."""
        deadline = None if timeout is None else self._clock() + timeout
        while True:
            self.step()
            if done():
                return
            if deadline is not None and self._clock() > deadline:
                raise HostError(f"plans still running after {timeout} s")
            self.session.wait(self.poll_interval())

    def close(self, timeout: float | None = None) -> None:
        """Leave the plans to whoever starts next; running jobs keep running (guard holds are lifted).

        Args:
            timeout: wait at most this long for the hosts; a host that does not answer keeps its
                plans' jobs as they are (the next blocktui takes them over).
        """
        self._closing = True
        hosts = {plan.key.host for plan in self.plans()}
        wait_for([self.session.submit(host, partial(self._close_host, host)) for host in hosts], timeout)

    def _close_host(self, host: str) -> None:
        for plan in self._host_plans(host):
            if plan.running and not plan.going and GuardDriver.followed(plan.applied):
                with contextlib.suppress(BlocktuiError):
                    self.session.set_speed(plan.key, self._hand_back_speed(plan))
            if plan.status is not PlanStatus.DONE:
                self.journal.update(plan.entry_id, owner=None)

    def _hand_back_speed(self, plan: Plan) -> int:
        """What a job this process guards runs at once nobody does (see ``GuardDriver.hand_back``)."""
        view = self.session.job(plan.key)
        if view is None or not self.guarded(plan.key.host):
            return plan.limit
        return self.guard.hand_back(plan.key, view, plan.limit)

    def _host_plans(self, host: str) -> list[Plan]:
        with self._lock:
            return [p for p in self._plans.values() if p.key.host == host]

    # -- internals: one host ----------------------------------------------------------------

    def _step_host(self, host: str) -> None:
        if self._closing:
            return  # queued before close(): the plans are handed back, nothing moves them now
        # Read here, in the host's worker: the latest the session knows, after this host's last step.
        snapshot = self.session.snapshot()
        now = self._clock()
        self.guard.note_snapshot(host, snapshot, now)
        self._sync_requests(host, now)
        plans = self._host_plans(host)
        views = {v.key: v for v in snapshot.jobs if v.key.host == host}
        for plan in plans:
            if plan.running:
                self._follow(plan, views.get(plan.key), snapshot, now)
        policy = self.policy(host)
        # A plan between chunks keeps its place: it is part-way, and the queue must not starve it.
        busy = [p for p in plans if p.running or p.status is PlanStatus.GAP]
        for plan in plans:
            if plan.status is PlanStatus.GAP and plan.resume_at <= now and not plan.pause_requested:
                self._launch(plan, now)
        queued = [p for p in plans if p.status is PlanStatus.QUEUED]
        for plan in admit(queued, len(busy), policy.max_active):
            self._launch(plan, now)
        self._apply_speeds(host, snapshot, now)

    def _follow(self, plan: Plan, view: JobView | None, snapshot: Snapshot, now: float) -> None:
        if view is None:
            return
        if view.end > 0 and plan.size != view.end:
            first = plan.size == 0
            plan.size = view.end
            self.journal.update(plan.entry_id, size=view.end)
            if first and plan.status is PlanStatus.ACTIVE:
                plan.boundary = plan.next_boundary(view.cur)
        state = view.state
        if state is JobState.COMPLETED:
            self._finish(plan, JobState.COMPLETED, bytes_done=view.end)
            return
        if plan.cancel_requested and not state.is_final:
            self._end_job(plan, view, snapshot, now)
            return
        if state is JobState.PAUSED and plan.status is PlanStatus.STOPPING:
            # QMP paused at the boundary, or libvirt's abort recorded as a checkpoint.
            self._checkpoint(plan, max(view.cur, plan.last_cur), now)
            return
        if state.is_final:
            self._finish(
                plan, state, bytes_done=max(view.cur, plan.last_cur), error=view.error, note=view.note
            )
            return
        if state is JobState.PAUSED and plan.status is PlanStatus.ACTIVE and not plan.pause_requested:
            return  # paused by someone else: leave it
        plan.last_cur = view.cur
        if plan.status is PlanStatus.STOPPING and not self._pauses(plan):
            self._end_job(plan, view, snapshot, now)
            return
        stop_here = plan.pause_requested or (plan.boundary is not None and view.cur >= plan.boundary)
        if stop_here:
            plan.stop_reason = "pause" if plan.pause_requested else "checkpoint"
            self._set_status(plan, PlanStatus.STOPPING)
            if self._pauses(plan):
                self.session.pause(plan.key)
            else:
                self._end_job(plan, view, snapshot, now)

    def _pauses(self, plan: Plan) -> bool:
        """Whether a stop at a boundary or a pause keeps the job (QMP), rather than ending it (libvirt)."""
        return self.session.backend(plan.key.host).supports_pause

    def _end_job(self, plan: Plan, view: JobView, snapshot: Snapshot, now: float) -> None:
        """Abort the job (a checkpoint on libvirt, or the user's abort) once the guard gives it its turn."""
        if plan.abort_sent:
            return
        if self.guarded(plan.key.host) and self.guard.contended(snapshot, plan.key, now):
            share = self._shares(plan.key.host).get(plan.key, plan.limit)
            decision = self.guard.decide(plan.key, share=share, now=now, wants_end=True)
            if decision is None:
                return  # gone already: the next poll tells how it ended
            plan.note = decision.reason
            if decision.verdict is not Verdict.GO:
                self._speed(plan, decision.speed)
                return
        if plan.cancel_requested:
            self.session.abort(plan.key)
            plan.abort_sent = True
            self.guard.mark_end(plan.key, now)
            self._finish(plan, JobState.CANCELLED, note="cancelled by the user")
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
            self._record_checkpoint(plan, boundary, offset)
        else:
            # A pause between boundaries, or a boundary already recorded: only the progress moves.
            self.journal.update(plan.entry_id, bytes_done=offset)
        plan.going = False
        plan.applied = None if not self.session.backend(plan.key.host).supports_pause else plan.applied
        if plan.pause_requested:
            plan.note = "paused (checkpoint: the next pull passes over what is copied)"
            self._set_status(plan, PlanStatus.PAUSED)
        else:
            plan.resume_at = now + plan.gap
            self._set_status(plan, PlanStatus.GAP)

    def _launch(self, plan: Plan, now: float) -> None:
        """Start (or restart, or resume) the plan's job."""
        backend = self.session.backend(plan.key.host)
        try:
            job = backend.job_info(plan.key.domain, plan.key.disk)
            if job is not None and job.state is JobState.PAUSED and backend.supports_pause:
                cur = job.cur
                self._begin_run(plan, cur)
                self.session.resume(plan.key)
            elif job is not None:
                self._begin_run(plan, job.cur)  # already running (adopted): just follow it
            else:
                waiting = self._launch_waits(plan, now)
                if waiting:
                    plan.note = waiting
                    return
                self._make_room(plan, now)
                start_speed = self._start_speed(plan)
                if self.guarded(plan.key.host):
                    start_speed = marked(start_speed, Mark.PLAIN)
                    if self._guard_has_say(plan.key):
                        # Held until the guard's first look: its size is not known yet.
                        start_speed = marked(min(start_speed or LAUNCH_SPEED, LAUNCH_SPEED), Mark.HOLD)
                self.session.start_stream(
                    plan.key.host, plan.key.domain, plan.key.disk, bandwidth=start_speed, base=plan.base
                )
                plan.applied = start_speed
                fresh = backend.job_info(plan.key.domain, plan.key.disk)
                if fresh is not None and fresh.end:
                    plan.size = fresh.end
                    self.journal.update(plan.entry_id, size=fresh.end)
                self._begin_run(plan, fresh.cur if fresh else plan.last_cur)
        except BlocktuiError as exc:
            if isinstance(exc, NotFound | Conflict):
                self._finish(plan, JobState.FAILED, bytes_done=plan.last_cur, error=str(exc))
            else:
                plan.note = str(exc)  # a host error: try again at the next step
                plan.resume_at = now + 1.0

    def _launch_waits(self, plan: Plan, now: float) -> str:
        """Why a new job must not start yet: starting can end it at once (nothing left to copy)."""
        if not self._guard_has_say(plan.key):
            return ""
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
        self._set_status(plan, PlanStatus.ACTIVE)

    def _start_speed(self, plan: Plan) -> int:
        """A safe first speed: its budget share, tapered to the first boundary when there is one."""
        share = self._shares(plan.key.host, joining=plan.key).get(plan.key, plan.limit)
        chunks = plan.chunks()
        if chunks is None and plan.chunk > 0:
            # Size not known yet: assume the first boundary is one chunk away.
            return approach_speed(plan.chunk - plan.last_cur, share)
        boundary = plan.next_boundary(plan.last_cur)
        if boundary is not None:
            return approach_speed(boundary - plan.last_cur, share)
        return share

    def _shares(self, host: str, joining: JobKey | None = None) -> dict[JobKey, int]:
        """Each active plan's share of the host budget (with ``joining`` counted as active)."""
        limits = {
            p.key: p.limit
            for p in self._host_plans(host)
            if p.status is PlanStatus.ACTIVE or p.key == joining
        }
        return divide_budget(limits, self.policy(host).budget)

    def _make_room(self, plan: Plan, now: float) -> None:
        """Lower the running streams to their shares with ``plan`` counted, before it starts."""
        shares = self._shares(plan.key.host, joining=plan.key)
        for other in self._host_plans(plan.key.host):
            if other is plan or other.status is not PlanStatus.ACTIVE or other.applied is None:
                continue
            share = shares.get(other.key, other.limit)
            if GuardDriver.followed(other.applied):
                continue  # the guard sets its speed, never above its share
            if _faster(other.applied or 0, share):
                self._speed(other, share)

    def _apply_speeds(self, host: str, snapshot: Snapshot, now: float) -> None:
        shares = self._shares(host)
        guarded = self.guarded(host)
        wanted: list[tuple[Plan, int]] = []
        for plan in self._host_plans(host):
            if plan.status is not PlanStatus.ACTIVE:
                continue
            view = next((v for v in snapshot.jobs if v.key == plan.key), None)
            if view is None or view.state is not JobState.ACTIVE:
                continue
            speed = shares.get(plan.key, plan.limit)
            if plan.boundary is not None:
                speed = approach_speed(plan.boundary - view.cur, speed)
            if guarded:
                speed = self._guarded_speed(plan, view, snapshot, speed, now)
            wanted.append((plan, speed))
        # Slow down before speeding up, so the sum on the host never passes the budget on the way.
        for plan, speed in sorted(wanted, key=lambda item: not _faster(item[0].applied or 0, item[1])):
            self._speed(plan, speed)

    def _guarded_speed(self, plan: Plan, view: JobView, snapshot: Snapshot, speed: int, now: float) -> int:
        """The speed the guard allows a running job whose own would be ``speed``."""
        must_look = plan.going or GuardDriver.followed(plan.applied) or self.rule.in_zone(domain_job(view))
        if not must_look and not self.guard.contended(snapshot, plan.key, now):
            return marked(speed, Mark.PLAIN)
        decision = self.guard.decide(plan.key, share=speed, now=now, going=plan.going)
        if decision is None:
            return plan.applied or speed  # gone: the next poll tells how it ended
        plan.note = decision.reason
        plan.going = decision.verdict is Verdict.GO
        return decision.speed

    def _speed(self, plan: Plan, speed: int) -> None:
        if plan.applied == speed:
            return
        try:
            self.session.set_speed(plan.key, speed)
        except NoJob:
            return
        except BlocktuiError as exc:
            plan.note = str(exc)
            return
        plan.applied = speed

    # -- internals: bookkeeping -------------------------------------------------------------

    def _sync_requests(self, host: str, now: float) -> None:
        """Pick up pause/resume asked by another blocktui process through the journal."""
        if now - self._last_sync.get(host, float("-inf")) < 0.5:
            return
        self._last_sync[host] = now
        for plan in self._host_plans(host):
            if plan.status is PlanStatus.DONE:
                continue
            entry = self.journal.get(plan.entry_id)
            if entry is None:
                continue
            if entry.ended_at is not None:
                plan.status = PlanStatus.DONE
            elif entry.pause_requested and not plan.pause_requested:
                plan.pause_requested = True
                if plan.status in (PlanStatus.QUEUED, PlanStatus.GAP):
                    self._set_status(plan, PlanStatus.PAUSED)
            elif not entry.pause_requested and plan.pause_requested:
                plan.pause_requested = False
                if plan.status is PlanStatus.PAUSED:
                    plan.resume_at = now
                    self._set_status(plan, PlanStatus.GAP)

    def _set_status(self, plan: Plan, status: PlanStatus) -> None:
        if plan.status is status:
            return
        plan.status = status
        self.journal.update(plan.entry_id, status=status.value, note=plan.note)

    def _finish(
        self,
        plan: Plan,
        state: JobState,
        *,
        bytes_done: int | None = None,
        error: str | None = None,
        note: str = "",
    ) -> None:
        plan.status = PlanStatus.DONE
        done = bytes_done if bytes_done is not None else plan.last_cur
        if state is JobState.COMPLETED and plan.chunk > 0 and plan.size > plan.checkpointed:
            # The end of the last chunk is the plan's last checkpoint.
            self._record_checkpoint(plan, plan.size, plan.size)
        self.journal.finish(plan.entry_id, state.value, bytes_done=done, error=error, note=note)
        self.guard.mark_end(plan.key, self._clock())

    def _record_checkpoint(self, plan: Plan, boundary: int, offset: int) -> None:
        """The one place a checkpoint is written: each boundary once, in ascending order."""
        point = self.journal.add_checkpoint(plan.entry_id, boundary=boundary, offset=offset)
        plan.overshoots.append(point.overshoot)
        plan.checkpointed = boundary

    def _require(self, key: JobKey) -> Plan:
        plan = self.plan(key)
        if plan is None or plan.status is PlanStatus.DONE:
            raise NoJob(f"{key.domain}/{key.disk} has no stream plan")
        return plan

    def _disk(self, key: JobKey) -> Disk:
        disk = self.session.backend(key.host).get_domain(key.domain).disk(key.disk)
        if disk is None:
            raise NotFound(f"domain {key.domain!r} has no disk {key.disk!r}")
        return disk

    def _disk_or_none(self, key: JobKey) -> Disk | None:
        try:
            return self._disk(key)
        except (NotFound, Conflict, HostError):  # gone, dead (a lost QEMU monitor), or not answering
            return None

    @staticmethod
    def _host_connected(snapshot: Snapshot, host: str) -> bool:
        return any(h.uri == host and h.state is ConnectionState.CONNECTED for h in snapshot.hosts)


def _faster(current: int, wanted: int) -> bool:
    """Whether ``current`` is faster than ``wanted`` (0 means unlimited, the fastest)."""
    if current == wanted:
        return False
    if current <= 0:
        return True
    return wanted > 0 and current > wanted
