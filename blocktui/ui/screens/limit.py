"""Ask for an exact bandwidth limit for a running job."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from blocktui.core.errors import InvalidInput
from blocktui.core.units import format_bandwidth
from blocktui.ui.widgets.bandwidth import BandwidthInput, bandwidth_of


class LimitDialog(ModalScreen[int | None]):
    """A validated bandwidth field; dismisses with bytes/s (0 = unlimited) or None on cancel."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="limit.cancel", tooltip="Close without changing the limit"),
    ]

    def __init__(self, what: Text, current: int) -> None:
        super().__init__()
        self._what = what
        self._current = current

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(Text("Set bandwidth limit", style="bold"), classes="title")
            yield Label(self._what)
            yield Label(Text(f"now: {format_bandwidth(self._current)}", style="dim"))
            yield BandwidthInput(id="bandwidth")
            yield Static("", id="bandwidth-error", classes="error")
            with Horizontal(classes="buttons"):
                yield Button("Set", variant="primary", id="set")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#bandwidth", BandwidthInput).focus()

    @on(Input.Changed, "#bandwidth")
    def _check(self, event: Input.Changed) -> None:
        result = event.validation_result
        valid = result is None or result.is_valid
        reason = "" if valid or result is None else result.failures[0].description
        self.query_one("#bandwidth-error", Static).update(Text(reason or ""))
        self.query_one("#set", Button).disabled = not valid

    @on(Input.Submitted, "#bandwidth")
    @on(Button.Pressed, "#set")
    def _set(self) -> None:
        try:
            bandwidth = bandwidth_of(self.query_one("#bandwidth", BandwidthInput).value)
        except InvalidInput as exc:
            self.query_one("#bandwidth-error", Static).update(Text(str(exc)))
            return
        self.dismiss(bandwidth)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        """Close without changing anything."""
        self.dismiss(None)
