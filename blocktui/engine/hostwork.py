"""One worker thread per host: that host's calls run there in order, so a host that stops answering
holds up only its own work, and no lock is ever held while a host is asked something.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures import wait as wait_all
from contextlib import suppress
from typing import Any, TypeVar

from blocktui.core.errors import NotAnswering

T = TypeVar("T")

_Task = tuple[Callable[[], Any], "Future[Any]"]


class HostWorker:
    """Runs callables for one host on a daemon thread, one at a time, in the order given.

    Daemon, and never joined: a call stuck in a host that stopped answering must not keep the
    process from quitting (the host keeps its jobs either way).
    """

    def __init__(self, name: str, clock: Callable[[], float]) -> None:
        self.name = name
        self._clock = clock
        self._lock = threading.Lock()
        self._tasks: queue.SimpleQueue[_Task | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._busy_since: float | None = None

    def submit(self, work: Callable[[], T]) -> Future[T]:
        """Queue ``work``; its result (or exception) arrives in the returned future.

        Work submitted from this worker's own thread runs at once, so a task may call methods
        that submit (waiting on the queue behind itself would never end).
        """
        future: Future[T] = Future()
        if threading.current_thread() is self._thread:
            _run(work, future)
            return future
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._serve, args=(self._tasks,), name=self.name, daemon=True
                )
                self._thread.start()
            self._tasks.put((work, future))
        return future

    def call(self, work: Callable[[], T], timeout: float | None = None) -> T:
        """Run ``work`` on this worker and wait for its result.

        Raises:
            NotAnswering: no result within ``timeout`` seconds (the work goes on in the worker).
        """
        try:
            return self.submit(work).result(timeout)
        except FutureTimeout:
            raise NotAnswering(f"{self.name}: host not answering (nothing back in {timeout:g} s)") from None

    def busy_for(self) -> float:
        """Seconds the current task has been running (0 when idle)."""
        since = self._busy_since
        return 0.0 if since is None else max(0.0, self._clock() - since)

    def stop(self) -> None:
        """Let the thread end after what it has queued; a later ``submit`` starts a new one."""
        with self._lock:
            if self._thread is None:
                return
            self._tasks.put(None)
            self._tasks = queue.SimpleQueue()
            self._thread = None

    def _serve(self, tasks: queue.SimpleQueue[_Task | None]) -> None:
        while (task := tasks.get()) is not None:
            work, future = task
            started = self._busy_since = self._clock()
            try:
                _run(work, future)
            finally:
                # A thread left behind by stop() must not clear the mark of the one after it.
                if self._busy_since == started and self._thread in (threading.current_thread(), None):
                    self._busy_since = None


def _run(work: Callable[[], T], future: Future[T]) -> None:
    if not future.set_running_or_notify_cancel():
        return
    try:
        future.set_result(work())
    except BaseException as exc:  # handed to whoever waits on the future
        future.set_exception(exc)


class Doorbell:
    """A wake-up rung from any thread, that can be waited on alone or beside futures (``wait_for``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: Done once rung, until the next ``wait`` has seen it.
        self.rung: Future[None] = Future()

    def ring(self) -> None:
        """Wake whoever waits (now, or in the next ``wait``)."""
        with self._lock:
            if not self.rung.done():
                self.rung.set_result(None)

    def wait(self, timeout: float) -> None:
        """Sleep until rung or ``timeout`` seconds pass; then be ready to be rung again."""
        with suppress(FutureTimeout):
            self.rung.result(timeout)
        with self._lock:
            if self.rung.done():
                self.rung = Future()


def wait_for(
    futures: Iterable[Future[Any]], timeout: float | None, interrupt: Future[None] | None = None
) -> None:
    """Wait until every future is done, ``interrupt`` (when given) is done, or ``timeout`` seconds
    pass, whichever comes first."""
    pending = {f for f in futures if not f.done()}
    if not pending:
        return
    if interrupt is None:
        wait_all(pending, timeout=timeout)
        return
    deadline = None if timeout is None else time.monotonic() + timeout
    while pending and not interrupt.done():
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            return
        done, _ = wait_all([*pending, interrupt], timeout=left, return_when=FIRST_COMPLETED)
        pending -= done
