"""Plans on top of a session: chunked streams, pause as checkpoint, a per-host queue and budget, the guard.

Every plan lives in the journal, so a restarted blocktui (or one that lost its connection)
re-attaches to running jobs and carries the plans on (``recovery``). One thread drives ``step``;
the action methods may be called from others. Everything that asks a host runs on that host's
worker (``Session.call``), one task at a time, where ``plan_runs.HostRunner`` moves its plans on:
a host that stops answering holds up only its own plans. No lock is held across a host call.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import replace
from functools import partial

from blocktui.core.chunks import check_gap
from blocktui.core.errors import NoJob
from blocktui.core.guard import GuardRule, guard_needed
from blocktui.core.model import ConnectionState, JobKey, JobState
from blocktui.core.scheduler import HostPolicies, HostPolicy
from blocktui.core.views import JobView, Snapshot
from blocktui.core.windows import Window
from blocktui.engine.guarding import GuardDriver
from blocktui.engine.hostwork import wait_for
from blocktui.engine.journal import Journal
from blocktui.engine.plan_book import PlanBook
from blocktui.engine.plan_intake import PlanIntake
from blocktui.engine.plan_runs import HostRunner
from blocktui.engine.plans import Plan, PlanStatus
from blocktui.engine.recovery import reattach_open
from blocktui.engine.session import Session

__all__ = ["GUARD_ENV", "Plan", "PlanStatus", "Planner", "guard_disabled_by_env"]

#: Environment switch for the guard: ``off`` disables it on every host.
GUARD_ENV = "BLOCKTUI_GUARD"


def guard_disabled_by_env() -> bool:
    """``BLOCKTUI_GUARD=off`` (or 0/no/false) turns the guard off."""
    return os.environ.get(GUARD_ENV, "").strip().lower() in {"off", "0", "no", "false"}


class Planner:
    """Runs plans over a ``Session``; call ``step`` in a loop (``Engine.polls`` does)."""

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
        self.clock = clock
        self.policies = HostPolicies(policy)
        self._guard_forced = False if guard is None and guard_disabled_by_env() else guard
        self.guard = GuardDriver(session, self.rule, clock)
        self.book = PlanBook(journal, self.guard.mark_end, clock)
        self.runner = HostRunner(
            session,
            self.book,
            self.guard,
            rule=self.rule,
            policy=self.policy,
            guarded=self.guarded,
            clock=clock,
        )
        self._pid = os.getpid()
        self.intake = PlanIntake(session, self.book, self._pid)
        # Each host's plan step in flight: steps of one host never overlap or pile up.
        self._stepping: dict[str, Future[None]] = {}

    # -- configuration ----------------------------------------------------------------------

    def policy(self, host: str) -> HostPolicy:
        """The queue and budget of ``host``."""
        return self.policies.get(host)

    def set_policy(self, policy: HostPolicy, host: str | None = None) -> None:
        """Change max-active and budget for one host (or all); speeds are re-divided at the next step."""
        self.policies.set(policy, host)
        self.session.wake()

    def guarded(self, host: str) -> bool:
        """Whether the safe-completion guard applies to ``host``."""
        if self._guard_forced is not None:
            return self._guard_forced
        # Host states alone: a snapshot would build every job's view, at every speed decision.
        info = next((h for h in self.session.host_states() if h.uri == host), None)
        return info is None or guard_needed(info.hypervisor)

    # -- plans ------------------------------------------------------------------------------

    def plans(self) -> list[Plan]:
        """Every plan, in queue order."""
        return self.book.plans()

    def plan(self, key: JobKey) -> Plan | None:
        """The plan on one disk."""
        return self.book.plan(key)

    def add_stream(
        self,
        key: JobKey,
        *,
        bandwidth: int = 0,
        base: str | None = None,
        chunk: int = 0,
        gap: float = 0.0,
        window: Window | None = None,
    ) -> Plan:
        """Queue a stream of ``key``; it starts at the next step when the host's queue allows.

        Args:
            window: copy only this part of the disk (see ``engine.windows``); the backing file stays.

        Raises:
            Conflict: the disk already has a plan or a job, or nothing to stream.
            NotFound: no such domain or disk.
        """
        check_gap(gap)
        work = partial(
            self.intake.stream, key, bandwidth=bandwidth, base=base, chunk=chunk, gap=gap, window=window
        )
        plan = self.session.call(key.host, work)
        self.session.wake()
        return plan

    def set_limit(self, key: JobKey, bandwidth: int) -> None:
        """Change a planned stream's own limit; the budget is re-divided at the next step."""
        self._on_host(key, self._set_limit, bandwidth)

    def _set_limit(self, key: JobKey, bandwidth: int) -> None:
        plan = self.book.require(key)
        plan.limit = bandwidth
        self.journal.update(plan.entry_id, bandwidth=bandwidth)

    def pause(self, key: JobKey) -> None:
        """Pause a stream: QMP holds the job in place; libvirt stops it at a checkpoint now."""
        self._on_host(key, self._pause)

    def _pause(self, key: JobKey) -> None:
        plan = self.plan(key) or self.intake.adopt(key)
        plan.pause_requested = True
        self.journal.update(plan.entry_id, pause_requested=1)
        if plan.status in (PlanStatus.QUEUED, PlanStatus.GAP):
            self.book.set_status(plan, PlanStatus.PAUSED)

    def resume(self, key: JobKey) -> None:
        """Carry a paused stream on (a new pull over what is present on libvirt)."""
        self._on_host(key, self._resume)

    def _resume(self, key: JobKey) -> None:
        plan = self.book.require(key)
        plan.pause_requested = False
        self.journal.update(plan.entry_id, pause_requested=0)
        if plan.status is PlanStatus.PAUSED and plan.size == 0 and plan.last_cur == 0:
            # Paused before it ever ran: back to its place in the queue, not ahead of it.
            self.book.set_status(plan, PlanStatus.QUEUED)
        elif plan.status is PlanStatus.PAUSED:
            plan.resume_at = self.clock()
            self.book.set_status(plan, PlanStatus.GAP)

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
            if not self.session.call(key.host, partial(self.runner.guard_has_say, key)):
                self.session.abort(key)
                return None
            plan = self.adopt(key)
        self.cancel(key)
        current = self.plan(key)
        return current if current is not None and current.status is not PlanStatus.DONE else None

    def set_speed(self, key: JobKey, bandwidth: int) -> None:
        """Re-throttle ``key``'s job: a plan's own limit, or a bare job's speed, never a guard's hold."""
        plan = self.plan(key)
        if plan is not None and plan.status is not PlanStatus.DONE:
            self.set_limit(key, bandwidth)
            return
        self.session.call(key.host, partial(self.runner.set_bare_speed, key, bandwidth))

    def others_guarded(self, key: JobKey) -> list[str]:
        """The other live jobs of ``key``'s domain, read now, when the guard applies to its host."""
        if not self.guarded(key.host):
            return []
        _own, others = self.session.call(key.host, partial(self.guard.read, key, self.clock()))
        return [job.disk for job in others]

    def _cancel(self, key: JobKey) -> None:
        plan = self.book.require(key)
        paused_in_place = (
            plan.status is not PlanStatus.QUEUED and self.session.backend(key.host).supports_pause
        )
        if plan.running or paused_in_place:
            if self.runner.guard_has_say(key):
                # Aborting ends the QEMU job: it waits for its turn like any end (see _end_job).
                plan.cancel_requested = True
                plan.note = "abort requested: it goes when no other job of the domain is ending"
                self.book.set_status(plan, PlanStatus.STOPPING)
                return
            with contextlib.suppress(NoJob):
                self.session.abort(key)
        elif plan.status is not PlanStatus.QUEUED:
            # Stopped at a checkpoint (libvirt): no job is left to abort, the row ends here.
            self.session.end_checkpoint(key, "cancelled at a checkpoint")
        self.book.finish(plan, JobState.CANCELLED, note="cancelled by the user")

    def adopt(self, key: JobKey) -> Plan:
        """Take charge of a job started elsewhere (so it can be paused, queued under the budget)."""
        return self.session.call(key.host, partial(self.intake.adopt, key))

    def _on_host(self, key: JobKey, action: Callable[..., None], *args: object) -> None:
        """Run one action on ``key``'s host worker (after the host's step in flight), then wake the loop."""
        self.session.call(key.host, partial(action, key, *args))
        self.session.wake()

    def reattach(self, timeout: float | None = None) -> list[Plan]:
        """Carry on the journal's open plans whose process is gone; return those taken over.

        Args:
            timeout: wait at most this long for the hosts (None: until each has answered); the
                plans of a host that answers later are taken over then, in its worker.
        """
        return reattach_open(self.session, self.book, pid=self._pid, clock=self.clock, timeout=timeout)

    # -- the loop ---------------------------------------------------------------------------

    def step(self) -> Snapshot:
        """Poll the hosts, then move every plan on; return the snapshot with chunk labels.

        Each host's plans move on in that host's worker; this waits for them as long as the
        session waits for a poll, so a host that stops answering delays only its own plans.
        """
        # A plan stops at boundaries and hands its end to the guard: its job is read every step.
        self.session.always_poll = {plan.key for plan in self.plans() if plan.running}
        snapshot = self.session.step()
        if self.session.showing_ends:
            # An end to show: to the screen first, plans move on at the step right after (at once).
            return self.snapshot(snapshot)
        started: list[Future[None]] = []
        for host in self.session.hosts:
            current = self._stepping.get(host)
            if self.runner.closing or not _connected(snapshot, host):
                continue
            if current is None or current.done():
                self._stepping[host] = self.session.submit(host, partial(self.runner.step_host, host))
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
        for view in base.jobs:
            plan = self.book.plan(view.key)
            chunks = plan.chunks() if plan is not None else None
            if plan is not None and chunks is not None and not view.state.is_final:
                jobs.append(replace(view, chunk=chunks.label(view.cur)))
            else:
                jobs.append(view)
        return Snapshot(hosts=base.hosts, domains=base.domains, jobs=tuple(jobs))

    def poll_interval(self) -> float:
        """How long to wait before the next step: short near boundaries and guarded ends."""
        return self.runner.poll_interval(self.plans())

    def idle(self) -> bool:
        """No plan is left to drive (all done, or paused by the user)."""
        return all(p.status in (PlanStatus.DONE, PlanStatus.PAUSED) for p in self.plans())

    def close(self, timeout: float | None = None) -> None:
        """Leave the plans to whoever starts next; running jobs keep running (guard holds are lifted).

        Args:
            timeout: wait at most this long for the hosts; a host that does not answer keeps its
                plans' jobs as they are (the next blocktui takes them over).
        """
        self.runner.closing = True
        hosts = {plan.key.host for plan in self.plans()}
        wait_for(
            [self.session.submit(host, partial(self.runner.close_host, host)) for host in hosts], timeout
        )


def _connected(snapshot: Snapshot, host: str) -> bool:
    return any(h.uri == host and h.state is ConnectionState.CONNECTED for h in snapshot.hosts)
