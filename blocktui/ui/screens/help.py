"""Every key the dashboard answers to, read from the bindings themselves so it cannot drift."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Static


def keys_text(sections: Iterable[tuple[str, Iterable[Binding]]], key_display: Callable[[str], str]) -> Text:
    """A two-column list of keys and what they do, one section per screen."""
    text = Text()
    for title, bindings in sections:
        text.append(f"{title}\n", style="bold underline")
        for binding in bindings:
            keys = ", ".join(key_display(key) for key in binding.key.split(","))
            text.append(f"  {keys:<12}", style="bold cyan")
            text.append(binding.description)
            if binding.tooltip:
                text.append(f" — {binding.tooltip}", style="dim")
            text.append("\n")
        text.append("\n")
    text.append("Every action is also in the command palette (ctrl+p).\n", style="dim")
    text.append("Quitting leaves running jobs running on their hosts.", style="dim")
    return text


class HelpScreen(ModalScreen[None]):
    """A modal list of keys; any of escape, ? or q closes it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,question_mark,q", "close", "Close", id="help.close", tooltip="Back to the dashboard"),
    ]

    def __init__(self, text: Text) -> None:
        super().__init__()
        self._text = text

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="help"):
            yield Label(Text("blocktui keys", style="bold"), classes="title")
            with VerticalScroll():
                yield Static(self._text)

    def action_close(self) -> None:
        """Back to where we were."""
        self.dismiss(None)
