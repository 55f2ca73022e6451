"""The table of plans and their journal rows: the one place a plan's status, end or checkpoint is written."""

from __future__ import annotations

import threading
from collections.abc import Callable

from blocktui.core.errors import NoJob
from blocktui.core.identity import DiskIdentity
from blocktui.core.model import Disk, JobKey, JobKind, JobState
from blocktui.core.windows import Window
from blocktui.engine.journal import Journal
from blocktui.engine.plans import Plan, PlanStatus


class PlanBook:
    """Plans by disk, in queue order; the lock guards the table only, never a host call."""

    def __init__(
        self, journal: Journal, ended: Callable[[JobKey, float], None], clock: Callable[[], float]
    ) -> None:
        """Args: ended: told when a plan's job ended (the guard counts it as an end)."""
        self.journal = journal
        self._ended = ended
        self._clock = clock
        self._lock = threading.RLock()
        self._plans: dict[JobKey, Plan] = {}
        self._last_sync: dict[str, float] = {}

    def plans(self) -> list[Plan]:
        """Every plan, in queue order."""
        with self._lock:
            return list(self._plans.values())

    def plan(self, key: JobKey) -> Plan | None:
        """The plan on one disk."""
        with self._lock:
            return self._plans.get(key)

    def put(self, plan: Plan) -> None:
        """Add (or replace) the plan on its disk."""
        with self._lock:
            self._plans[plan.key] = plan

    def new_plan(
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
        owner: int,
        identity: DiskIdentity | None,
        window: Window | None = None,
        by_filter: bool = False,
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
            owner=owner,
            identity=identity,
            window=window,
        )
        plan = Plan(
            entry_id, key, bandwidth, base, chunk, gap, chain, status=status, size=size,
            window=window, by_filter=by_filter,
        )  # fmt: skip
        self.put(plan)
        return plan

    def host_plans(self, host: str) -> list[Plan]:
        with self._lock:
            return [p for p in self._plans.values() if p.key.host == host]

    def require(self, key: JobKey) -> Plan:
        plan = self.plan(key)
        if plan is None or plan.status is PlanStatus.DONE:
            raise NoJob(f"{key.domain}/{key.disk} has no stream plan")
        return plan

    def set_status(self, plan: Plan, status: PlanStatus) -> None:
        if plan.status is status:
            return
        plan.status = status
        self.journal.update(plan.entry_id, status=status.value, note=plan.note)

    def finish(
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
            self.record_checkpoint(plan, plan.size, plan.size)
        self.journal.finish(plan.entry_id, state.value, bytes_done=done, error=error, note=note)
        self._ended(plan.key, self._clock())

    def record_checkpoint(self, plan: Plan, boundary: int, offset: int) -> None:
        """The one place a checkpoint is written: each boundary once, in ascending order."""
        point = self.journal.add_checkpoint(plan.entry_id, boundary=boundary, offset=offset)
        plan.overshoots.append(point.overshoot)
        plan.checkpointed = boundary

    def sync_requests(self, host: str, now: float) -> None:
        """Pick up pause/resume asked by another blocktui process through the journal."""
        if now - self._last_sync.get(host, float("-inf")) < 0.5:
            return
        self._last_sync[host] = now
        for plan in self.host_plans(host):
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
                    self.set_status(plan, PlanStatus.PAUSED)
            elif not entry.pause_requested and plan.pause_requested:
                plan.pause_requested = False
                if plan.status is PlanStatus.PAUSED:
                    plan.resume_at = now
                    self.set_status(plan, PlanStatus.GAP)
