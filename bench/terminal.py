"""A real terminal for the dashboard: a pseudo-terminal of fixed size, drained and read as a screen.

The measured process is the ``blocktui`` command itself (no shell between), its controlling
terminal the pty's slave side, so it draws exactly what it would draw for a user. A thread here
reads everything it writes as soon as it is written (a full pty would stall the dashboard) and,
when asked to, feeds it to a terminal emulator (``pyte``) so the bench can see when a given text
appears on the screen. Every read is stamped with ``time.monotonic()``: one clock for every
process of the host, as the observer's.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import struct
import subprocess
import termios
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from bench.host import cpu_seconds

COLUMNS = 160
LINES = 50
#: Output read after a pause at least this long starts a new burst: one screen update. The
#: dashboard writes a frame in a few milliseconds and refreshes at most every 0.5 s.
BURST_GAP = 0.1
#: What a screen predicate is given: the screen's text, one string per line.
Lines = Sequence[str]


def _controlling_tty() -> None:
    """In the child, after ``setsid``: make its stdin (the pty) the controlling terminal."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def peak_rss_mib(pid: int) -> float:
    """A running process's peak resident set (``VmHWM``), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Terminal:
    """``argv`` running in a ``columns`` x ``lines`` pseudo-terminal, its output drained continuously.

    Attributes:
        started: monotonic time just before the process was started.
        first_output: when its first output was read (0 until then).
        read_at: when its latest output was read.
        bytes_read: everything the process has written so far, counted.
        bursts: how many times output started after a pause of ``BURST_GAP`` (screen updates).
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        columns: int = COLUMNS,
        lines: int = LINES,
        screen: bool = True,
    ) -> None:
        """Start ``argv``; ``screen`` False only drains (no emulator: the cheapest reader)."""
        self._master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", lines, columns, 0, 0))
        self._screen: Any = None
        self._stream: Any = None
        if screen:
            import pyte

            self._screen = pyte.Screen(columns, lines)
            self._stream = pyte.ByteStream(self._screen)
        self._changed = threading.Condition()
        self.bytes_read = 0
        self.version = 0
        self.read_at = 0.0
        self.first_output = 0.0
        self.bursts = 0
        environment = {**os.environ, "TERM": "xterm-256color", **(env or {})}
        for name in ("COLUMNS", "LINES", "TMUX", "NO_COLOR"):
            environment.pop(name, None)
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            list(argv),
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=environment,
            start_new_session=True,
            preexec_fn=_controlling_tty,  # noqa: PLW1509 - only an ioctl, before exec
        )
        os.close(slave)
        self._reader = threading.Thread(target=self._drain, name="pty-drain", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu(self) -> float:
        """The process's CPU seconds so far, every thread (utime + stime from /proc)."""
        return cpu_seconds(self.pid)

    def _drain(self) -> None:
        while True:
            try:
                chunk = os.read(self._master, 65536)
            except OSError:  # EIO: the process closed the terminal
                chunk = b""
            if not chunk:
                with self._changed:
                    self.version = -1
                    self._changed.notify_all()
                return
            now = time.monotonic()
            with self._changed:
                if now - self.read_at >= BURST_GAP:
                    self.bursts += 1
                self.read_at = now
                self.first_output = self.first_output or now
                self.bytes_read += len(chunk)
                if self._stream is not None:
                    self._stream.feed(chunk)
                self.version += 1
                self._changed.notify_all()

    def lines(self) -> list[str]:
        """The screen's text now."""
        with self._changed:
            return list(self._screen.display) if self._screen is not None else []

    def wait_for(self, ready: Callable[[Lines], bool], timeout: float) -> float:
        """Block until ``ready(screen lines)`` holds after some output; return when that output was read.

        The time is when the last bytes before the check were read from the pty, so the check's
        own cost does not count (output read in several pieces counts from the last one).
        """
        if self._screen is None:
            raise RuntimeError("this terminal only drains: no screen to read")
        deadline = time.monotonic() + timeout
        with self._changed:
            seen = -2
            while True:
                if self.version != seen:
                    seen = self.version
                    if ready(self._screen.display):
                        return self.read_at
                if self.version == -1:
                    raise RuntimeError(f"the dashboard exited: {self.tail()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"not on the screen in {timeout:.0f} s:\n{self.tail()}")
                self._changed.wait(left)

    def tail(self) -> str:
        """The screen's non-empty lines (for error messages)."""
        return "\n".join(line.rstrip() for line in self.lines() if line.strip())

    def send(self, keys: bytes) -> None:
        """Type ``keys`` into the terminal."""
        os.write(self._master, keys)

    def close(self) -> int | None:
        """End the process (SIGTERM, then SIGKILL) and the terminal; return its exit code."""
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait(10)
        self._reader.join(5)
        with contextlib.suppress(OSError):
            os.close(self._master)
        return code

    def __enter__(self) -> Terminal:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()
