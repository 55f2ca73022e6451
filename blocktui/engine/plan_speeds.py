"""The speed each running plan gets on its host: budget share, taper to a boundary, the guard's say.

The speed set is the smallest of the stream's own limit, its share of the host budget, the taper
before a chunk boundary, and what the completion guard allows; the limit and the share are
raised by what QEMU's limiter is measured to fall short of them (``core.throttle``). Speeds are
lowered before others are raised, so the sum on a host never passes its budget on the way.
"""

from __future__ import annotations

from collections.abc import Callable

from blocktui.core.chunks import approach_speed
from blocktui.core.errors import BlocktuiError, NoJob
from blocktui.core.guard import GuardRule, Mark, Verdict, marked
from blocktui.core.model import JobKey, JobState
from blocktui.core.scheduler import HostPolicy, divide_budget
from blocktui.core.throttle import RateTrim
from blocktui.core.views import HostJobs, JobView
from blocktui.engine.guarding import GuardDriver, domain_job
from blocktui.engine.plan_book import PlanBook
from blocktui.engine.plans import Plan, PlanStatus
from blocktui.engine.session import Session


class SpeedKeeper:
    """Sets the speeds of one planner's running plans; every method runs in the host's worker."""

    def __init__(
        self,
        session: Session,
        book: PlanBook,
        guard: GuardDriver,
        *,
        rule: GuardRule,
        policy: Callable[[str], HostPolicy],
        guarded: Callable[[str], bool],
    ) -> None:
        self.session = session
        self.book = book
        self.guard = guard
        self.rule = rule
        self.policy = policy
        self.guarded = guarded
        self._trims: dict[JobKey, RateTrim] = {}

    def start_speed(self, plan: Plan) -> int:
        """A safe first speed: its budget share, tapered to the first boundary when there is one."""
        share = self.shares(plan.key.host, joining=plan.key).get(plan.key, plan.limit)
        chunks = plan.chunks()
        if chunks is None and plan.chunk > 0:
            # Size not known yet: assume the first boundary is one chunk away.
            return approach_speed(plan.chunk - plan.last_cur, share)
        boundary = plan.next_boundary(plan.last_cur)
        if boundary is not None:
            return approach_speed(boundary - plan.last_cur, share)
        return share

    def shares(self, host: str, joining: JobKey | None = None) -> dict[JobKey, int]:
        """Each active plan's share of the host budget (with ``joining`` counted as active)."""
        limits = {
            p.key: p.limit
            for p in self.book.host_plans(host)
            if p.status is PlanStatus.ACTIVE or p.key == joining
        }
        return divide_budget(limits, self.policy(host).budget)

    def make_room(self, plan: Plan) -> None:
        """Lower the running streams to their shares with ``plan`` counted, before it starts."""
        shares = self.shares(plan.key.host, joining=plan.key)
        for other in self.book.host_plans(plan.key.host):
            if other is plan or other.status is not PlanStatus.ACTIVE or other.applied is None:
                continue
            share = shares.get(other.key, other.limit)
            if GuardDriver.followed(other.applied):
                continue  # the guard sets its speed, never above its share
            if _faster(other.applied or 0, share):
                self.set(other, marked(share, Mark.PLAIN) if self.guarded(plan.key.host) else share)

    def apply(self, host: str, jobs: HostJobs, now: float) -> None:
        """Set every running plan's speed: share, taper before a boundary, the guard's say."""
        shares = self.shares(host)
        guarded = self.guarded(host)
        wanted: list[tuple[Plan, int]] = []
        for plan in self.book.host_plans(host):
            if plan.status is not PlanStatus.ACTIVE:
                continue
            view = jobs.views.get(plan.key)
            if view is None or view.state is not JobState.ACTIVE:
                continue
            trim = self._trims.setdefault(plan.key, RateTrim())
            trim.observe(now, view.cur, plan.applied or 0)
            # What QEMU's limiter delivers of it is learnt and made up (core/throttle.py).
            speed = trim.speed(shares.get(plan.key, plan.limit))
            if plan.boundary is not None:
                speed = approach_speed(plan.boundary - view.cur, speed)
            if guarded:
                speed = self.guarded_speed(plan, view, jobs, speed, now)
            wanted.append((plan, speed))
        running = {plan.key for plan, _speed in wanted}
        for key in [k for k in self._trims if k.host == host and k not in running]:
            del self._trims[key]
        # Slow down before speeding up, so the sum on the host never passes the budget on the way.
        for plan, speed in sorted(wanted, key=lambda item: not _faster(item[0].applied or 0, item[1])):
            self.set(plan, speed)

    def guarded_speed(self, plan: Plan, view: JobView, jobs: HostJobs, speed: int, now: float) -> int:
        """The speed the guard allows a running job whose own would be ``speed``."""
        must_look = plan.going or GuardDriver.followed(plan.applied) or self.rule.in_zone(domain_job(view))
        if not must_look and not self.guard.contended(jobs, plan.key, now):
            return marked(speed, Mark.PLAIN)
        decision = self.guard.decide(plan.key, share=speed, now=now, going=plan.going)
        if decision is None:
            return plan.applied or speed  # gone: the next poll tells how it ended
        plan.note = decision.reason
        plan.going = decision.verdict is Verdict.GO
        return decision.speed

    def set(self, plan: Plan, speed: int) -> None:
        """Set ``plan``'s job to ``speed`` unless it runs at it; a host's refusal becomes its note."""
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


def _faster(current: int, wanted: int) -> bool:
    """Whether ``current`` is faster than ``wanted`` (0 means unlimited, the fastest)."""
    if current == wanted:
        return False
    if current <= 0:
        return True
    return wanted > 0 and current > wanted
