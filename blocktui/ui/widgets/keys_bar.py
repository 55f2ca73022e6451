"""The keys that apply now, on the bottom line.

Textual's ``Footer`` mounts a widget per key again whenever the keys that apply change (a job that
starts or ends under the cursor), and a layout of the whole screen follows, tens of milliseconds
that would hold back the frame saying how a job ended. This bar is one line of text, repainted.
"""

from __future__ import annotations

from typing import ClassVar

from rich.style import Style
from rich.text import Text
from textual.binding import Binding
from textual.screen import Screen
from textual.widget import Widget


class KeysBar(Widget):
    """One line: each key that applies, then what it does; keys that apply to nothing now are dim.

    A click on a key presses it.
    """

    COMPONENT_CLASSES: ClassVar[set[str]] = {"keys-bar--key", "keys-bar--description"}
    DEFAULT_CSS = """
    KeysBar {
        dock: bottom;
        height: 1;
        background: $footer-background;
        color: $footer-foreground;
    }
    KeysBar > .keys-bar--key {
        color: $footer-key-foreground;
        background: $footer-key-background;
        text-style: bold;
    }
    KeysBar > .keys-bar--description {
        color: $footer-description-foreground;
        background: $footer-description-background;
    }
    """

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._bindings_changed)

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def _bindings_changed(self, _screen: Screen[object]) -> None:
        self.refresh()

    def render(self) -> Text:
        key_style = self.get_component_rich_style("keys-bar--key")
        words_style = self.get_component_rich_style("keys-bar--description")
        text = Text(no_wrap=True, overflow="crop", end="")
        for binding, enabled in self._shown():
            pressed = Style.from_meta({"@click": f"app.simulate_key({binding.key!r})"})
            dim = Style(dim=not enabled)
            text.append(f" {self.app.get_key_display(binding)} ", key_style + dim + pressed)
            text.append(f"{binding.description} ", words_style + dim + pressed)
        return text

    def _shown(self) -> list[tuple[Binding, bool]]:
        """The bindings to show, one per action, in the order they are declared; the palette last."""
        palette = self.app.COMMAND_PALETTE_BINDING if self.app.ENABLE_COMMAND_PALETTE else None
        shown: list[tuple[Binding, bool]] = []
        actions: set[str] = set()
        last: tuple[Binding, bool] | None = None
        for key, (_node, binding, enabled, _tooltip) in self.screen.active_bindings.items():
            if key == palette:
                last = (binding, enabled)
            elif binding.show and binding.action not in actions:
                actions.add(binding.action)
                shown.append((binding, enabled))
        return [*shown, last] if last is not None else shown
