"""What the poll worker hands the screen: the planner's snapshot, its plans and each host's policy.

``read_board`` runs in the poll worker (it takes the planner's lock); the screen only reads the
frozen ``Board``, so a planner busy with a hung host never blocks the UI thread. ``live_board``
freshens the last board from the session alone (no planner, no host call) while a step is late.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from blocktui.core.chunks import ChunkPlan
from blocktui.core.model import JobKey, JobKind, JobState
from blocktui.core.scheduler import HostPolicy
from blocktui.core.views import JobView, Snapshot
from blocktui.engine import Engine, Plan, PlanStatus


@dataclass(frozen=True, slots=True)
class PlanInfo:
    """One open plan, frozen for the screen.

    Attributes:
        limit: the stream's own limit in bytes/s (0 = unlimited); the host may run it slower
            (budget share, taper before a boundary, the guard).
        chunk: the chunk size in bytes, 0 for a plain stream.
        checkpoints: boundaries this plan has stopped at so far.
        checkpoint_pause: pausing stops the job at a checkpoint (the backend cannot hold it).
        note: the planner's latest remark (the guard's reason, a host error it will retry).
    """

    status: PlanStatus
    limit: int
    chunk: int
    gap: float
    checkpoints: int
    pause_requested: bool
    checkpoint_pause: bool
    note: str = ""


@dataclass(frozen=True, slots=True)
class HostPlan:
    """A host's queue and budget as the header shows them; ``guarded`` is None until known."""

    max_active: int | None
    budget: int
    guarded: bool | None = None

    @property
    def policy(self) -> HostPolicy:
        """The scheduler's policy with these limits."""
        return HostPolicy(max_active=self.max_active, budget=self.budget)


@dataclass(frozen=True, slots=True)
class Board:
    """Everything the main screen shows after one poll."""

    snapshot: Snapshot
    plans: Mapping[JobKey, PlanInfo] = field(default_factory=dict)
    policies: Mapping[str, HostPlan] = field(default_factory=dict)


def plan_info(engine: Engine, plan: Plan) -> PlanInfo:
    """Freeze one plan (capability flags are plain attributes: no host call)."""
    pauses = engine.supports(plan.key.host, "supports_pause")
    return PlanInfo(
        status=plan.status,
        limit=plan.limit,
        chunk=plan.chunk,
        gap=plan.gap,
        checkpoints=len(plan.overshoots),
        pause_requested=plan.pause_requested,
        checkpoint_pause=not pauses,
        note=plan.note,
    )


def host_plans(engine: Engine, *, guard: bool) -> dict[str, HostPlan]:
    """Every host's policy; ``guard`` also asks whether the guard applies (poll worker only)."""
    plans: dict[str, HostPlan] = {}
    for host in engine.hosts:
        policy = engine.policy(host)
        plans[host] = HostPlan(policy.max_active, policy.budget, engine.guarded(host) if guard else None)
    return plans


def _waiting_row(plan: Plan) -> JobView:
    """A row for a plan with no job on the host: queued, or paused before (or between) runs."""
    state = JobState.QUEUED if plan.status is PlanStatus.QUEUED else JobState.PAUSED
    size = plan.size
    done = min(plan.last_cur, size) if size else plan.last_cur
    chunk = ChunkPlan(size, plan.chunk).label(done) if plan.chunk > 0 and size > 0 else None
    return JobView(
        key=plan.key,
        kind=JobKind.PULL,
        state=state,
        cur=done,
        end=size,
        remaining=max(0, size - done),
        fraction=done / size if size else 0.0,
        rate=None,
        eta=None,
        elapsed=0.0,
        bandwidth=plan.limit,
        error=None,
        note="",
        history=(),
        chunk=chunk,
    )


def read_board(engine: Engine, snapshot: Snapshot) -> Board:
    """Merge the engine's plans into ``snapshot``: queued plans become rows (poll worker only)."""
    plans = [p for p in engine.plans() if p.status is not PlanStatus.DONE]
    views = {view.key: view for view in snapshot.jobs}
    jobs: list[JobView] = []
    waiting = {
        plan.key: _waiting_row(plan)
        for plan in plans
        if plan.key not in views or views[plan.key].state.is_final
    }
    # A queued plan replaces an older finished row of its disk, in place.
    jobs = [waiting.pop(view.key, view) for view in snapshot.jobs]
    jobs.extend(waiting.values())
    return Board(
        snapshot=Snapshot(hosts=snapshot.hosts, domains=snapshot.domains, jobs=tuple(jobs)),
        plans={plan.key: plan_info(engine, plan) for plan in plans},
        policies=host_plans(engine, guard=True),
    )


def live_board(last: Board, live: Snapshot) -> Board:
    """``last`` with the session's ``live`` hosts and the progress of jobs still running in both.

    For the screen while a step is late (it waits, a second or two, for a host that has just
    stopped answering): that host's mark and the other hosts' moving rows need no planner. Rows
    that ended, or are new, wait for the next board, which the planner has seen.
    """
    running = {view.key: view for view in live.jobs if not view.state.is_final}
    jobs = tuple(
        replace(running[view.key], chunk=view.chunk)
        if view.key in running and not view.state.is_final
        else view
        for view in last.snapshot.jobs
    )
    snapshot = Snapshot(hosts=live.hosts, domains=last.snapshot.domains, jobs=jobs)
    return Board(snapshot=snapshot, plans=last.plans, policies=last.policies)
