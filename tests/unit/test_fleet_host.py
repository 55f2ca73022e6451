"""The fleet lab's checks that need no fleet: which processes it may signal, which rules it owns."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from blocktui.lab import system
from blocktui.lab.fleet_firewall import CHAIN_PREFIX, chain_name
from blocktui.lab.fleet_host import FleetHost, daemon_pid, is_session_of, read_pid, sshd_pid, stop_host

pytestmark = pytest.mark.timeout(30)


def _host(tmp_path: Path) -> FleetHost:
    return FleetHost("fleet-1", "btunit-nobody-here", "127.0.1.1", 22, tmp_path / "fleet-1")


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


def test_each_fleet_root_has_a_chain_of_its_own_within_iptables_length() -> None:
    first, second = chain_name(Path("/tmp/a/fleet")), chain_name(Path("/tmp/b/fleet"))
    assert first != second and first == chain_name(Path("/tmp/a/fleet"))
    assert first.startswith(CHAIN_PREFIX) and len(first) <= 28


def test_a_pid_file_naming_another_program_is_not_trusted(tmp_path: Path) -> None:
    host = _host(tmp_path)
    host.daemon_pid_file.parent.mkdir(parents=True)
    host.sshd_pid_file.write_text(f"{os.getpid()}\n")
    host.daemon_pid_file.write_text(f"{os.getpid()}\n")
    # The number is of a running process, but that process is this test, not sshd or libvirtd.
    assert read_pid(host.sshd_pid_file) == os.getpid()
    assert sshd_pid(host) is None
    assert daemon_pid(host) is None


@pytest.mark.parametrize("text", ["", "garbage", "0", "-1", "99999999"])
def test_a_pid_file_without_a_running_process_gives_none(tmp_path: Path, text: str) -> None:
    pid_file = tmp_path / "x.pid"
    pid_file.write_text(text)
    assert read_pid(pid_file) is None


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


def test_stopping_a_host_leaves_a_process_its_pid_files_name_but_that_is_not_its_own(tmp_path: Path) -> None:
    # As after a reboot: the numbers in the pid files now belong to an unrelated process.
    host = _host(tmp_path)
    host.daemon_pid_file.parent.mkdir(parents=True)
    unrelated = subprocess.Popen(["sleep", "300"])
    try:
        for pid_file in (host.sshd_pid_file, host.daemon_pid_file):
            pid_file.write_text(f"{unrelated.pid}\n")
        stop_host(host)
        assert unrelated.poll() is None
    finally:
        unrelated.kill()
        unrelated.wait()
