"""Ask for a stream's limit, chunks and base before queueing it on one disk or on all disks of a domain."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static

from blocktui.core.config import Config
from blocktui.core.errors import InvalidInput
from blocktui.core.model import Disk
from blocktui.core.preflight import Preflight
from blocktui.core.text import counted, visible
from blocktui.core.units import format_bandwidth, format_duration, format_size
from blocktui.ui.format import safe
from blocktui.ui.screens.confirm import ConfirmScreen
from blocktui.ui.widgets.bandwidth import BandwidthInput, bandwidth_of
from blocktui.ui.widgets.chunking import ChunkInput, GapInput, chunk_of, gap_of

#: What the chunk fields do, shown under them while they hold nothing wrong.
CHUNK_HINT = "Chunks stop at every boundary (a checkpoint), wait the gap, then go on."

#: The Select value for "pull every backing image" (None cannot be a Select value).
WHOLE_CHAIN = "\0whole"


@dataclass(frozen=True)
class StreamRequest:
    """What the user asked for.

    Attributes:
        bandwidth: limit in bytes/s, 0 for unlimited.
        base: the chain layer to keep (and everything below it); None pulls the whole chain.
        chunk: stop at every multiple of this many bytes (a checkpoint); 0 streams in one run.
        gap: seconds to wait at each checkpoint before the next chunk.
    """

    bandwidth: int
    base: str | None
    chunk: int = 0
    gap: float = 0.0

    @classmethod
    def defaults_of(cls, config: Config) -> StreamRequest:
        """What the dialog starts with: the configuration file's limit, chunk and gap."""
        return cls(bandwidth=config.bandwidth or 0, base=None, chunk=config.chunk or 0, gap=config.gap or 0.0)


