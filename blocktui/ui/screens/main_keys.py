"""The main screen's keys, declared once (footer, help, palette), and when each applies."""

from __future__ import annotations

from collections.abc import Callable

from textual.binding import Binding, BindingType

from blocktui.core.model import ConnectionState, JobState
from blocktui.ui.screens.selection import BoardState, Selection

MAIN_BINDINGS: list[BindingType] = [
    Binding("s", "stream", "Stream", id="stream", tooltip="Stream the selected disk's backing chain into it"),
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
    Binding("escape", "back", "Back", id="back", show=False, tooltip="Close the filter or the big detail"),
]

#: Actions that change something on a host: all disabled in read-only mode.
MUTATIONS = frozenset(
    {"stream", "stream_domain", "abort", "faster", "slower", "limit", "pause", "max_active", "budget"}
)
#: Actions whose availability depends on the selection or the snapshot.
CHECKED = MUTATIONS | {"clear_finished"}


def action_applies(
    action: str,
    selection: Selection,
    state: BoardState,
    *,
    readonly: bool,
    policy_host: str | None,
    supports: Callable[[str, str], bool],
) -> bool | None:
    """Whether a checked action applies now; None shows its key as disabled.

    Args:
        selection: what the user points at.
        readonly: the session may change nothing.
        policy_host: the host ``m`` and ``b`` would change, if any.
        supports: whether a host's backend has a capability flag (host, flag name); asked only
            when it decides.
    """
    if action == "clear_finished":
        return True if any(job.state.is_final for job in state.jobs.values()) else None
    if action in ("max_active", "budget"):
        # A policy is local to this blocktui: no connection needed, only a writable session.
        return True if policy_host is not None and not readonly else None
    info = state.hosts.get(selection.host or "")
    if readonly or info is None or info.state is not ConnectionState.CONNECTED or info.readonly:
        return None
    job, plan = selection.job, selection.plan
    running = plan is not None or (job is not None and not job.state.is_final)
    if action == "stream":
        disk = selection.disk
        return True if disk is not None and disk.has_backing and not running else None
    if action == "stream_domain":
        return True if state.streamable(selection.domain) else None
    if not running or job is None:
        return None
    if action == "pause":
        if plan is not None:
            return True
        # A job no plan drives: the planner takes charge of a running one; a paused one is
        # resumed in place where the host can hold jobs.
        if job.state is JobState.ACTIVE:
            return True
        paused_in_place = job.state is JobState.PAUSED and supports(job.key.host, "supports_pause")
        return True if paused_in_place else None
    if action == "faster":
        return True if (plan.limit if plan is not None else job.bandwidth) > 0 else None
    return True
