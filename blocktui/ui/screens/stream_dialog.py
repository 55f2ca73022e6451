"""Ask for a stream's limit (and base) before starting it on one disk or on all disks of a domain."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static

from blocktui.core.errors import InvalidInput
from blocktui.core.model import Disk
from blocktui.ui.format import safe
from blocktui.ui.widgets.bandwidth import BandwidthInput, bandwidth_of

#: The Select value for "pull every backing image" (None cannot be a Select value).
WHOLE_CHAIN = "\0whole"


@dataclass(frozen=True)
class StreamRequest:
    """What the user asked for.

    Attributes:
        bandwidth: limit in bytes/s, 0 for unlimited.
        base: the chain layer to keep (and everything below it); None pulls the whole chain.
    """

    bandwidth: int
    base: str | None


class StreamDialog(ModalScreen[StreamRequest | None]):
    """Bandwidth (validated as typed) and base for a new stream; dismisses with None on cancel."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="stream.cancel", tooltip="Close without starting"),
    ]

    def __init__(self, host: str, domain: str, disks: list[Disk], *, supports_base: bool) -> None:
        super().__init__()
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
            yield BandwidthInput(id="bandwidth")
            yield Static("", id="bandwidth-error", classes="error")
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
            text.append(f"  ({layers} backing layer{'s' if layers != 1 else ''})", style="dim")
        return text

    def on_mount(self) -> None:
        self.query_one("#bandwidth", BandwidthInput).focus()

    @on(Input.Changed, "#bandwidth")
    def _check(self, event: Input.Changed) -> None:
        valid = event.validation_result is None or event.validation_result.is_valid
        reason = (
            ""
            if valid or event.validation_result is None
            else event.validation_result.failures[0].description
        )
        self.query_one("#bandwidth-error", Static).update(Text(reason or ""))
        self.query_one("#start", Button).disabled = not valid

    @on(Input.Submitted, "#bandwidth")
    @on(Button.Pressed, "#start")
    def _start(self) -> None:
        try:
            bandwidth = bandwidth_of(self.query_one("#bandwidth", BandwidthInput).value)
        except InvalidInput as exc:
            # Enter in a field that holds an invalid value: keep the dialog open, say why.
            self.query_one("#bandwidth-error", Static).update(Text(str(exc)))
            return
        base: str | None = None
        if self._bases:
            value = self.query_one("#base", Select).value
            base = None if value == WHOLE_CHAIN or not isinstance(value, str) else value
        self.dismiss(StreamRequest(bandwidth=bandwidth, base=base))

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        """Close without starting anything."""
        self.dismiss(None)
