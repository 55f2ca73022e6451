"""Host calls with a deadline: a call that the host never answers fails instead of blocking forever."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Concatenate, ParamSpec, Protocol, TypeVar

from blocktui.core.errors import NotAnswering

P = ParamSpec("P")
T = TypeVar("T")


class Deadline:
    """Runs each call in a helper thread and waits at most ``timeout`` seconds for it.

    A library call blocked on a frozen host cannot be interrupted, so the helper is a daemon thread
    left to finish (or not) on its own. While one is stuck, later calls fail at once instead of
    piling up more stuck threads; ``on_stuck`` and ``on_unstuck`` tell the owner when the host
    stops and starts answering again (called with the deadline's lock held: they must not make
    bounded calls themselves).
    """

    def __init__(
        self,
        host: str,
        timeout: float,
        *,
        on_stuck: Callable[[], None] | None = None,
        on_unstuck: Callable[[], None] | None = None,
    ) -> None:
        self.host = host
        self.timeout = timeout
        self._on_stuck = on_stuck
        self._on_unstuck = on_unstuck
        self._lock = threading.Lock()
        self._stuck = 0
        self._inside = threading.local()

    @property
    def stuck(self) -> bool:
        """True while a call that timed out has not returned yet."""
        with self._lock:
            return self._stuck > 0

    def error(self) -> NotAnswering:
        """The one-line error a call that timed out raises."""
        return NotAnswering(
            f"{self.host}: host not answering (no reply within {self.timeout:g} s); "
            "check that the daemon runs and is not stopped or overloaded"
        )

    def run(self, function: Callable[[], T]) -> T:
        """``function()``, or ``NotAnswering`` once ``timeout`` passes (or while an earlier call is stuck).

        Calls made from inside a bounded call run directly: the outer deadline covers them.
        """
        if getattr(self._inside, "active", False):
            return function()
        if self.stuck:
            raise self.error()
        done = threading.Event()
        outcome: list[T] = []
        failure: list[BaseException] = []
        late = False  # set (under the lock) once the caller gave up on this call

        def work() -> None:
            nonlocal late
            self._inside.active = True
            try:
                outcome.append(function())
            except BaseException as exc:  # handed to the caller's thread, re-raised there
                failure.append(exc)
            finally:
                with self._lock:
                    done.set()
                    if late:
                        self._stuck -= 1
                        # Under the lock, so "answering again" never overtakes "not answering".
                        if self._stuck == 0 and self._on_unstuck is not None:
                            self._on_unstuck()

        threading.Thread(target=work, name=f"blocktui-call-{self.host}", daemon=True).start()
        if not done.wait(self.timeout):
            with self._lock:
                if not done.is_set():
                    late = True
                    self._stuck += 1
                    if self._stuck == 1 and self._on_stuck is not None:
                        self._on_stuck()
            if late:
                raise self.error()
        if failure:
            raise failure[0]
        return outcome[0]


class HasDeadline(Protocol):
    """An object whose host calls may be bounded."""

    @property
    def deadline(self) -> Deadline | None:
        """The deadline for host calls, or None for unbounded calls."""


S = TypeVar("S", bound=HasDeadline)


def bounded(method: Callable[Concatenate[S, P], T]) -> Callable[Concatenate[S, P], T]:
    """Run a method under its object's ``deadline`` (directly when it has none)."""

    @functools.wraps(method)
    def wrapper(self: S, /, *args: P.args, **kwargs: P.kwargs) -> T:
        deadline = self.deadline
        if deadline is None:
            return method(self, *args, **kwargs)
        return deadline.run(lambda: method(self, *args, **kwargs))

    return wrapper
