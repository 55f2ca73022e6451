"""What the engine changes: each request goes to a plan or a bare job, as the engine decides."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from blocktui.core.errors import Conflict, NoJob
from blocktui.core.guard import Mark, marked
from blocktui.core.model import JobKey, JobState
from blocktui.core.preflight import Preflight
from blocktui.core.processes import pid_alive
from blocktui.core.scheduler import HostPolicy
from blocktui.core.text import visible
from blocktui.core.windows import Window
from blocktui.engine.journal import Entry
from blocktui.engine.plan_runs import LAUNCH_SPEED
from blocktui.engine.planner import Plan, PlanStatus
from blocktui.engine.preflight import estimate

if TYPE_CHECKING:
    from blocktui.engine.journal import Journal
    from blocktui.engine.planner import Planner
    from blocktui.engine.session import Session


class EngineActions:
    """The changes a front end asks for (part of ``Engine``)."""

    session: Session

    @property
    def planner(self) -> Planner:
        raise NotImplementedError

    @property
    def journal(self) -> Journal:
        raise NotImplementedError

    # -- plans ------------------------------------------------------------------------------

    def plans(self) -> list[Plan]:
        """Every plan, in queue order."""
        return self.planner.plans()

    def plan(self, key: JobKey) -> Plan | None:
        """The plan on one disk, if any."""
        return self.planner.plan(key)

    def idle(self) -> bool:
        """No plan is left to drive (all done, or paused by the user)."""
        return self.planner.idle()

    def policy(self, host: str) -> HostPolicy:
        """The queue and budget of ``host``."""
        return self.planner.policy(host)

    def set_policy(self, policy: HostPolicy, host: str | None = None) -> None:
        """Change max-active and budget for one host (or all)."""
        self.planner.set_policy(policy, host)

    def guarded(self, host: str) -> bool:
        """Whether the safe-completion guard applies to ``host``."""
        return self.planner.guarded(host)

    def reattach(self, timeout: float | None = None) -> list[Plan]:
        """Carry on the journal's open plans whose process is gone; return those taken over."""
        return self.planner.reattach(timeout=timeout)

    # -- streams ----------------------------------------------------------------------------

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
        """Queue a planned stream (chunks, budget, guard); it starts when the host's queue allows.

        Args:
            window: copy only this part of the disk; the backing file stays (see ``engine.windows``).
        """
        return self.planner.add_stream(
            key, bandwidth=bandwidth, base=base, chunk=chunk, gap=gap, window=window
        )

    def start_unwatched(self, key: JobKey, *, bandwidth: int = 0, base: str | None = None) -> Plan | None:
        """Start a stream nobody will watch to its end; return a plan when it must be watched after all.

        Where the guard applies the job starts held (see ``plan_runs``) and is let go at its own
        limit once a read taken after the start shows it alone. If another job of the domain
        started at the same moment, the stream becomes a plan (returned): its end needs a guard.

        Raises:
            Conflict: another job of the domain runs where the guard applies.
        """
        planner = self.planner
        where = f"{visible(key.domain)}/{visible(key.disk)}"
        if busy := planner.others_guarded(key):
            raise Conflict(
                f"{where}: {visible(key.domain)} has another block job ({', '.join(map(visible, busy))}); "
                "a stream nobody watches could end with it and crash QEMU before 10.2: "
                "use --wait (blocktui then guards both ends), or --no-guard on QEMU 10.2 or later"
            )
        guarded = planner.guarded(key.host)
        start = marked(min(bandwidth or LAUNCH_SPEED, LAUNCH_SPEED), Mark.HOLD) if guarded else bandwidth
        self.session.start_stream(key.host, key.domain, key.disk, bandwidth=start, base=base)
        if planner.others_guarded(key):
            plan = planner.adopt(key)
            planner.set_limit(key, bandwidth)
            return plan
        if guarded:
            self.session.set_speed(key, bandwidth)
        return None

    def set_speed(self, key: JobKey, bandwidth: int) -> None:
        """Re-throttle a job: a plan's limit, or a bare job's speed (never a guard's hold)."""
        self.planner.set_speed(key, bandwidth)

    def abort(self, key: JobKey) -> Plan | None:
        """Abort a job, planned or not; returns the plan when the abort waits for the guard's turn."""
        return self.planner.abort(key)

    def cancel(self, key: JobKey) -> None:
        """Drop a plan; a running job is aborted."""
        self.planner.cancel(key)

    def preflight(self, key: JobKey, *, bandwidth: int = 0, base: str | None = None) -> Preflight:
        """What streaming ``key`` would copy, how long at ``bandwidth``, and whether it fits (a host call)."""
        budget = self.planner.policy(key.host).budget
        active = sum(1 for p in self.plans() if p.key.host == key.host and p.running)
        share = budget // (active + 1) if budget else 0
        if share and bandwidth:
            share = min(share, bandwidth)
        return estimate(self.session, key, limit=bandwidth, base=base, share=share)

    # -- pause and resume -------------------------------------------------------------------

    def pause(self, key: JobKey) -> None:
        """Pause a stream: held in place where the host can, stopped at a checkpoint otherwise."""
        self.planner.pause(key)

    def resume(self, key: JobKey) -> None:
        """Carry a paused stream on: a plan's, or a bare job someone paused in place.

        Raises:
            NoJob: nothing on ``key`` is paused.
        """
        if self.plan(key) is not None:
            self.planner.resume(key)
            return
        view = self.session.job(key)
        if view is None or view.state is not JobState.PAUSED:
            raise NoJob(f"{visible(key.domain)}/{visible(key.disk)} has no paused stream")
        self.session.resume(key)

    def resumes(self, key: JobKey) -> bool:
        """Whether ``toggle_pause`` would resume (what is paused, or about to pause) or pause."""
        plan = self.plan(key)
        if plan is not None and plan.status is not PlanStatus.DONE:
            return plan.pause_requested or plan.status is PlanStatus.PAUSED
        view = self.session.job(key)
        return view is not None and view.state is JobState.PAUSED

    def toggle_pause(self, key: JobKey) -> None:
        """Resume what is paused; pause anything else (a running bare job becomes a plan)."""
        if self.resumes(key):
            self.resume(key)
        else:
            self.pause(key)

    def driven_elsewhere(self, key: JobKey) -> Entry | None:
        """The open plan on ``key`` that another live blocktui process drives, if any."""
        for entry in self.journal.open_entries(key.host):
            if (entry.domain, entry.disk, entry.origin) != (key.domain, key.disk, "planned"):
                continue
            if entry.owner not in (None, os.getpid()) and pid_alive(entry.owner):
                return entry
        return None

    def ask_owner(self, entry: Entry, *, pause: bool) -> None:
        """Ask the process driving ``entry`` to pause or resume it (through the journal)."""
        self.journal.update(entry.id, pause_requested=1 if pause else 0)

    # -- the table --------------------------------------------------------------------------

    def clear_finished(self) -> None:
        """Forget every finished job (and show it at once)."""
        self.session.clear_finished()
        self.session.wake()

    def refresh_domains(self) -> None:
        """Re-read domains, disks and chains from every host."""
        self.session.refresh_domains()
        self.session.wake()
