"""The fleet lab's checks that need no fleet: which processes it may signal, which rules it owns."""

from __future__ import annotations

import os
import signal

import pytest

from blocktui.lab import system
from blocktui.lab.fleet_host import is_session_of

pytestmark = pytest.mark.timeout(30)


@pytest.mark.parametrize(
    ("cmdline", "user", "ours"),
    [
        (b"sshd: blocktui-fleet-1 [priv]\0", "blocktui-fleet-1", True),
        (b"sshd: blocktui-fleet-1@notty\0", "blocktui-fleet-1", True),
        (b"sshd: blocktui-fleet-10@notty\0", "blocktui-fleet-1", False),
        (b"sshd: blocktui-fleet-12 [priv]\0", "blocktui-fleet-1", False),
        (b"sshd: blocktui-fleet-1", "blocktui-fleet-1", False),  # nothing after: not a session title
        (b"/usr/sbin/sshd -f /x/fleet-1/sshd_config\0", "blocktui-fleet-1", False),
    ],
)
def test_only_the_hosts_own_ssh_sessions_are_its_own(cmdline: bytes, user: str, ours: bool) -> None:
    assert is_session_of(cmdline, user) is ours


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
