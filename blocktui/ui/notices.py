"""Saying that a job ended: a toast, and if the configuration asks, the bell and a desktop notification.

The desktop notification is the terminal's own (OSC 777 and OSC 9, which most terminals that
notify understand), written to the controlling terminal in one write; its text has no control
characters and no field separators left in it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping

from textual.app import App
from textual.notifications import SeverityLevel

from blocktui.core.model import JobKey, JobState
from blocktui.core.text import printable
from blocktui.core.views import JobView

#: How each ending is shown (the rest are errors).
SEVERITY: dict[JobState, SeverityLevel] = {JobState.COMPLETED: "information", JobState.CANCELLED: "warning"}


def endings(before: Mapping[JobKey, JobView], after: Iterable[JobView]) -> list[JobView]:
    """Jobs seen running in ``before`` that ``after`` shows ended."""
    return [
        job
        for job in after
        if job.state.is_final and (old := before.get(job.key)) is not None and not old.state.is_final
    ]


def desktop_sequence(title: str, body: str) -> str:
    """The escape sequences that ask the terminal for a desktop notification."""
    title, body = (printable(text).replace(";", ",") for text in (title, body))
    return f"\x1b]777;notify;{title};{body}\x1b\\\x1b]9;{title}: {body}\x1b\\"


def _to_terminal(text: str) -> None:
    try:
        terminal = os.open("/dev/tty", os.O_WRONLY | os.O_NOCTTY)
    except OSError:
        return  # no controlling terminal: the toast says it anyway
    try:
        os.write(terminal, text.encode())
    finally:
        os.close(terminal)


class Notifier:
    """Announces endings on ``app``: always a toast; the bell and the desktop when asked."""

    def __init__(
        self, *, bell: bool = False, desktop: bool = False, write: Callable[[str], None] = _to_terminal
    ) -> None:
        self.bell = bell
        self.desktop = desktop
        self._write = write

    def announce(self, app: App[int], job: JobView) -> None:
        """Say how ``job`` ended (on the app's thread)."""
        what = f"{printable(job.key.domain)}/{printable(job.key.disk)}: {job.state.value}"
        reason = job.error or job.note
        message = f"{what} ({printable(reason)})" if reason else what
        severity = SEVERITY.get(job.state, "error")
        app.notify(message, title="job ended", severity=severity, timeout=10, markup=False)
        if self.bell:
            app.bell()
        if self.desktop:
            self._write(desktop_sequence("blocktui", message))
