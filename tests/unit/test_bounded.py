"""Host calls under a deadline: a call the host never answers fails in time, and recovery is reported."""

from __future__ import annotations

import threading

import pytest

from blocktui.backends.bounded import Deadline
from blocktui.core.errors import HostError, NotAnswering

#: Long enough for a helper thread to start on a loaded machine, short enough to keep the test fast.
TIMEOUT = 0.5


def test_an_answered_call_returns_its_value_or_its_error() -> None:
    deadline = Deadline("h", TIMEOUT)

    def refuse() -> int:
        raise HostError("refused")

    assert deadline.run(lambda: 42) == 42
    with pytest.raises(HostError, match="refused"):
        deadline.run(refuse)


def test_a_call_never_answered_gives_up_and_later_calls_fail_at_once_until_it_returns() -> None:
    events: list[str] = []
    release = threading.Event()
    returned = threading.Event()

    def unstuck() -> None:
        events.append("unstuck")
        returned.set()

    deadline = Deadline(
        "qemu:///system", TIMEOUT, on_stuck=lambda: events.append("stuck"), on_unstuck=unstuck
    )

    with pytest.raises(NotAnswering, match="host not answering") as caught:
        deadline.run(lambda: release.wait(60))
    assert "\n" not in str(caught.value)
    assert deadline.stuck
    with pytest.raises(NotAnswering):
        deadline.run(lambda: 1)  # fails at once: no second thread piles up behind the stuck one
    release.set()
    assert returned.wait(60)

    assert events == ["stuck", "unstuck"]
    assert not deadline.stuck
    assert deadline.run(lambda: 7) == 7
