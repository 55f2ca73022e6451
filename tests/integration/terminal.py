"""A program in a real terminal: a private tmux server runs it, tests read its screen as text.

The dashboard draws for a terminal, so what a user sees is what ``tmux capture-pane`` gives back:
the screen's characters, line by line, after Textual has painted them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

#: Seconds between two reads of the screen while waiting for something to appear.
READ_EVERY = 0.1


class Terminal:
    """One tmux pane of ``columns`` x ``lines`` running ``argv``, on a tmux server of its own.

    The pane stays after the program exits (``remain-on-exit``), so a program that died early
    leaves its last screen, traceback included, for the failure message.
    """

    def __init__(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        work: Path,
        *,
        columns: int = 160,
        lines: int = 50,
    ) -> None:
        # A server of its own, its socket in ``work``: nobody else's sessions, nothing left behind.
        self.socket = work / "tmux.sock"
        conf = work / "tmux.conf"
        conf.write_text("set -g remain-on-exit on\nset -g status off\n")
        # The server is started by this call and hands its environment to the program.
        size = ["-x", str(columns), "-y", str(lines)]
        self._tmux(
            "-f",
            str(conf),
            "new-session",
            "-d",
            "-s",
            "bt",
            *size,
            *argv,
            env={**env, "TERM": "xterm-256color"},
        )
        self.pid = int(self._tmux("display-message", "-p", "-t", "bt", "#{pane_pid}").strip())

    def _tmux(self, *args: str, env: Mapping[str, str] | None = None) -> str:
        done = subprocess.run(
            ["tmux", "-S", str(self.socket), *args],
            capture_output=True,
            text=True,
            env=dict(env) if env is not None else None,
            timeout=30,
            check=False,
        )
        if done.returncode != 0:
            raise AssertionError(f"tmux {args[0]} failed: {done.stderr.strip()}")
        return done.stdout

    def text(self) -> str:
        """The screen as it is now, one line per row."""
        return self._tmux("capture-pane", "-p", "-t", "bt")

    def running(self) -> bool:
        """Whether the program is still running (its pane is not dead)."""
        return self._tmux("display-message", "-p", "-t", "bt", "#{pane_dead}").strip() != "1"

    def wait_for(self, ready: Callable[[str], bool], what: str, timeout: float = 60.0) -> tuple[str, float]:
        """Read the screen until ``ready(screen)``; return that screen and when the read ended.

        Raises:
            AssertionError: the program exited, or ``timeout`` seconds passed; with the last screen.
        """
        deadline = time.monotonic() + timeout
        while True:
            screen = self.text()
            seen = time.monotonic()
            if ready(screen):
                return screen, seen
            if not self.running():
                raise AssertionError(f"the program exited before {what}; its last screen:\n{screen}")
            if seen > deadline:
                raise AssertionError(f"no {what} within {timeout:g} s; the screen:\n{screen}")
            time.sleep(READ_EVERY)

    def close(self) -> None:
        """End the program (a hang-up, as when a terminal closes; SIGKILL if that fails) and tmux."""
        try:
            if self.running():
                os.kill(self.pid, signal.SIGHUP)
                deadline = time.monotonic() + 10
                while self.running() and time.monotonic() < deadline:
                    time.sleep(READ_EVERY)
                if self.running():  # still the pane's own process: tmux has not reaped it
                    os.kill(self.pid, signal.SIGKILL)
        finally:
            subprocess.run(
                ["tmux", "-S", str(self.socket), "kill-server"], capture_output=True, timeout=30, check=False
            )
            self.socket.unlink(missing_ok=True)
