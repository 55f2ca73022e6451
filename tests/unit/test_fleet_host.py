"""The fleet lab's checks that need no fleet: which processes it may signal, which rules it owns."""

from __future__ import annotations

import os
import signal

import pytest

from blocktui.lab import system

pytestmark = pytest.mark.timeout(30)


def test_stop_process_is_quiet_when_the_process_ends_just_before_its_sigkill(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sent: list[int] = []

    def kill(_pid: int, signum: int) -> None:
        sent.append(signum)
        if signum == signal.SIGKILL:
            raise ProcessLookupError

    def never(*_args: object) -> None:
        raise system.SystemDaemonError("timed out")

    monkeypatch.setattr(os, "kill", kill)
    monkeypatch.setattr(system, "wait_for", never)
    system.stop_process(12345)
    assert sent == [signal.SIGCONT, signal.SIGTERM, signal.SIGKILL]
