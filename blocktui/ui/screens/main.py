"""The main screen: hosts, the domain tree, every job and plan, and details of what is selected.

Every stream goes through the planner (chunks, pause as checkpoint, the host's queue and budget,
the guard). Host and journal calls run off the UI thread (``background``): the poll loop in a
thread worker, each user request in a daemon thread of its own. The UI thread only renders
boards and opens dialogs (``main_dialogs``); while a step is late it also reads the session's
state (never a host) and has the hosts that answer polled again, so their rows go on. The keys
and when they apply are in ``main_keys``.
"""

from __future__ import annotations

import time
from dataclasses import replace
from functools import partial
from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import Horizontal
from textual.events import DescendantFocus
from textual.widgets import Input, Tree
from textual.worker import Worker, WorkerState, get_current_worker

from blocktui.core.config import Config
from blocktui.core.model import ConnectionState, HostInfo, JobKey
from blocktui.core.text import visible
from blocktui.core.views import JobView
from blocktui.engine import Engine
from blocktui.ui.board import Board, host_plans, live_board
from blocktui.ui.format import host_labels
from blocktui.ui.messages import ActionDone, ActionFailed, DiskMapRead, SnapshotReady
from blocktui.ui.notices import Notifier, endings
from blocktui.ui.screens import background
from blocktui.ui.screens.allocation import AllocationWatch
from blocktui.ui.screens.history import HistoryScreen
from blocktui.ui.screens.main_dialogs import Dialogs
from blocktui.ui.screens.main_keys import CHECKED, MAIN_BINDINGS, action_applies
from blocktui.ui.screens.panes import PaneScreen
from blocktui.ui.screens.selection import BoardState, Selection
from blocktui.ui.screens.stream_dialog import StreamRequest
from blocktui.ui.widgets.allocation import MapShown
from blocktui.ui.widgets.detail import DetailPane
from blocktui.ui.widgets.domain_tree import DomainTree
from blocktui.ui.widgets.hosts_bar import HostsBar
from blocktui.ui.widgets.jobs_table import JobsTable
from blocktui.ui.widgets.keys_bar import KeysBar


