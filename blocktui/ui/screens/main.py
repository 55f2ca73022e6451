"""The main screen: hosts, the domain tree, every job and plan, and details of what is selected.

Every stream goes through the planner (chunks, pause as checkpoint, the host's queue and budget,
the guard). Host and journal calls run off the UI thread: the poll loop in a thread worker whose
every wait is bounded, each user action in a daemon thread of its own (it may block on a host that
stopped answering, and must neither hold up the screen nor keep the app from quitting). The UI
thread only renders boards and opens dialogs; while a step is late it also reads the session's
state (never a host) and has the hosts that answer polled again, so their rows go on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.events import DescendantFocus
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Tree
from textual.worker import Worker, WorkerState, get_current_worker

from blocktui.core.errors import BlocktuiError
from blocktui.core.model import ConnectionState, Disk, Domain, HostInfo, JobKey, JobState
from blocktui.core.scheduler import HostPolicy
from blocktui.core.text import visible
from blocktui.core.views import JobView, Snapshot
from blocktui.planner import Planner, PlanStatus
from blocktui.ui.board import Board, HostPlan, PlanInfo, host_plans, live_board, read_board
from blocktui.ui.format import format_bandwidth, host_labels, safe
from blocktui.ui.messages import ActionDone, ActionFailed, SnapshotReady
from blocktui.ui.screens.confirm import ConfirmScreen
from blocktui.ui.screens.history import HistoryScreen
from blocktui.ui.screens.limit import LimitDialog
from blocktui.ui.screens.policy import Field, PolicyDialog
from blocktui.ui.screens.stream_dialog import StreamDialog, StreamRequest
from blocktui.ui.widgets.detail import DetailPane
from blocktui.ui.widgets.domain_tree import DomainTree, matches
from blocktui.ui.widgets.hosts_bar import HostsBar
from blocktui.ui.widgets.jobs_table import JobsTable

MiB = 1024**2

#: Where ``-`` starts from when a job has no limit and no measured rate yet.
DEFAULT_STEP = 64 * MiB
#: ``-`` never goes below this: a near-zero limit looks like a hung job.
MIN_LIMIT = MiB

#: Actions that change something on a host: all disabled in read-only mode.
MUTATIONS = frozenset(
    {"stream", "stream_domain", "abort", "faster", "slower", "limit", "pause", "max_active", "budget"}
)
#: Actions whose availability depends on the selection or the snapshot.
CHECKED = MUTATIONS | {"clear_finished"}


@dataclass(frozen=True)
class Selection:
    """What the user is pointing at, resolved against the latest snapshot."""

    host: str | None = None
    domain: Domain | None = None
    disk: Disk | None = None
    job: JobView | None = None
    plan: PlanInfo | None = None


class MainScreen(Screen[None]):
    """Tree of hosts, domains and disks; the jobs table; a detail pane; keys for every action."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "s", "stream", "Stream", id="stream", tooltip="Stream the selected disk's backing chain into it"
        ),
        Binding(
            "S",
            "stream_domain",
            "Stream all",
            id="stream_domain",
            tooltip="Stream every disk of the selected domain that has a backing chain",
        ),
        Binding("a", "abort", "Abort", id="abort", tooltip="Stop the selected job (asks first)"),
        Binding("plus", "faster", "Faster", id="faster", tooltip="Double the selected job's limit"),
        Binding("minus", "slower", "Slower", id="slower", tooltip="Halve the selected job's limit"),
        Binding(
            "l",
            "limit",
            "Set limit",
            id="limit",
            show=False,
            tooltip="Type an exact limit for the selected job",
        ),
        Binding(
            "p",
            "pause",
            "Pause",
            id="pause",
            tooltip="Pause or resume the selected stream (a checkpoint where the host cannot hold a job)",
        ),
        Binding(
            "m",
            "max_active",
            "Max active",
            id="max_active",
            show=False,
            tooltip="How many streams may run at once on the selected host (the rest queue)",
        ),
        Binding(
            "b",
            "budget",
            "Budget",
            id="budget",
            show=False,
            tooltip="The bandwidth budget the selected host's streams share",
        ),
        Binding("h", "history", "History", id="history", tooltip="Every job from the journal"),
        Binding("slash", "filter", "Filter", id="filter", tooltip="Show only rows that match some text"),
        Binding(
            "enter",
            "details",
            "Details",
            id="details",
            priority=True,
            show=False,
            tooltip="Enlarge the detail pane",
        ),
        Binding("c", "clear_finished", "Clear", id="clear", tooltip="Forget finished jobs"),
        Binding("r", "refresh", "Refresh", id="refresh", show=False, tooltip="Re-read domains and chains"),
        Binding(
            "escape", "back", "Back", id="back", show=False, tooltip="Close the filter or the big detail"
        ),
    ]

    #: Seconds without a finished poll before the header says hosts are not answering.
    STALE_AFTER = 3.0
    #: Seconds between looks at whether the poll is late (cheap: no host call, no planner).
    CHECK_EVERY = 0.25
    #: How long the poll worker waits for hosts to connect (or plans to be taken over) before it
    #: shows what it has; slower hosts join when they answer.
    OPEN_WAIT = 1.0

    def __init__(self, planner: Planner, *, poll: bool = True) -> None:
        """Create the screen.

        Args:
            poll: start the poll worker on mount (tests that step the planner by hand turn it off).
        """
        super().__init__()
        self.planner = planner
        self.session = planner.session
        self._poll_enabled = poll
        self._snapshot = Snapshot(hosts=(), domains=(), jobs=())
        self._plans: dict[JobKey, PlanInfo] = {}
        # The options given at start, until the first poll says whether the guard applies.
        self._policies: dict[str, HostPlan] = host_plans(planner, guard=False)
        self._labels: dict[str, str] = {}
        self._jobs: dict[JobKey, JobView] = {}
        self._domains: dict[tuple[str, str], Domain] = {}
        self._hosts: dict[str, HostInfo] = {}
        self._needle = ""
        self._pane = "tree"
        self._last_snapshot = time.monotonic()
        self._board: Board | None = None
        self._freshened = False  # the screen shows progress newer than the last board
        self._poller: Worker[None] | None = None
        self._applicable: tuple[bool | None, ...] = ()
        self._selected: Selection | None = None

    def compose(self) -> ComposeResult:
        yield HostsBar(id="hosts")
        with Horizontal(id="top"):
            yield DomainTree(id="tree")
            yield DetailPane(id="detail")
        yield JobsTable(id="jobs")
        yield Input(placeholder="filter: host, domain, disk or state", id="filter")
        yield Footer()

    def on_mount(self) -> None:
        # Name the hosts at once (a plain attribute, no host call); the first poll fills in the rest.
        connecting = tuple(HostInfo(uri, ConnectionState.CONNECTING) for uri in self.session.hosts)
        self.query_one(HostsBar).show(
            connecting, host_labels(list(self.session.hosts)), self.session.readonly, self._policies
        )
        self.query_one("#filter", Input).display = False
        self.query_one(DomainTree).focus()
        if self._poll_enabled:
            self._poller = self._poll()
        self.set_interval(self.CHECK_EVERY, self._check_stale)

    def on_unmount(self) -> None:
        self.stop_polling()

    def stop_polling(self) -> None:
        """Cancel the poll worker and wake it from its wait so it ends at once."""
        if self._poller is not None:
            self._poller.cancel()
            self.session.wake()

    # -- off the UI thread: the poll worker and the action threads call the session ----------

    @work(thread=True, exclusive=True, group="poll", exit_on_error=False)
    def _poll(self) -> None:
        """Open the session and take over orphaned plans, then step, post, wait; polls never overlap."""
        worker = get_current_worker()
        self.session.open(timeout=self.OPEN_WAIT)
        try:
            self.planner.reattach(timeout=self.OPEN_WAIT)
        except BlocktuiError as exc:
            self.post_message(ActionFailed("carry on earlier plans", visible(str(exc))))
        last_error = ""
        while not worker.is_cancelled:
            try:
                board = read_board(self.planner, self.planner.step())
            except Exception as exc:  # a host's error, or a bug: polling must go on for every host
                # Say it once, not twice a second, while the same problem lasts.
                said = str(exc) if isinstance(exc, BlocktuiError) else f"{type(exc).__name__}: {exc}"
                if said != last_error:
                    last_error = said
                    self.post_message(ActionFailed("poll", visible(last_error)))
            else:
                last_error = ""
                self.post_message(SnapshotReady(board))
            if worker.is_cancelled:
                break
            self.session.wait(self.planner.poll_interval())

    def _act(self, what: str, call: Callable[[], object]) -> None:
        """Run one user action in a daemon thread of its own; report the outcome as a message."""
        self._in_background(what, partial(self._report, what, call))

    def _in_background(self, name: str, work: Callable[[], None]) -> None:
        # Not a Textual worker: those run on the event loop's executor, whose threads are joined
        # when the app ends, so one action stuck in a host that stopped answering would hang quitting.
        threading.Thread(target=work, name=f"blocktui-action {name}", daemon=True).start()

    def _report(self, what: str, call: Callable[[], object], done: str | None = None) -> None:
        """Run ``call``; post ``done`` (else ``what``) when it worked, ``what`` and the reason when not."""
        try:
            call()
        except BlocktuiError as exc:
            self.post_message(ActionFailed(what, visible(str(exc))))
        except Exception as exc:  # a bug: still one line on screen, never a traceback
            self.post_message(ActionFailed(what, visible(f"{type(exc).__name__}: {exc}")))
        else:
            self.post_message(ActionDone(done or what))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        # Anything other than our own errors is a bug; still one line, never a traceback on screen.
        if event.state is WorkerState.ERROR and event.worker.error is not None:
            error = event.worker.error
            self.notify(
                visible(f"{event.worker.name or 'worker'} failed: {type(error).__name__}: {error}"),
                severity="error",
                markup=False,
            )

    # -- rendering ----------------------------------------------------------------------------

    @on(SnapshotReady)
    def _on_snapshot(self, message: SnapshotReady) -> None:
        self.show(message.board)

    def show(self, board: Board, *, live: bool = False) -> None:
        """Render a board: only what changed is repainted.

        Args:
            live: a step is late: ``board``, the last one, is shown with the session's newer
                progress and host states (``live_board``).
        """
        if not live:
            self._last_snapshot = time.monotonic()
            self._board = board
        if self._poll_enabled and (live or self._freshened):
            # Progress shown while a step was late is newer than what that step brings back.
            board = live_board(board, self.session.snapshot())
            self._freshened = live
        elif self._poll_enabled:
            # A step's host states are as old as its longest wait: a host's silence is read now.
            board = replace(board, snapshot=replace(board.snapshot, hosts=self.session.host_states()))
        snapshot = board.snapshot
        self._snapshot = snapshot
        self._plans = dict(board.plans)
        self._policies = dict(board.policies) or self._policies
        self._labels = host_labels([h.uri for h in snapshot.hosts])
        self._hosts = {h.uri: h for h in snapshot.hosts}
        self._jobs = {job.key: job for job in snapshot.jobs}
        self._domains = {(d.host, d.name): d for d in snapshot.domains}
        self.query_one(HostsBar).show(snapshot.hosts, self._labels, self.session.readonly, self._policies)
        self._render_lists()

    def _render_lists(self) -> None:
        # The jobs table first: a final state reaches the screen without waiting for the tree.
        needle = self._needle
        jobs = [
            job
            for job in self._snapshot.jobs
            if not needle
            or matches(needle, self._labels.get(job.key.host), *job.key, job.state.value, job.kind.value)
        ]
        self.query_one(JobsTable).sync(jobs, self._labels, self._plans)
        job_states = {(key.host, key.domain, key.disk): job.state for key, job in self._jobs.items()}
        self.query_one(DomainTree).show(
            self._snapshot.hosts, self._labels, self._snapshot.domains, job_states, needle
        )
        self._render_detail()

    def _render_detail(self) -> None:
        selection = self._selected = self.selection()
        try:
            host = self._labels.get(selection.host or "", selection.host or "")
            self.query_one(DetailPane).show(
                host, selection.domain, selection.disk, selection.job, selection.plan
            )
            # The footer recomposes on refresh_bindings: do it only when what applies has changed.
            applicable = tuple(self.check_action(action, ()) for action in sorted(CHECKED))
        finally:
            self._selected = None
        if applicable != self._applicable:
            self._applicable = applicable
            self.refresh_bindings()

    def _check_stale(self) -> None:
        # A step that does not come back means a host stopped answering: say so instead of
        # silently showing old numbers.
        waited = time.monotonic() - self._last_snapshot
        bar = self.query_one(HostsBar)
        if self._poll_enabled and self._board is not None:
            if waited > 2 * self.session.poll_interval:
                # The step waits (a second or two) for a host that has just stopped answering:
                # the other hosts are polled meanwhile, on their workers, and their rows go on.
                self.session.poll_idle()
                self.show(self._board, live=True)
            elif (hosts := self.session.host_states()) != tuple(self._hosts.values()):
                # A host has gone silent (or spoken) since the board: the header says so now.
                self._hosts = {h.uri: h for h in hosts}
                bar.show(hosts, self._labels, self.session.readonly, self._policies)
        if waited > max(self.STALE_AFTER, 4 * self.session.poll_interval):
            bar.show_waiting(waited)
        else:
            bar.show_waiting(None)

    # -- selection ----------------------------------------------------------------------------

    def selection(self) -> Selection:
        """The disk and job the user points at: from the tree or the jobs table, whichever had focus."""
        if self._selected is not None:
            return self._selected  # resolved once for a whole render, not once per key checked
        if self._pane == "tree":
            place = self.query_one(DomainTree).selected
            if place is None:
                return Selection()
            domain = self._domains.get((place.host, place.domain or ""))
            disk = domain.disk(place.disk) if domain is not None and place.disk else None
            place_key = JobKey(place.host, place.domain or "", place.disk or "")
            return Selection(place.host, domain, disk, self._jobs.get(place_key), self._plans.get(place_key))
        key = self.query_one(JobsTable).selected_key
        if key is None:
            return Selection()
        domain = self._domains.get((key.host, key.domain))
        disk = domain.disk(key.disk) if domain is not None else None
        return Selection(key.host, domain, disk, self._jobs.get(key), self._plans.get(key))

    @on(DescendantFocus)
    def _focus_moved(self, event: DescendantFocus) -> None:
        if isinstance(event.widget, DomainTree):
            self._pane = "tree"
        elif isinstance(event.widget, JobsTable):
            self._pane = "jobs"
        self._render_detail()

    @on(Tree.NodeHighlighted)
    @on(DataTable.RowHighlighted)
    def _highlight_moved(self) -> None:
        self._render_detail()

    def _writable(self, host: str | None) -> bool:
        if host is None or self.session.readonly:
            return False
        info = self._hosts.get(host)
        return info is not None and info.state is ConnectionState.CONNECTED and not info.readonly

    def _supports(self, host: str, flag: str) -> bool:
        # Capability flags are plain attributes: reading one never calls the host.
        try:
            return bool(getattr(self.session.backend(host), flag))
        except BlocktuiError:
            return False

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Enable only what applies to the selection; None shows a key as disabled."""
        if action not in CHECKED:
            return True
        if action == "clear_finished":
            return True if any(job.state.is_final for job in self._jobs.values()) else None
        if action in ("max_active", "budget"):
            # A policy is local to this blocktui: no connection needed, only a writable session.
            return True if self._policy_host() is not None and not self.session.readonly else None
        selection = self.selection()
        if not self._writable(selection.host):
            return None
        job, plan = selection.job, selection.plan
        running = plan is not None or (job is not None and not job.state.is_final)
        if action == "stream":
            disk = selection.disk
            return True if disk is not None and disk.has_backing and not running else None
        if action == "stream_domain":
            return True if self._streamable(selection.domain) else None
        if not running or job is None:
            return None
        if action == "pause":
            if plan is not None:
                return True
            # A job no plan drives: the planner takes charge of a running one; a paused one is
            # resumed in place where the host can hold jobs.
            if job.state is JobState.ACTIVE:
                return True
            paused_in_place = job.state is JobState.PAUSED and self._supports(job.key.host, "supports_pause")
            return True if paused_in_place else None
        if action == "faster":
            return True if (plan.limit if plan is not None else job.bandwidth) > 0 else None
        return True

    def _policy_host(self) -> str | None:
        """The host whose queue and budget ``m``/``b`` change: the selected one, or the only one."""
        host = self.selection().host
        if host is None and len(self.session.hosts) == 1:
            host = self.session.hosts[0]
        return host

    def _streamable(self, domain: Domain | None) -> list[Disk]:
        if domain is None:
            return []
        busy = {key for key, job in self._jobs.items() if not job.state.is_final} | set(self._plans)
        return [
            disk
            for disk in domain.disks
            if disk.has_backing and JobKey(domain.host, domain.name, disk.target) not in busy
        ]

    def _what(self, key: JobKey) -> str:
        return f"{visible(key.domain)}/{visible(key.disk)}"

    # -- actions ------------------------------------------------------------------------------

    def action_stream(self) -> None:
        """Open the stream dialog for the selected disk."""
        selection = self.selection()
        if selection.host is None or selection.domain is None or selection.disk is None:
            return
        self._ask_stream(selection.host, selection.domain, [selection.disk])

    def action_stream_domain(self) -> None:
        """Open the stream dialog for every disk with a chain of the selected domain."""
        selection = self.selection()
        disks = self._streamable(selection.domain)
        if selection.host is None or selection.domain is None or not disks:
            return
        self._ask_stream(selection.host, selection.domain, disks)

    def _ask_stream(self, host: str, domain: Domain, disks: list[Disk]) -> None:
        dialog = StreamDialog(
            self._labels.get(host, host),
            domain.name,
            disks,
            supports_base=self._supports(host, "supports_base"),
        )

        def start(request: StreamRequest | None) -> None:
            if request is not None:
                keys = [JobKey(host, domain.name, disk.target) for disk in disks]
                self._in_background("stream", partial(self._queue_streams, keys, request))

        self.app.push_screen(dialog, start)

    def _queue_streams(self, keys: list[JobKey], request: StreamRequest) -> None:
        """Hand each disk to the planner in order (its queue keeps that order); report each outcome."""
        for key in keys:
            add = partial(
                self.planner.add_stream,
                key,
                bandwidth=request.bandwidth,
                base=request.base,
                chunk=request.chunk,
                gap=request.gap,
            )
            self._report(f"stream {self._what(key)}", add, done=f"stream {self._what(key)} queued")

    def action_abort(self) -> None:
        """Ask, then abort the selected job."""
        job = self.selection().job
        if job is None:
            return
        key = job.key
        question = Text.assemble(
            f"Abort the {job.kind.value} job on\n\n  ",
            safe(key.domain, "bold"),
            " / ",
            safe(key.disk, "bold"),
            f"  on {self._labels.get(key.host, visible(key.host))}?\n\n",
            Text("What it copied so far stays in the top image.", style="dim"),
        )

        planned = key in self._plans

        def answer(yes: bool | None) -> None:
            if yes:
                # A plan is dropped as a whole (queued, between chunks or running); a job no plan
                # drives is aborted directly.
                call = partial(self.planner.cancel if planned else self.session.abort, key)
                self._act(f"abort {self._what(key)}", call)

        self.app.push_screen(ConfirmScreen("Abort job", question, yes="Abort"), answer)

    def _limit_of(self, selection: Selection) -> int:
        """The limit the user set: a plan's own (the host may run it slower), else the job's."""
        if selection.plan is not None:
            return selection.plan.limit
        return selection.job.bandwidth if selection.job is not None else 0

    def action_faster(self) -> None:
        """Double the selected job's limit."""
        selection = self.selection()
        limit = self._limit_of(selection)
        if selection.job is not None and limit > 0:
            self._set_limit(selection.job.key, limit * 2)

    def action_slower(self) -> None:
        """Halve the selected job's limit; an unlimited job starts from half its measured rate."""
        selection = self.selection()
        job = selection.job
        if job is None:
            return
        current = self._limit_of(selection) or int(job.rate or 0) or 2 * DEFAULT_STEP
        self._set_limit(job.key, max(MIN_LIMIT, current // 2 // MiB * MiB))

    def action_limit(self) -> None:
        """Ask for an exact limit for the selected job."""
        selection = self.selection()
        job = selection.job
        if job is None:
            return
        key = job.key
        what = Text.assemble(safe(key.domain, "bold"), " / ", safe(key.disk, "bold"))

        def chosen(bandwidth: int | None) -> None:
            if bandwidth is not None:
                self._set_limit(key, bandwidth)

        self.app.push_screen(LimitDialog(what, self._limit_of(selection)), chosen)

    def _set_limit(self, key: JobKey, bandwidth: int) -> None:
        # A plan's limit goes through the planner, which re-divides the host's budget.
        setter = self.planner.set_limit if key in self._plans else self.session.set_speed
        self._act(
            f"limit {self._what(key)} to {format_bandwidth(bandwidth)}", partial(setter, key, bandwidth)
        )

    def action_pause(self) -> None:
        """Pause a stream (a checkpoint where the host cannot hold a job), or resume a paused one."""
        selection = self.selection()
        job, plan = selection.job, selection.plan
        if job is None:
            return
        key = job.key
        if plan is not None and (plan.pause_requested or plan.status is PlanStatus.PAUSED):
            self._act(f"resume {self._what(key)}", partial(self.planner.resume, key))
        elif plan is None and job.state is JobState.PAUSED:
            # Paused by someone else, in place: carry it on without taking charge of it.
            self._act(f"resume {self._what(key)}", partial(self.session.resume, key))
        else:
            self._act(f"pause {self._what(key)}", partial(self.planner.pause, key))

    def action_max_active(self) -> None:
        """Ask how many streams may run at once on the selected host."""
        self._ask_policy("max_active")

    def action_budget(self) -> None:
        """Ask for the selected host's bandwidth budget."""
        self._ask_policy("budget")

    def _ask_policy(self, field: Field) -> None:
        host = self._policy_host()
        if host is None:
            return
        current = self._policies.get(host)
        policy = current.policy if current is not None else HostPolicy()
        label = self._labels.get(host) or host_labels(list(self.session.hosts)).get(host, visible(host))

        def chosen(new: HostPolicy | None) -> None:
            if new is None:
                return
            if current is not None:
                # Show it at once; the next poll confirms it.
                self._policies[host] = HostPlan(new.max_active, new.budget, current.guarded)
                self.query_one(HostsBar).show(
                    self._snapshot.hosts, self._labels, self.session.readonly, self._policies
                )
            what = (
                f"{label}: max-active {new.max_active or 'no limit'}, budget {format_bandwidth(new.budget)}"
            )
            self._act(what, partial(self.planner.set_policy, new, host))

        self.app.push_screen(PolicyDialog(label, policy, field), chosen)

    def action_history(self) -> None:
        """Show every job the journal holds (read in a worker)."""
        self.app.push_screen(HistoryScreen(self.planner.journal))

    def action_clear_finished(self) -> None:
        """Forget every finished job."""

        def clear() -> None:
            self.session.clear_finished()
            self.session.wake()  # show the cleared table now, not at the next poll

        self._act("clear finished jobs", clear)

    def action_refresh(self) -> None:
        """Re-read domains, disks and chains from every host."""

        def refresh() -> None:
            self.session.refresh_domains()
            self.session.wake()

        self._act("refresh", refresh)

    def action_filter(self) -> None:
        """Show the filter field."""
        field = self.query_one("#filter", Input)
        field.display = True
        field.focus()

    def action_details(self) -> None:
        """Enter: finish filtering, fold a tree branch, or enlarge the detail pane."""
        focused = self.focused
        if isinstance(focused, Input):
            self.query_one(JobsTable).focus()
            return
        tree = self.query_one(DomainTree)
        if focused is tree and tree.cursor_node is not None and tree.cursor_node.allow_expand:
            tree.cursor_node.toggle()
            return
        if self.maximized is not None:
            self.minimize()
        else:
            self.maximize(self.query_one(DetailPane), container=False)

    def action_back(self) -> None:
        """Escape: leave the big detail, or close and clear the filter."""
        if self.maximized is not None:
            self.minimize()
            return
        field = self.query_one("#filter", Input)
        if field.display:
            field.value = ""
            field.display = False
            self.query_one(JobsTable).focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self._needle = event.value.strip().casefold()
        self._render_lists()

    # -- outcomes -----------------------------------------------------------------------------

    @on(ActionDone)
    def _done(self, message: ActionDone) -> None:
        self.notify(f"done: {message.action}", timeout=3, markup=False)

    @on(ActionFailed)
    def _failed(self, message: ActionFailed) -> None:
        self.notify(f"{message.action}: {message.reason}", severity="error", timeout=8, markup=False)

    def running_jobs(self) -> int:
        """How many jobs are still running (to say so on quit)."""
        return sum(1 for job in self._jobs.values() if not job.state.is_final)
