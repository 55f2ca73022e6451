"""The dialogs behind the main screen's keys: each asks, then hands the answer to a request."""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual.screen import Screen

from blocktui.core.model import Disk, Domain, JobKey
from blocktui.core.scheduler import HostPolicy
from blocktui.core.text import visible
from blocktui.ui.board import HostPlan
from blocktui.ui.format import format_bandwidth, host_labels, safe
from blocktui.ui.screens.background import Requests
from blocktui.ui.screens.confirm import ConfirmScreen
from blocktui.ui.screens.limit import LimitDialog
from blocktui.ui.screens.policy import Field, PolicyDialog
from blocktui.ui.screens.selection import BoardState, Selection
from blocktui.ui.screens.stream_dialog import StreamDialog, StreamRequest

MiB = 1024**2

#: Where ``-`` starts from when a job has no limit and no measured rate yet.
DEFAULT_STEP = 64 * MiB
#: ``-`` never goes below this: a near-zero limit looks like a hung job.
MIN_LIMIT = MiB


class Dialogs:
    """Opens each dialog over the main screen, with what the latest board says."""

    def __init__(
        self,
        screen: Screen[None],
        state: BoardState,
        requests: Requests,
        supports: Callable[[str, str], bool],
        policies_changed: Callable[[], None],
    ) -> None:
        """Wire the dialogs.

        Args:
            supports: whether a host's backend has a capability flag (host, flag name).
            policies_changed: shows ``state.policies`` at once, before the next poll confirms them.
        """
        self.screen = screen
        self.state = state
        self.requests = requests
        self.engine = requests.engine
        self._supports = supports
        self._policies_changed = policies_changed
        #: What the stream dialog starts with (the configuration file's defaults).
        self.defaults: StreamRequest | None = None

    def stream(self, host: str, domain: Domain, disks: list[Disk]) -> None:
        """Ask for the limit, chunks and base, then queue a stream on each of these disks."""
        dialog = StreamDialog(
            self.state.labels.get(host, host),
            domain.name,
            disks,
            supports_base=self._supports(host, "supports_base"),
            defaults=self.defaults,
        )

        keys = [JobKey(host, domain.name, disk.target) for disk in disks]

        def start(request: StreamRequest | None) -> None:
            if request is not None:
                self.requests.stream(keys, request)

        self.screen.app.push_screen(dialog, start)
        self.requests.preflight(keys, dialog.post_message)

    def abort(self, selection: Selection) -> None:
        """Ask, then abort the selected job."""
        job = selection.job
        if job is None:
            return
        key = job.key
        question = Text.assemble(
            f"Abort the {job.kind.value} job on\n\n  ",
            safe(key.domain, "bold"),
            " / ",
            safe(key.disk, "bold"),
            f"  on {self.state.labels.get(key.host, visible(key.host))}?\n\n",
            Text("What it copied so far stays in the top image.", style="dim"),
        )

        def answer(yes: bool | None) -> None:
            if yes:
                self.requests.abort(key)

        self.screen.app.push_screen(ConfirmScreen("Abort job", question, yes="Abort"), answer)

    def limit(self, selection: Selection) -> None:
        """Ask for an exact limit for the selected job."""
        job = selection.job
        if job is None:
            return
        key = job.key
        what = Text.assemble(safe(key.domain, "bold"), " / ", safe(key.disk, "bold"))

        def chosen(bandwidth: int | None) -> None:
            if bandwidth is not None:
                self.set_limit(key, bandwidth)

        self.screen.app.push_screen(LimitDialog(what, selection.limit), chosen)

    def set_limit(self, key: JobKey, bandwidth: int) -> None:
        """Re-throttle a job, through its plan if it has one."""
        self.requests.set_limit(key, bandwidth)

    def faster(self, selection: Selection) -> None:
        """Double the selected job's limit (an unlimited job stays so)."""
        if selection.job is not None and selection.limit > 0:
            self.set_limit(selection.job.key, selection.limit * 2)

    def slower(self, selection: Selection) -> None:
        """Halve the selected job's limit; an unlimited job starts from half its measured rate."""
        job = selection.job
        if job is None:
            return
        current = selection.limit or int(job.rate or 0) or 2 * DEFAULT_STEP
        self.set_limit(job.key, max(MIN_LIMIT, current // 2 // MiB * MiB))

    def policy_host(self, selection: Selection) -> str | None:
        """The host whose queue and budget ``m``/``b`` change: the selected one, or the only one."""
        if selection.host is None and len(self.engine.hosts) == 1:
            return self.engine.hosts[0]
        return selection.host

    def policy(self, selection: Selection, field: Field) -> None:
        """Ask for the selected host's max-active or budget (``field`` is the one the key is about)."""
        host = self.policy_host(selection)
        if host is None:
            return
        current = self.state.policies.get(host)
        policy = current.policy if current is not None else HostPolicy()
        label = self.state.labels.get(host) or host_labels(list(self.engine.hosts)).get(host, visible(host))

        def chosen(new: HostPolicy | None) -> None:
            if new is None:
                return
            if current is not None:
                # Show it at once; the next poll confirms it.
                self.state.policies[host] = HostPlan(new.max_active, new.budget, current.guarded)
                self._policies_changed()
            what = (
                f"{label}: max-active {new.max_active or 'no limit'}, budget {format_bandwidth(new.budget)}"
            )
            self.requests.set_policy(what, new, host)

        self.screen.app.push_screen(PolicyDialog(label, policy, field), chosen)