class MainScreen(PaneScreen):
    """Tree of hosts, domains and disks; the jobs table; a detail pane; keys for every action."""

    BINDINGS: ClassVar[list[BindingType]] = MAIN_BINDINGS

    #: Seconds without a finished poll before the header says hosts are not answering.
    STALE_AFTER = 3.0
    #: Seconds between looks at whether the poll is late (cheap: no host call, no planner).
    CHECK_EVERY = 0.25
    #: How long the poll worker waits for hosts to connect (or plans to be taken over) before it
    #: shows what it has; slower hosts join when they answer.
    OPEN_WAIT = 1.0
    #: Seconds from a job's end on the screen to its toast.
    ANNOUNCE_AFTER = 0.05

    def __init__(self, engine: Engine, *, poll: bool = True, defaults: Config | None = None) -> None:
        """Create the screen.

        Args:
            poll: start the poll worker on mount (tests that step the engine by hand turn it off).
            defaults: the configuration file's stream defaults, for the stream dialog.
        """
        super().__init__()
        self.engine = engine
        self._poll_enabled = poll
        # The options given at start, until the first poll says whether the guard applies.
        self.state = BoardState(host_plans(engine, guard=False))
        self.requests = background.Requests(engine, self.post_message)
        self.dialogs = Dialogs(self, self.state, self.requests, engine.supports, self._show_hosts)
        self.dialogs.defaults = StreamRequest.defaults_of(defaults or Config())
        self.notifier = Notifier()
        self._needle = ""
        self._pane = "tree"
        self._last_snapshot = time.monotonic()
        self._board: Board | None = None
        self._freshened = False  # the screen shows progress newer than the last board
        self._poller: Worker[None] | None = None
        self._applicable: tuple[bool | None, ...] = ()
        self._selected: Selection | None = None
        self.allocation = AllocationWatch(self.requests.disk_map)

    def compose(self) -> ComposeResult:
        yield HostsBar(id="hosts")
        with Horizontal(id="top"):
            yield DomainTree(id="tree")
            yield DetailPane(id="detail")
        yield JobsTable(id="jobs")
        yield Input(placeholder="filter: host, domain, disk or state", id="filter")
        yield KeysBar()

    def on_mount(self) -> None:
        # Name the hosts at once (a plain attribute, no host call); the first poll fills in the rest.
        connecting = tuple(HostInfo(uri, ConnectionState.CONNECTING) for uri in self.engine.hosts)
        self.query_one(HostsBar).show(
            connecting, host_labels(list(self.engine.hosts)), self.engine.readonly, self.state.policies
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
            self.engine.wake()

    @work(thread=True, exclusive=True, group="poll", exit_on_error=False)
    def _poll(self) -> None:
        background.poll(self.engine, self.post_message, get_current_worker(), self.OPEN_WAIT)

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
            board = live_board(board, self.engine.live_snapshot())
            self._freshened = live
        elif self._poll_enabled:
            # A step's host states are as old as its longest wait: a host's silence is read now.
            board = replace(board, snapshot=replace(board.snapshot, hosts=self.engine.host_states()))
        before = self.state.jobs
        self.state.take(board)
        if ended := endings(before, board.snapshot.jobs):
            # A toast is a widget mounted, and a layout of the whole screen: after the frame with
            # the row that says how the job ended, not in it.
            self.set_timer(self.ANNOUNCE_AFTER, partial(self._announce, ended))
        self._show_hosts()
        self._render_lists()

    def _announce(self, ended: list[JobView]) -> None:
        for job in ended:
            self.notifier.announce(self.app, job)

    def _show_hosts(self) -> None:
        hosts = self.state.snapshot.hosts
        self.query_one(HostsBar).show(hosts, self.state.labels, self.engine.readonly, self.state.policies)

    def _render_lists(self) -> None:
        # The jobs table first: a final state reaches the screen without waiting for the tree.
        state = self.state
        stale = frozenset(
            h.uri for h in state.snapshot.hosts if h.silent_for or h.state is not ConnectionState.CONNECTED
        )
        self.query_one(JobsTable).sync(state.shown_jobs(self._needle), state.labels, state.plans, stale=stale)
        job_states = {(key.host, key.domain, key.disk): job.state for key, job in state.jobs.items()}
        self.query_one(DomainTree).show(
            state.snapshot.hosts, state.labels, state.snapshot.domains, job_states, self._needle
        )
        self._render_detail()

    def _render_detail(self) -> None:
        selection = self._selected = self.selection()
        try:
            host = self.state.labels.get(selection.host or "", selection.host or "")
            pane = self.query_one(DetailPane)
            pane.show(host, selection.domain, selection.disk, selection.job, selection.plan)
            pane.show_map(self._disk_map(selection), disk=selection.disk is not None)
            # Only when what applies has changed: every key's check runs again on refresh_bindings.
            applicable = tuple(self.check_action(action, ()) for action in sorted(CHECKED))
        finally:
            self._selected = None
        if applicable != self._applicable:
            self._applicable = applicable
            self.refresh_bindings()

    def _disk_map(self, selection: Selection) -> MapShown | None:
        """The selected disk's last map, read again when it can have changed."""
        if selection.host is None or selection.domain is None or selection.disk is None:
            return None
        key = JobKey(selection.host, selection.domain.name, selection.disk.target)
        return self.allocation.look(key, selection.disk, selection.job)

    @on(DiskMapRead)
    def _map_read(self, message: DiskMapRead) -> None:
        self.allocation.took(message.key, MapShown(message.found, message.reason))
        self._render_detail()

    def _check_stale(self) -> None:
        # A step that does not come back means a host stopped answering: say so instead of
        # silently showing old numbers.
        waited = time.monotonic() - self._last_snapshot
        bar = self.query_one(HostsBar)
        if self._poll_enabled and self._board is not None:
            if waited > 2 * self.engine.poll_interval:
                # The step waits (a second or two) for a host that has just stopped answering:
                # the other hosts are polled meanwhile, on their workers, and their rows go on.
                self.engine.poll_idle()
                self.show(self._board, live=True)
            elif (hosts := self.engine.host_states()) != tuple(self.state.hosts.values()):
                # A host has gone silent (or spoken) since the board: the header says so now.
                self.state.hosts = {h.uri: h for h in hosts}
                bar.show(hosts, self.state.labels, self.engine.readonly, self.state.policies)
        if waited > max(self.STALE_AFTER, 4 * self.engine.poll_interval):
            bar.show_waiting(waited)
        else:
            bar.show_waiting(None)

    # -- selection ----------------------------------------------------------------------------

    def selection(self) -> Selection:
        """The disk and job the user points at: from the tree or the jobs table, whichever had focus."""
        if self._selected is not None:
            return self._selected  # resolved once for a whole render, not once per key checked
        if self._pane == "tree":
            return self.state.at_place(self.query_one(DomainTree).selected)
        return self.state.at_job(self.query_one(JobsTable).selected_key)

    @on(DescendantFocus)
    def _focus_moved(self, event: DescendantFocus) -> None:
        if isinstance(event.widget, DomainTree):
            self._pane = "tree"
        elif isinstance(event.widget, JobsTable):
            self._pane = "jobs"
        self._render_detail()

    @on(Tree.NodeHighlighted)
    @on(JobsTable.Highlighted)
    def _highlight_moved(self) -> None:
        self._render_detail()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Enable only what applies to the selection; None shows a key as disabled."""
        if action not in CHECKED:
            return True
        selection = self.selection()
        return action_applies(
            action,
            selection,
            self.state,
            readonly=self.engine.readonly,
            policy_host=self.dialogs.policy_host(selection),
            supports=self.engine.supports,
        )

    # -- actions ------------------------------------------------------------------------------

    def action_stream(self) -> None:
        """Open the stream dialog for the selected disk."""
        selection = self.selection()
        if selection.host is None or selection.domain is None or selection.disk is None:
            return
        self.dialogs.stream(selection.host, selection.domain, [selection.disk])

    def action_stream_domain(self) -> None:
        """Open the stream dialog for every disk with a chain of the selected domain."""
        selection = self.selection()
        disks = self.state.streamable(selection.domain)
        if selection.host is None or selection.domain is None or not disks:
            return
        self.dialogs.stream(selection.host, selection.domain, disks)

    def action_abort(self) -> None:
        """Ask, then abort the selected job."""
        self.dialogs.abort(self.selection())

    def action_faster(self) -> None:
        """Double the selected job's limit."""
        self.dialogs.faster(self.selection())

    def action_slower(self) -> None:
        """Halve the selected job's limit; an unlimited job starts from half its measured rate."""
        self.dialogs.slower(self.selection())

    def action_limit(self) -> None:
        """Ask for an exact limit for the selected job."""
        self.dialogs.limit(self.selection())

    def action_pause(self) -> None:
        """Pause a stream (a checkpoint where the host cannot hold a job), or resume a paused one."""
        selection = self.selection()
        if selection.job is not None:
            self.requests.pause_or_resume(selection.job.key)

    def action_max_active(self) -> None:
        """Ask how many streams may run at once on the selected host."""
        self.dialogs.policy(self.selection(), "max_active")

    def action_budget(self) -> None:
        """Ask for the selected host's bandwidth budget."""
        self.dialogs.policy(self.selection(), "budget")

    def action_history(self) -> None:
        """Show every job the journal holds (read in a worker)."""
        self.app.push_screen(HistoryScreen(self.engine.journal))

    def action_clear_finished(self) -> None:
        """Forget every finished job."""
        self.requests.clear_finished()

    def action_refresh(self) -> None:
        """Re-read domains, disks and chains from every host."""
        self.requests.refresh()

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
        return self.state.running_jobs()
