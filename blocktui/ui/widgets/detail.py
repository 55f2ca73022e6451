"""The detail pane: the selected disk's backing chain, and its job's numbers and recent rate."""

from __future__ import annotations

import time

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Sparkline, Static

from blocktui.core.model import Disk, Domain
from blocktui.core.text import counted
from blocktui.core.units import format_rate
from blocktui.core.views import JobView
from blocktui.ui.board import PlanInfo
from blocktui.ui.format import (
    STATE_STYLES,
    format_bandwidth,
    format_duration,
    format_eta,
    format_size,
    safe,
)
from blocktui.ui.widgets.allocation import AllocationStrip, MapShown


def describe(
    host: str, domain: Domain | None, disk: Disk | None, job: JobView | None, plan: PlanInfo | None = None
) -> Text:
    """Everything the pane says about a disk, its job and the plan driving it, as plain Text."""
    text = Text(no_wrap=False)
    if domain is None and job is None:
        text.append("Select a disk or a job to see its chain and progress.", style="dim")
        return text
    name = domain.name if domain is not None else job.key.domain if job is not None else ""
    target = disk.target if disk is not None else job.key.disk if job is not None else ""
    text.append_text(safe(host, "dim"))
    text.append("  ")
    text.append_text(safe(name, "bold"))
    if target:
        text.append(" / ")
        text.append_text(safe(target, "bold"))
    text.append("\n")
    if disk is not None:
        text.append("chain (top first):\n", style="underline")
        layers = [(disk.source or "(empty)", disk.format)] + [
            (layer.path, layer.format) for layer in disk.chain
        ]
        for depth, (path, fmt) in enumerate(layers):
            text.append(f" {depth} ", style="dim")
            text.append_text(safe(path))
            text.append(" ")
            text.append_text(safe(fmt or "?", "dim"))
            text.append("\n")
        if not disk.chain:
            text.append(" no backing image: nothing to stream\n", style="dim")
    if job is not None:
        text.append(f"{job.kind.value} ", style="bold")
        text.append(job.state.value, style=STATE_STYLES.get(job.state, ""))
        if job.chunk is not None:
            text.append(f"  chunk {job.chunk[0]}/{job.chunk[1]}")
        text.append("\n")
        total = format_size(job.end) if job.end > 0 else "?"
        text.append(f"{format_size(job.cur)} of {total} ({job.fraction * 100:.1f}%), ")
        text.append(f"{format_size(job.remaining)} left\n")
        text.append(f"rate {format_rate(job.rate)}  limit {format_bandwidth(job.bandwidth)}  ")
        if plan is not None and plan.limit != job.bandwidth:
            text.append(f"(own limit {format_bandwidth(plan.limit)})  ")
        eta = format_eta(job.eta) if job.end > 0 and not job.state.is_final else "—"
        text.append(f"ETA {eta}  elapsed {format_duration(job.elapsed)}\n")
        if job.error:
            text.append("error: ", style="bold red")
            text.append_text(safe(job.error, "red"))
            text.append("\n")
        if job.note:
            text.append("note: ", style="bold")
            text.append_text(safe(job.note))
            text.append("\n")
    if plan is not None:
        text.append_text(describe_plan(plan))
    return text


def describe_plan(plan: PlanInfo) -> Text:
    """The plan's lines: its state, chunks and checkpoints, how a pause works here, its note."""
    text = Text()
    text.append("plan: ", style="bold")
    text.append(plan.status.value)
    if plan.chunk:
        text.append(f", chunks of {format_size(plan.chunk)}")
        if plan.gap:
            text.append(f" with {plan.gap:g}s between")
        text.append(f", {counted(plan.checkpoints, 'checkpoint')} so far")
    text.append("\n")
    if plan.checkpoint_pause:
        text.append("p stops at a checkpoint here (what is copied stays; resume pulls on)\n", style="dim")
    if plan.note:
        text.append_text(safe(plan.note, "dim"))
        text.append("\n")
    return text


def _line_widths(text: Text) -> tuple[int, ...]:
    return tuple(line.cell_len for line in text.split("\n", allow_blank=True))


class DetailPane(VerticalScroll):
    """Text about the selection above a sparkline of the job's smoothed rate."""

    ALLOW_MAXIMIZE = True  # enter shows it full-screen, for long chains and error messages

    #: Seconds between repaints while only a running job's numbers move (rate, ETA, elapsed):
    #: a new selection, a change of state or of anything else is shown at once.
    NUMBERS_EVERY = 1.0

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._shown: tuple[str, object] | None = None
        self._lines: tuple[int, ...] = ()  # the shown text's line widths, in cells
        self._subject: object = None
        self._painted_at = -self.NUMBERS_EVERY

    def compose(self) -> ComposeResult:
        yield Static(id="detail-text")
        yield AllocationStrip(id="detail-map")
        yield Sparkline([], id="detail-spark")

    def show(
        self,
        host: str,
        domain: Domain | None,
        disk: Disk | None,
        job: JobView | None,
        plan: PlanInfo | None = None,
        *,
        now: float | None = None,
    ) -> None:
        """Show this selection; widgets are touched only when what they show changed.

        Args:
            now: the monotonic time (tests pass their own).
        """
        now = time.monotonic() if now is None else now
        # Everything the pane says except the numbers a running job changes at every poll.
        subject = (
            host,
            domain,
            disk,
            None if job is None else (job.key, job.kind, job.state, job.bandwidth, job.error, job.note),
            plan,
        )
        if subject == self._subject and now - self._painted_at < self.NUMBERS_EVERY:
            return
        text = describe(host, domain, disk, job, plan)
        static = self.query_one("#detail-text", Static)
        if self._shown != (text.plain, text.spans):
            width = static.content_size.width
            # A layout of the whole screen costs tens of ms: only when the text's height can change.
            same_height = self._lines == (lines := _line_widths(text)) or (
                len(lines) == len(self._lines) and max((*lines, *self._lines), default=0) <= width
            )
            self._shown, self._lines = (text.plain, text.spans), lines
            static.update(text, layout=not (same_height and width > 0))
            self._subject, self._painted_at = subject, now
        spark = self.query_one("#detail-spark", Sparkline)
        history = list(job.history) if job is not None else []
        if list(spark.data or []) != history:
            spark.data = history
        spark.display = bool(history)

    def show_map(self, shown: MapShown | None, *, disk: bool) -> None:
        """Show where the selected disk's data lives (None: still reading); ``disk`` False hides it."""
        strip = self.query_one("#detail-map", AllocationStrip)
        strip.display = disk
        if disk:
            strip.show(shown.found if shown else None, shown.reason if shown else "")
