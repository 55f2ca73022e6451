"""The command palette: every dashboard action, offered only when it applies to the selection."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.screen import Screen

from blocktui.ui.screens.main import MainScreen

#: The app's own keys (the palette offers them too).
APP_BINDINGS = (
    Binding("question_mark", "help", "Help", id="help", tooltip="List every key"),
    Binding(
        "q", "quit", "Quit", id="quit", tooltip="Leave the dashboard; running jobs continue on the hosts"
    ),
)


def _bindings(screen: Screen[Any]) -> Iterator[tuple[Binding, Screen[Any] | None]]:
    """The main screen's bindings (run on that screen), then the app's (run on the app)."""
    if isinstance(screen, MainScreen):
        for binding in MainScreen.BINDINGS:
            if isinstance(binding, Binding) and binding.action not in {"back", "details"}:
                yield binding, screen
    for binding in APP_BINDINGS:
        yield binding, None


class DashboardCommands(Provider):
    """Offers each action by its description, with its key and tooltip as help."""

    def _commands(self) -> Iterator[tuple[str, str, Callable[[], Any]]]:
        screen = self.screen
        for binding, target in _bindings(screen):
            node = target if target is not None else self.app
            if not node.check_action(binding.action, ()):
                continue
            key = self.app.get_key_display(binding)
            # The palette parses help as markup: no brackets here (our own text, no host strings).
            help_text = f"{binding.tooltip} (key: {key})" if binding.tooltip else f"key: {key}"
            yield binding.description, help_text, partial(node.run_action, binding.action)

    async def discover(self) -> Hits:
        for title, help_text, command in self._commands():
            yield DiscoveryHit(title, command, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help_text, command in self._commands():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), command, help=help_text)
