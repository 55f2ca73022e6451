"""Off the UI thread: the poll loop and the user's requests, each reporting back by message.

The poll loop runs in a thread worker whose every wait is bounded. Each request runs in a daemon
thread of its own: it may block on a host that stopped answering, and must neither hold up the
screen nor keep the app from quitting.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import partial

from textual.message import Message
from textual.worker import Worker

from blocktui.core.errors import BlocktuiError
from blocktui.core.model import Disk, JobKey
from blocktui.core.scheduler import HostPolicy
from blocktui.core.text import visible
from blocktui.engine import Engine
from blocktui.ui.board import read_board
from blocktui.ui.format import format_bandwidth
from blocktui.ui.messages import ActionDone, ActionFailed, DiskMapRead, SnapshotReady
from blocktui.ui.screens.stream_dialog import StreamDialog, StreamRequest

#: How a result reaches the screen (``post_message`` is thread-safe).
Post = Callable[[Message], object]


def job_name(key: JobKey) -> str:
    """A job as the outcome lines name it: ``web01/vda``, host strings made visible."""
    return f"{visible(key.domain)}/{visible(key.disk)}"


def poll(engine: Engine, post: Post, worker: Worker[None], open_wait: float) -> None:
    """Open the session and take over orphaned plans, then step, post, wait; polls never overlap.

    Args:
        open_wait: how long to wait for hosts to connect (or plans to be taken over) before the
            first board; slower hosts join when they answer.
    """
    engine.open(timeout=open_wait)
    try:
        engine.reattach(timeout=open_wait)
    except BlocktuiError as exc:
        post(ActionFailed("carry on earlier plans", visible(str(exc))))
    said = ""

    def failed(exc: Exception) -> None:
        # A host's error, or a bug: polling must go on for every host. Say it once, not twice a
        # second, while the same problem lasts.
        nonlocal said
        now = str(exc) if isinstance(exc, BlocktuiError) else f"{type(exc).__name__}: {exc}"
        if now != said:
            said = now
            post(ActionFailed("poll", visible(now)))

    for snapshot in engine.polls(stop=lambda: worker.is_cancelled, on_error=failed):
        try:
            board = read_board(engine, snapshot)
        except Exception as exc:  # a bug in the board: the loop goes on
            failed(exc)
        else:
            said = ""
            post(SnapshotReady(board))
        if worker.is_cancelled:
            break


class Requests:
    """Every change the user asks for: where it goes (a plan or a bare job), run off the UI thread.

    Each outcome comes back as ``ActionDone`` or ``ActionFailed``.
    """

    def __init__(self, engine: Engine, post: Post) -> None:
        self.engine = engine
        self._post = post

    def stream(self, keys: list[JobKey], request: StreamRequest) -> None:
        """Hand each disk to the planner in order (its queue keeps that order); report each outcome."""
        self._in_background("stream", partial(self._queue_streams, keys, request))

    def abort(self, key: JobKey) -> None:
        """Drop a plan as a whole (queued, between chunks or running), or abort a bare job; an
        abort beside another job of the domain waits for the guard's turn."""
        call = partial(self.engine.abort, key)
        self._run(f"abort {job_name(key)}", call)

    def set_limit(self, key: JobKey, bandwidth: int) -> None:
        """Re-throttle a job (the engine tells a plan, whose limit re-divides the budget, from a bare job)."""
        self._run(
            f"limit {job_name(key)} to {format_bandwidth(bandwidth)}",
            partial(self.engine.set_speed, key, bandwidth),
        )

    def pause_or_resume(self, key: JobKey) -> None:
        """Resume what is paused (or about to pause); pause anything else (the engine decides how)."""
        verb = "resume" if self.engine.resumes(key) else "pause"
        self._run(f"{verb} {job_name(key)}", partial(self.engine.toggle_pause, key))

    def preflight(self, keys: list[JobKey], post: Post) -> None:
        """Read what streaming ``keys`` would copy and whether it fits; ``post`` the outcome."""

        def estimate() -> None:
            try:
                checks = [self.engine.preflight(key) for key in keys]
            except BlocktuiError as exc:
                post(StreamDialog.Estimated([], visible(str(exc))))
            else:
                post(StreamDialog.Estimated(checks))

        self._in_background("preflight", estimate)

    def disk_map(self, key: JobKey, disk: Disk) -> None:
        """Read where ``disk``'s data lives (``qemu-img map`` runs here, never on the UI thread)."""

        def read() -> None:
            try:
                found = self.engine.disk_map(key, disk)
            except BlocktuiError as exc:
                self._post(DiskMapRead(key, None, visible(str(exc))))
            except Exception as exc:  # a bug: one line in the pane, never a traceback
                self._post(DiskMapRead(key, None, visible(f"{type(exc).__name__}: {exc}")))
            else:
                self._post(DiskMapRead(key, found))

        self._in_background(f"map {job_name(key)}", read)

    def set_policy(self, what: str, policy: HostPolicy, host: str) -> None:
        """Change a host's queue and budget (``what`` names it in the outcome line)."""
        self._run(what, partial(self.engine.set_policy, policy, host))

    def clear_finished(self) -> None:
        """Forget every finished job."""
        self._run("clear finished jobs", self.engine.clear_finished)

    def refresh(self) -> None:
        """Re-read domains, disks and chains from every host."""
        self._run("refresh", self.engine.refresh_domains)

    def _queue_streams(self, keys: list[JobKey], request: StreamRequest) -> None:
        for key in keys:
            add = partial(
                self.engine.add_stream,
                key,
                bandwidth=request.bandwidth,
                base=request.base,
                chunk=request.chunk,
                gap=request.gap,
            )
            self._report(f"stream {job_name(key)}", add, done=f"stream {job_name(key)} queued")

    def _run(self, what: str, call: Callable[[], object]) -> None:
        """Run one request in a daemon thread of its own; report the outcome as a message."""
        self._in_background(what, partial(self._report, what, call))

    def _in_background(self, name: str, work: Callable[[], None]) -> None:
        # Not a Textual worker: those run on the event loop's executor, whose threads are joined
        # when the app ends, so one action stuck in a host that stopped answering would hang quitting.
        threading.Thread(target=work, name=f"blocktui-action {name}", daemon=True).start()

    def _report(self, what: str, call: Callable[[], object], done: str | None = None) -> None:
        """Run ``call``; post ``done`` (else ``what``) when it worked, ``what`` and the reason when not."""
        try:
            call()
        except BlocktuiError as exc:
            self._post(ActionFailed(what, visible(str(exc))))
        except Exception as exc:  # a bug: still one line on screen, never a traceback
            self._post(ActionFailed(what, visible(f"{type(exc).__name__}: {exc}")))
        else:
            self._post(ActionDone(done or what))