class StreamDialog(ModalScreen[StreamRequest | None]):
    """Bandwidth, chunk size and gap (each validated as typed) and base; dismisses with None on cancel.

    The pre-flight of each disk (what it copies, whether it fits) arrives as ``Estimated`` from a
    worker; the time it takes follows the limit as it is typed. A copy that does not fit asks
    before it starts.
    """

    class Estimated(Message):
        """The disks' pre-flights, or why they could not be made."""

        def __init__(self, checks: list[Preflight], failure: str = "") -> None:
            super().__init__()
            self.checks = checks
            self.failure = failure

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="stream.cancel", tooltip="Close without starting"),
    ]

    def __init__(
        self,
        host: str,
        domain: str,
        disks: list[Disk],
        *,
        supports_base: bool,
        defaults: StreamRequest | None = None,
    ) -> None:
        """Ask about streaming ``disks``; ``defaults`` fill the fields (the configuration file's)."""
        super().__init__()
        self._defaults = defaults or StreamRequest(bandwidth=0, base=None)
        self._checks: list[Preflight] = []
        self._estimate_failure = ""
        self._host = host
        self._domain = domain
        self._disks = disks
        # A base only makes sense for one disk with at least two backing layers (keeping the nearest
        # layer as base would pull nothing).
        self._bases = disks[0].chain[1:] if len(disks) == 1 and supports_base else ()

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(Text("Start streaming", style="bold"), classes="title")
            yield Label(self._what(), id="stream-what")
            yield Label("Bandwidth limit (binary units, per second):")
            given = self._defaults
            yield BandwidthInput(format_bandwidth(given.bandwidth) if given.bandwidth else "", id="bandwidth")
            yield Static("", id="bandwidth-error", classes="error")
            with Horizontal(classes="pair"):
                with Vertical():
                    yield Label("Chunk size (optional):")
                    yield ChunkInput(format_size(given.chunk) if given.chunk else "", id="chunk")
                with Vertical(classes="narrow"):
                    yield Label("Gap, seconds:")
                    yield GapInput(f"{given.gap:g}" if given.gap else "", id="gap")
            yield Static(Text(CHUNK_HINT, style="dim"), id="chunk-error", classes="hint")
            yield Static(Text("reading what it will copy…", style="dim"), id="estimate", classes="hint")
            if self._bases:
                yield Label("Pull down to:")
                options: list[tuple[Text, str]] = [(Text("whole chain (no base)"), WHOLE_CHAIN)]
                for depth, layer in enumerate(self._bases, start=2):
                    options.append((Text.assemble(f"keep layer {depth}: ", safe(layer.path)), layer.path))
                yield Select(options, value=WHOLE_CHAIN, allow_blank=False, id="base")
            with Horizontal(classes="buttons"):
                yield Button("Start", variant="primary", id="start")
                yield Button("Cancel", id="cancel")

    def _what(self) -> Text:
        text = Text.assemble(safe(self._host, "dim"), "  ", safe(self._domain, "bold"), " / ")
        text.append_text(Text(", ").join(safe(disk.target, "bold") for disk in self._disks))
        if len(self._disks) == 1:
            layers = len(self._disks[0].chain)
            text.append(f"  ({counted(layers, 'backing layer')})", style="dim")
        return text

    def on_mount(self) -> None:
        self.query_one("#bandwidth", BandwidthInput).focus()

    @on(Input.Changed)
    def _check(self, event: Input.Changed) -> None:
        result = event.validation_result
        valid = result is None or result.is_valid
        reason = "" if valid or result is None else result.failures[0].description
        if event.input.id == "bandwidth":
            self.query_one("#bandwidth-error", Static).update(Text(reason or ""))
            self._show_estimate()
        else:
            # One line under both chunk fields: the error, else what chunks do.
            self._chunk_line(reason or "")
        fields = self.query(Input)
        self.query_one("#start", Button).disabled = not all(f.is_valid for f in fields if f.validators)

    def _chunk_line(self, reason: str) -> None:
        # The line explains chunks until a field holds something wrong, then says what.
        line = Text(reason, style="bold red") if reason else Text(CHUNK_HINT, style="dim")
        self.query_one("#chunk-error", Static).update(line)

    @on(Input.Submitted)
    @on(Button.Pressed, "#start")
    def _start(self) -> None:
        try:
            bandwidth = bandwidth_of(self.query_one("#bandwidth", BandwidthInput).value)
        except InvalidInput as exc:
            # Enter in a field that holds an invalid value: keep the dialog open, say why.
            self.query_one("#bandwidth-error", Static).update(Text(str(exc)))
            return
        try:
            chunk = chunk_of(self.query_one("#chunk", ChunkInput).value)
            gap = gap_of(self.query_one("#gap", GapInput).value)
        except InvalidInput as exc:
            self._chunk_line(visible(str(exc)))
            return
        base: str | None = None
        if self._bases:
            value = self.query_one("#base", Select).value
            base = None if value == WHOLE_CHAIN or not isinstance(value, str) else value
        request = StreamRequest(bandwidth=bandwidth, base=base, chunk=chunk, gap=gap)
        crowded = [check for check in self._checks if check.fits is False]
        if not crowded:
            self.dismiss(request)
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.dismiss(request)

        question = Text("\n").join(Text(check.reason) for check in crowded)
        self.app.push_screen(ConfirmScreen("Not enough room", question, yes="Start anyway"), answered)

    @on(Estimated)
    def _estimated(self, message: Estimated) -> None:
        self._checks, self._estimate_failure = message.checks, message.failure
        self._show_estimate()

    def _show_estimate(self) -> None:
        """What the streams copy, how long at the limit typed, and whether they fit."""
        if not self._checks and not self._estimate_failure:
            return
        line = self.query_one("#estimate", Static)
        if self._estimate_failure:
            line.update(Text(f"cannot tell what it copies: {self._estimate_failure}", style="dim"))
            return
        try:
            bandwidth = bandwidth_of(self.query_one("#bandwidth", BandwidthInput).value)
        except InvalidInput:
            bandwidth = 0
        copies = [check.bytes_to_copy for check in self._checks]
        total = None if None in copies else sum(c for c in copies if c is not None)
        text = Text("copies " + ("an unknown amount" if total is None else format_size(total)))
        if total is not None and bandwidth > 0:
            text.append(f", about {format_duration(total / bandwidth)} at {format_bandwidth(bandwidth)}")
        crowded = [check for check in self._checks if check.fits is False]
        if crowded:
            text.append("; does not fit: ", style="bold red")
            text.append(crowded[0].reason, style="red")
        elif all(check.fits for check in self._checks):
            free = min(check.free_bytes or 0 for check in self._checks)
            text.append(f"; fits ({format_size(free)} free)", style="green")
        else:
            text.append("; " + next(c.reason for c in self._checks if c.reason), style="dim")
        line.update(text)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        """Close without starting anything."""
        self.dismiss(None)
