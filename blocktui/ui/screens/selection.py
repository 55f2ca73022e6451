"""The last board the main screen showed, indexed by key, and what the user points at in it."""

from __future__ import annotations

from dataclasses import dataclass

from blocktui.core.model import Disk, Domain, HostInfo, JobKey
from blocktui.core.views import JobView, Snapshot
from blocktui.ui.board import Board, HostPlan, PlanInfo
from blocktui.ui.format import host_labels
from blocktui.ui.widgets.domain_tree import Place, matches


@dataclass(frozen=True)
class Selection:
    """What the user is pointing at, resolved against the latest snapshot."""

    host: str | None = None
    domain: Domain | None = None
    disk: Disk | None = None
    job: JobView | None = None
    plan: PlanInfo | None = None

    @property
    def limit(self) -> int:
        """The limit the user set: a plan's own (the host may run it slower), else the job's."""
        if self.plan is not None:
            return self.plan.limit
        return self.job.bandwidth if self.job is not None else 0


class BoardState:
    """The latest board, kept by host, domain and job for the lookups every key and repaint make."""

    def __init__(self, policies: dict[str, HostPlan]) -> None:
        """Start empty.

        Args:
            policies: each host's queue and budget as given at start, shown until the first poll.
        """
        self.snapshot = Snapshot(hosts=(), domains=(), jobs=())
        self.plans: dict[JobKey, PlanInfo] = {}
        self.policies = policies
        self.labels: dict[str, str] = {}
        self.jobs: dict[JobKey, JobView] = {}
        self.domains: dict[tuple[str, str], Domain] = {}
        self.hosts: dict[str, HostInfo] = {}

    def take(self, board: Board) -> None:
        """Keep this board (policies stay as they were if the board has none)."""
        snapshot = board.snapshot
        self.snapshot = snapshot
        self.plans = dict(board.plans)
        self.policies = dict(board.policies) or self.policies
        self.labels = host_labels([h.uri for h in snapshot.hosts])
        self.hosts = {h.uri: h for h in snapshot.hosts}
        self.jobs = {job.key: job for job in snapshot.jobs}
        self.domains = {(d.host, d.name): d for d in snapshot.domains}

    def at_place(self, place: Place | None) -> Selection:
        """What a node of the domain tree points at."""
        if place is None:
            return Selection()
        domain = self.domains.get((place.host, place.domain or ""))
        disk = domain.disk(place.disk) if domain is not None and place.disk else None
        key = JobKey(place.host, place.domain or "", place.disk or "")
        return Selection(place.host, domain, disk, self.jobs.get(key), self.plans.get(key))

    def at_job(self, key: JobKey | None) -> Selection:
        """What a row of the jobs table points at."""
        if key is None:
            return Selection()
        domain = self.domains.get((key.host, key.domain))
        disk = domain.disk(key.disk) if domain is not None else None
        return Selection(key.host, domain, disk, self.jobs.get(key), self.plans.get(key))

    def shown_jobs(self, needle: str) -> list[JobView]:
        """The jobs the filter lets through (all of them when it is empty)."""
        return [
            job
            for job in self.snapshot.jobs
            if not needle
            or matches(needle, self.labels.get(job.key.host), *job.key, job.state.value, job.kind.value)
        ]

    def streamable(self, domain: Domain | None) -> list[Disk]:
        """The domain's disks with a chain to stream and no job or plan on them."""
        if domain is None:
            return []
        busy = {key for key, job in self.jobs.items() if not job.state.is_final} | set(self.plans)
        return [
            disk
            for disk in domain.disks
            if disk.has_backing and JobKey(domain.host, domain.name, disk.target) not in busy
        ]

    def running_jobs(self) -> int:
        """How many jobs are still running."""
        return sum(1 for job in self.jobs.values() if not job.state.is_final)
