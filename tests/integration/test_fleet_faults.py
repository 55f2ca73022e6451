"""A fleet host cut off over SSH (its sshd gone, or its packets dropped) while streams run on two
hosts: it is marked within 2 s of its first missed poll, the other host's job keeps moving and
takes changes, and the cut host comes back by itself, its job read from the host again."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress

import pytest

from blocktui.core.errors import BlocktuiError
from blocktui.core.model import ConnectionState, HostInfo, JobKey
from blocktui.core.views import JobView
from blocktui.engine import Engine, HostSpec, Journal, open_engine
from blocktui.engine.session import SILENT_AFTER
from blocktui.lab.firewall import dropped, firewall_usable

from .fleet_support import Fleet

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MARK_WITHIN = 2.0
#: The first poll to go unanswered starts at most a scan interval after the cut (a full scan
#: asks the host every 0.9 s; a throttled job's own polls may come less often).
FIRST_MISS = 0.9
#: How often the test reads what a front end would show (the dashboard reads every 0.25 s).
READ_EVERY = 0.1
SPEED = 256 * 1024  # 12 MiB at 256 KiB/s: 48 s, longer than the test needs


class Watched:
    """The engine's poll loop on a thread of its own, as the dashboard runs it; reads never wait on it."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="test-polls", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        for _snapshot in self.engine.polls(stop=self._stop.is_set, on_error=lambda _exc: None):
            pass

    def host(self, key: JobKey) -> HostInfo:
        return next(h for h in self.engine.session.host_states() if h.uri == key.host)

    def marked(self, key: JobKey) -> bool:
        info = self.host(key)
        return bool(info.silent_for) or info.state is not ConnectionState.CONNECTED

    def job(self, key: JobKey) -> JobView | None:
        return self.engine.job(key)

    def cur(self, key: JobKey) -> int:
        view = self.job(key)
        return -1 if view is None else view.cur

    def until(self, ready: Callable[[], bool], what: str, timeout: float) -> float:
        """Read until ``ready()``; when it was seen."""
        deadline = time.monotonic() + timeout
        while not ready():
            assert time.monotonic() < deadline, f"no {what} within {timeout:g} s"
            time.sleep(READ_EVERY)
        return time.monotonic()

    def stop(self) -> None:
        self._stop.set()
        self.engine.wake()
        self._thread.join(30)


@contextmanager
def _cut(fleet: Fleet, how: str, name: str) -> Iterator[None]:
    """Cut host ``name`` off for the block; reachable again after it (even when the test fails)."""
    if how == "traffic dropped":
        host = fleet.status(name)
        with dropped(host.address, host.port):
            yield
        return
    fleet.lab.cut_off(name)
    try:
        yield
    finally:
        fleet.lab.revive(name)


@pytest.mark.parametrize("how", ["sshd gone", "traffic dropped"])
def test_a_host_cut_off_over_ssh_is_marked_the_other_moves_and_it_comes_back_by_itself(
    fleet: Fleet, journal: Journal, how: str
) -> None:
    if how == "traffic dropped" and (why := firewall_usable()) is not None:
        pytest.skip(why)
    fleet.fresh("vm-2", "fleet-1", "fleet-3")
    uris = {name: fleet.status(name).uri for name in ("fleet-1", "fleet-3")}
    with ExitStack() as stack:
        # As the dashboard opens hosts: calls without a deadline, each host on its own worker.
        engine = open_engine(HostSpec(uris=tuple(uris.values())), stack, journal=journal)
        stack.callback(engine.close)
        engine.connect()
        cut, other = (engine.find_disk("vm-2", "vda", host=name) for name in ("fleet-3", "fleet-1"))
        for key in (cut, other):
            engine.session.backend(key.host).start_stream("vm-2", "vda", bandwidth=SPEED)
            stack.callback(_abort, engine, key)
        watched = Watched(engine)
        stack.callback(watched.stop)
        watched.until(lambda: watched.cur(cut) > 0 and watched.cur(other) > 0, "both jobs moving", 60)
        with _cut(fleet, how, "fleet-3"):
            started = time.monotonic()
            seen = watched.until(lambda: watched.marked(cut), "the mark", 15)
            assert seen - started <= FIRST_MISS + MARK_WITHIN + READ_EVERY, (
                f"marked after {seen - started:.2f} s"
            )
            last, moving = watched.cur(cut), watched.cur(other)
            watched.until(lambda: watched.cur(other) > moving, "the other host's job moving", 30)
            # The cut host's row keeps its last value; the other host still takes changes.
            assert watched.marked(cut) and watched.cur(cut) == last
            view = watched.job(cut)
            assert view is not None and not view.state.is_final
            engine.set_speed(other, 2 * SPEED)
            info = engine.session.backend(other.host).job_info("vm-2", "vda")
            assert info is not None and info.bandwidth == 2 * SPEED
            time.sleep(SILENT_AFTER)  # the cut lasts past the mark, as a real outage does
        # Back by itself (backoff), with its job read from the host: still running, further on.
        watched.until(
            lambda: not watched.marked(cut) and watched.cur(cut) > last,
            f"{cut.host} back, its job moving",
            90,
        )


def _abort(engine: Engine, key: JobKey) -> None:
    # Ended already, or the host still out of reach: the next fresh() starts over either way.
    with suppress(BlocktuiError):
        engine.session.backend(key.host).abort("vm-2", "vda")
