"""The planner's side of the completion guard: fresh reads of a domain's jobs and the ends seen.

``core.guard.decide`` is the rule; this keeps what it needs per domain (when a job of it was last
seen ending, the order of its disks) and reads the domain's jobs from the host right before each
decision, in the host's worker, after this process's own last speed change landed there.
"""

from __future__ import annotations

from collections.abc import Callable

from blocktui.core.errors import BlocktuiError
from blocktui.core.guard import Decision, DomainJob, GuardRule, Mark, decide, mark_of
from blocktui.core.model import JobKey
from blocktui.core.views import HostJobs, JobView
from blocktui.engine.session import Session

DomainKey = tuple[str, str]


def domain_job(view: JobView) -> DomainJob:
    """A job as the guard sees it, from the session's view."""
    return DomainJob(view.key.disk, view.state, view.remaining, view.bandwidth, view.rate)


class GuardDriver:
    """Per-domain memory of the guard, and the decisions that read the host fresh."""

    def __init__(self, session: Session, rule: GuardRule, clock: Callable[[], float]) -> None:
        self.session = session
        self.rule = rule
        self._clock = clock
        self._watched: dict[DomainKey, float] = {}
        self._in_session: dict[DomainKey, set[str]] = {}
        self._on_host: dict[DomainKey, set[str]] = {}
        self._last_end: dict[DomainKey, float] = {}
        self._ended: dict[DomainKey, str] = {}  # the disk whose job ended last

    # -- ends seen ----------------------------------------------------------------------------

    def note_live(self, host: str, jobs: HostJobs, now: float) -> None:
        """Remember the live jobs of ``host``'s domains, as the session has them; a job that went
        counts as ending."""
        current: dict[DomainKey, set[str]] = {}
        for key in jobs.live:
            current.setdefault((host, key.domain), set()).add(key.disk)
        for domain in [d for d in self._in_session if d[0] == host]:
            self._note(self._in_session, domain, current.pop(domain, set()), now)
        for domain, disks in current.items():
            self._note(self._in_session, domain, disks, now)

    def _note(
        self, seen: dict[DomainKey, set[str]], domain: DomainKey, present: set[str], now: float
    ) -> None:
        """Compare with the jobs seen last time from the same source (the session's view of a job
        stopped at a checkpoint outlives the job, so the session's jobs and host reads are kept apart)."""
        self._watched.setdefault(domain, now)
        if gone := seen.get(domain, set()) - present:
            self._last_end[domain] = now
            self._ended[domain] = min(gone)
        if present:
            seen[domain] = present
        else:
            seen.pop(domain, None)

    def other_end_seen(self, key: JobKey, now: float) -> float | None:
        """Seconds since this process saw another disk's job of the domain end; None if it did not."""
        domain = (key.host, key.domain)
        last = self._last_end.get(domain)
        return None if last is None or self._ended.get(domain) == key.disk else now - last

    def mark_end(self, key: JobKey, now: float) -> None:
        """This process just ended a job of ``key``'s domain (or saw one end)."""
        self._last_end[(key.host, key.domain)] = now
        self._ended[(key.host, key.domain)] = key.disk

    def since_end(self, key: JobKey, now: float) -> float:
        """Seconds since a job of the domain was last seen ending, or since this process watches it.

        A job that ended before this process looked is unseen: a domain watched for less than the
        settle time counts as settling.
        """
        domain = (key.host, key.domain)
        return now - self._last_end.get(domain, self._watched.get(domain, now))

    # -- reading the domain ---------------------------------------------------------------------

    def contended(self, jobs: HostJobs, key: JobKey, now: float) -> bool:
        """Whether the guard has a say: another live job of the domain, or one ended just now."""
        return jobs.others_live(key) or self.since_end(key, now) < self.rule.settle

    def targets(self, key: JobKey) -> list[str]:
        """The domain's disk names, sorted (a disk's place in it is its slot)."""
        names = {
            disk.target
            for domain in self.session.domains()
            if domain.host == key.host and domain.name == key.domain
            for disk in domain.disks
        }
        return sorted(names | {key.disk})

    def read(self, key: JobKey, now: float) -> tuple[DomainJob | None, list[DomainJob]]:
        """Every job of ``key``'s domain read from the host now: (own or None, others)."""
        backend = self.session.backend(key.host)
        own: DomainJob | None = None
        others: list[DomainJob] = []
        targets = self.targets(key)
        views = self.session.host_jobs(key.host, {JobKey(key.host, key.domain, t) for t in targets}).views
        rates = {k.disk: v.rate for k, v in views.items()}
        for target in targets:
            try:
                job = backend.job_info(key.domain, target)
            except BlocktuiError:
                continue
            if job is None or job.state.is_final:
                continue
            observed = DomainJob(target, job.state, job.end - job.cur, job.bandwidth, rates.get(target))
            if target == key.disk:
                own = observed
            else:
                others.append(observed)
        present = {job.disk for job in others} | ({own.disk} if own is not None else set())
        self._note(self._on_host, (key.host, key.domain), present, now)
        return own, others

    def decide(
        self, key: JobKey, *, share: int, now: float, wants_end: bool = False, going: bool = False
    ) -> Decision | None:
        """The rule applied to a fresh read of the domain; None when ``key`` has no job any more."""
        own, others = self.read(key, now)
        if own is None:
            return None
        targets = self.targets(key)
        return decide(
            own,
            others,
            rule=self.rule,
            share=share,
            slot=targets.index(key.disk),
            wants_end=wants_end,
            going=going,
            since_end=self.since_end(key, now),
        )

    def hand_back(self, key: JobKey, remaining: int, limit: int) -> int:
        """The speed a followed job is left at when this process lets go of it.

        Held, its end comes by itself after the disk's hold promise: the domain's disks end at
        different times, none ends sooner than its promise, and none is left at a crawl forever.
        """
        slot = self.targets(key).index(key.disk)
        return self.rule.promise(remaining, self.rule.hold_seconds(slot), limit, Mark.HOLD)

    @staticmethod
    def followed(bandwidth: int | None) -> bool:
        """Whether a speed this process set carries a guard mark."""
        return bandwidth is not None and mark_of(bandwidth) is not Mark.PLAIN
