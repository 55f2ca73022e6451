"""``Engine``: the one door from a front end to the hosts, for reading and for every change.

The dashboard and the CLI hold an ``Engine`` and nothing below it. It owns the session (the hosts
and their polls), the planner (plans, queue, budget, guard) and the journal, decides for each
request whether a plan or a bare job takes it, and runs the one poll loop (``polls``). The
planner and its journal are made on first use, so a command that only reads (``ls``, ``jobs``)
never opens the journal.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from blocktui.core.allocation import DiskMap
from blocktui.core.errors import BlocktuiError, HostError
from blocktui.core.model import BlockJob, ConnectionState, Disk, Domain, HostInfo, JobKey
from blocktui.core.scheduler import HostPolicy
from blocktui.core.views import JobView, Snapshot
from blocktui.engine.disk_map import read_disk_map
from blocktui.engine.engine_actions import EngineActions
from blocktui.engine.journal import Journal
from blocktui.engine.lookup import find_disk_key, find_domain
from blocktui.engine.planner import Planner
from blocktui.engine.session import Session

if TYPE_CHECKING:
    from blocktui.core.guard import GuardRule


class Engine(EngineActions):
    """Hosts, plans and the journal behind one interface; any thread may call it.

    Host calls run on each host's worker thread (never on the caller's lock), so a front end
    calls these from its own worker threads, never from a UI thread.
    """

    def __init__(
        self,
        session: Session,
        journal: Journal | Callable[[], Journal] | None = None,
        *,
        policy: HostPolicy | None = None,
        guard: bool | None = None,
        rule: GuardRule | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Create the engine over a session that may not be open yet.

        Args:
            journal: the journal (the caller closes it), or how to make it when it is first
                needed (default: the default journal file; ``close`` closes what it made).
            policy: the queue and budget of every host.
            guard: force the guard on or off; None applies it where the QEMU version needs it.
            clock: the plans' monotonic clock (tests move it by hand).
        """
        self.session = session
        self._journal_source = journal
        self._policy = policy
        self._guard = guard
        self._rule = rule
        self._clock = clock
        self._planner: Planner | None = None
        self._made = threading.Lock()  # making the planner, once
        self._sources: dict[JobKey, str] = {}  # each disk's top image, for maps while QMP hides it

    # -- parts ------------------------------------------------------------------------------

    @property
    def planner(self) -> Planner:
        """The planner (made, with its journal, on first use)."""
        with self._made:
            if self._planner is None:
                source = self._journal_source
                journal = source if isinstance(source, Journal) else (source or Journal)()
                self._planner = Planner(
                    self.session,
                    journal,
                    policy=self._policy,
                    guard=self._guard,
                    rule=self._rule,
                    clock=self._clock,
                )
            return self._planner

    @property
    def journal(self) -> Journal:
        """Where every job blocktui started or saw is recorded, with how it ended."""
        return self.planner.journal

    # -- hosts ------------------------------------------------------------------------------

    @property
    def hosts(self) -> list[str]:
        """Every host's URI (or QMP label), in the order given."""
        return self.session.hosts

    @property
    def readonly(self) -> bool:
        """Whether this engine may change nothing."""
        return self.session.readonly

    def supports(self, host: str, flag: str) -> bool:
        """Whether a host's backend has a capability flag (``supports_pause``); False if unknown."""
        # Capability flags are plain attributes: reading one never calls the host.
        try:
            return bool(getattr(self.session.backend(host), flag))
        except BlocktuiError:
            return False

    def open(self, timeout: float | None = None) -> None:
        """Connect every host (waiting at most ``timeout``; slower ones join when they answer)."""
        self.session.open(timeout=timeout)

    def connect(self) -> None:
        """Connect every host; with a single host, one that cannot be reached is an error."""
        self.session.open()
        hosts = self.session.host_states()
        for info in hosts:
            if info.state is not ConnectionState.CONNECTED and len(hosts) == 1:
                raise HostError(info.message or f"cannot connect to {info.uri}")

    def close(self, timeout: float | None = None) -> None:
        """Hand the plans on to the next blocktui, close the journal and the hosts; jobs go on.

        Args:
            timeout: wait at most this long for the hosts to take the plans back.
        """
        try:
            if self._planner is not None:
                self._planner.close(timeout=timeout)
        finally:
            # A journal handed in belongs to the caller; one made here is closed here.
            if self._planner is not None and not isinstance(self._journal_source, Journal):
                self._planner.journal.close()
            self.session.close()

    # -- reading ----------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """Hosts, domains and jobs as last polled, with the chunk of each planned job."""
        return self.planner.snapshot() if self._planner is not None else self.session.snapshot()

    def live_snapshot(self) -> Snapshot:
        """The session's latest state without asking the planner (never waits for a host step)."""
        return self.session.snapshot()

    def host_states(self) -> tuple[HostInfo, ...]:
        """Each host's connection state, as last seen."""
        return self.session.host_states()

    def domains(self) -> list[Domain]:
        """Every domain on every host, read now."""
        return self.session.domains()

    def list_jobs(self) -> list[BlockJob]:
        """Every block job on every host, read now."""
        return self.session.list_jobs()

    def job(self, key: JobKey) -> JobView | None:
        """The latest view of the job on ``key``."""
        return self.session.job(key)

    def find_domain(self, name: str, host: str | None = None) -> Domain:
        """The one domain called ``name`` on any host, or on ``host`` (a URI or a host's name).

        Raises:
            NotFound: no such domain (or host). Conflict: several hosts have it.
        """
        return find_domain(self.session, name, host)

    def find_disk(self, domain: str, disk: str, host: str | None = None) -> JobKey:
        """The job key for ``domain``/``disk`` (on ``host``, if given), checking both exist."""
        return find_disk_key(self.session, domain, disk, host)

    def disk_map(self, key: JobKey, disk: Disk | None = None) -> DiskMap:
        """Where the disk's data lives, range by range (``engine.disk_map``; may block).

        Args:
            disk: the disk as last read, for its image's path; None reads it from the host now.
        """
        return read_disk_map(self.session, key, disk, self._sources)

    # -- the loop ---------------------------------------------------------------------------

    def step(self) -> Snapshot:
        """Poll every host and move every plan on; return what to show."""
        return self.planner.step()

    def wait(self) -> None:
        """Sleep until the next step is due (short near boundaries), or until something wakes it."""
        self.session.wait(self.planner.poll_interval())

    def wake(self) -> None:
        """Have the loop step now."""
        self.session.wake()

    def poll_idle(self) -> None:
        """Have the hosts that answer polled again while a step waits for one that does not."""
        self.session.poll_idle()

    @property
    def poll_interval(self) -> float:
        """Seconds between polls when nothing is due sooner."""
        return self.session.poll_interval

    def polls(
        self,
        timeout: float | None = None,
        *,
        plans: bool = True,
        every: float | None = None,
        stop: Callable[[], bool] | None = None,
        on_error: Callable[[Exception], None] | None = None,
    ) -> Iterator[Snapshot]:
        """The poll loop: step, hand over what to show, wait; for as long as the caller iterates.

        Args:
            plans: move the plans on at each step (off: only watch the hosts; no journal opened).
            every: seconds between steps (default: as the plans need, else the poll interval).
            stop: asked after each wait; true ends the loop before the next step.
            on_error: given a step's error, after which the loop waits and goes on (without it,
                the error ends the loop).

        Raises:
            HostError: still iterating ``timeout`` seconds after the first step.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while stop is None or not stop():
            try:
                snapshot = self.step() if plans else self.session.step()
            except Exception as exc:
                if on_error is None:
                    raise
                on_error(exc)
            else:
                yield snapshot
            if deadline is not None and time.monotonic() > deadline:
                raise HostError(f"still waiting after {timeout:g} s")
            if every is not None:
                self.session.wait(every)
            elif plans:
                self.wait()
            else:
                self.session.wait(self.session.poll_interval)

    def run_until(self, done: Callable[[], bool], timeout: float | None = None) -> None:
        """Run the loop until ``done()`` holds (HostError after ``timeout`` seconds)."""
        for _snapshot in self.polls(timeout):
            if done():
                return
