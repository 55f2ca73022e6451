"""The dashboard application: an engine, one main screen, global keys and the palette."""

from __future__ import annotations

from typing import ClassVar

from textual.app import App
from textual.binding import Binding, BindingType

from blocktui.core.config import Config
from blocktui.core.text import jobs_continue
from blocktui.engine import Engine
from blocktui.ui.commands import APP_BINDINGS, DashboardCommands
from blocktui.ui.notices import Notifier
from blocktui.ui.screens.help import HelpScreen, keys_text
from blocktui.ui.screens.main import MainScreen


class BlocktuiApp(App[int]):
    """Live block jobs and plans on every host; jobs keep running on the hosts after quitting."""

    CSS_PATH = "app.tcss"
    TITLE = "blocktui"
    COMMANDS = App.COMMANDS | {DashboardCommands}
    BINDINGS: ClassVar[list[BindingType]] = list(APP_BINDINGS)

    def __init__(self, engine: Engine, *, poll: bool = True, settings: Config | None = None) -> None:
        """Create the app.

        Args:
            engine: what the dashboard shows and drives.
            poll: run the poll worker (tests that step the engine by hand turn it off).
            settings: the configuration file's theme, keys, notifications and stream defaults.
        """
        super().__init__()
        self.engine = engine
        self.settings = settings or Config()
        self.main = MainScreen(engine, poll=poll, defaults=self.settings)
        self.main.notifier = Notifier(bell=self.settings.bell, desktop=self.settings.desktop)

    def on_mount(self) -> None:
        if self.settings.theme is not None:
            if self.settings.theme in self.available_themes:
                self.theme = self.settings.theme
            else:
                self.warn(
                    f"theme {self.settings.theme!r} is unknown; themes: {', '.join(self.available_themes)}"
                )
        if self.settings.keys:
            self.set_keymap(dict(self.settings.keys))
        self.push_screen(self.main)
        journal = self.engine.journal
        if journal.warning:
            self.warn(journal.warning)
        journal.on_warning = self.warn

    def warn(self, message: str) -> None:
        """Show a warning that does not stop anything (the journal moved to memory); any thread."""
        try:
            self.call_from_thread(self.notify, message, severity="warning", timeout=20, markup=False)
        except RuntimeError:  # already on the app's thread
            self.notify(message, severity="warning", timeout=20, markup=False)

    def action_help(self) -> None:
        """Show every key, taken from the bindings themselves."""
        if isinstance(self.screen, HelpScreen):
            return
        sections = [
            ("Dashboard", [b for b in MainScreen.BINDINGS if isinstance(b, Binding)]),
            ("Everywhere", [b for b in self.BINDINGS if isinstance(b, Binding)]),
        ]
        text = keys_text(sections, lambda key: self.get_key_display(Binding(key, "")))
        self.push_screen(HelpScreen(text))

    def action_quit(self) -> None:  # type: ignore[override]
        """Stop polling and leave, saying that running jobs go on without us."""
        running = self.main.running_jobs()
        self.main.stop_polling()
        message = f"blocktui: {jobs_continue(running, len(self.engine.hosts))}."
        self.exit(0, message=message)
