"""Change a host's queue (max-active) or bandwidth budget while streams run."""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar, Literal

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.validation import ValidationResult, Validator
from textual.widgets import Button, Input, Label, Static

from blocktui.core.errors import InvalidInput
from blocktui.core.scheduler import HostPolicy
from blocktui.core.text import visible
from blocktui.core.units import format_bandwidth
from blocktui.ui.format import safe
from blocktui.ui.widgets.bandwidth import BandwidthInput, bandwidth_of

#: Words that mean "no limit" in the max-active field (an empty field does too).
NO_LIMIT = frozenset({"", "none", "unlimited", "all", "∞"})

Field = Literal["max_active", "budget"]


def max_active_of(text: str) -> int | None:
    """The max-active a field holds: a whole number from 1, or None for no limit.

    Raises:
        InvalidInput: anything else, with what to type instead.
    """
    stripped = text.strip().lower()
    if stripped in NO_LIMIT:
        return None
    try:
        value = int(stripped)
    except ValueError:
        raise InvalidInput(
            f"{text!r} is not a whole number; type 1 or more, or leave empty for no limit"
        ) from None
    if value < 1:
        raise InvalidInput(f"max-active must be 1 or more (leave empty for no limit), not {value}")
    return value


class MaxActiveValidator(Validator):
    """Accepts exactly what ``max_active_of`` accepts."""

    def validate(self, value: str) -> ValidationResult:
        try:
            max_active_of(value)
        except InvalidInput as exc:
            return self.failure(visible(str(exc)))
        return self.success()


class PolicyDialog(ModalScreen[HostPolicy | None]):
    """One validated field (max-active or budget); dismisses with the host's new policy or None."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="policy.cancel", tooltip="Close without changing anything"),
    ]

    def __init__(self, host: str, policy: HostPolicy, field: Field) -> None:
        """Ask for one limit of ``host`` (a label, shown escaped), starting from ``policy``."""
        super().__init__()
        self._host = host
        self._policy = policy
        self._field = field

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            if self._field == "max_active":
                current = str(self._policy.max_active) if self._policy.max_active else "no limit"
                yield Label(Text("Streams at once on a host", style="bold"), classes="title")
                yield Label(Text.assemble("host ", safe(self._host, "bold"), f"  now: {current}"))
                yield Label("Run at most this many streams; the others wait in the queue (empty: no limit):")
                value = str(self._policy.max_active or "")
                yield Input(
                    value, placeholder="no limit (or 1, 2, …)", validators=[MaxActiveValidator()], id="value"
                )
            else:
                budget = format_bandwidth(self._policy.budget) if self._policy.budget else "none"
                yield Label(Text("Bandwidth budget of a host", style="bold"), classes="title")
                yield Label(Text.assemble("host ", safe(self._host, "bold"), f"  now: {budget}"))
                yield Label("The sum of its streams' rates, shared among them (empty: no budget):")
                yield BandwidthInput(id="value")
            yield Static("", id="value-error", classes="error")
            with Horizontal(classes="buttons"):
                yield Button("Set", variant="primary", id="set")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#value", Input).focus()

    @on(Input.Changed, "#value")
    def _check(self, event: Input.Changed) -> None:
        result = event.validation_result
        valid = result is None or result.is_valid
        reason = "" if valid or result is None else result.failures[0].description
        self.query_one("#value-error", Static).update(Text(reason or ""))
        self.query_one("#set", Button).disabled = not valid

    def _chosen(self) -> HostPolicy:
        text = self.query_one("#value", Input).value
        if self._field == "max_active":
            return replace(self._policy, max_active=max_active_of(text))
        return replace(self._policy, budget=bandwidth_of(text))

    @on(Input.Submitted, "#value")
    @on(Button.Pressed, "#set")
    def _set(self) -> None:
        try:
            policy = self._chosen()
        except InvalidInput as exc:
            self.query_one("#value-error", Static).update(Text(visible(str(exc))))
            return
        self.dismiss(policy)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        """Close without changing anything."""
        self.dismiss(None)
