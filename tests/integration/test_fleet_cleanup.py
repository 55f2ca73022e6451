"""What the fleet lab must never touch, and what it must always take away, checked without a fleet:
another fleet's user of the same name, and packets a killed test left dropped."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from blocktui.core.errors import HostError
from blocktui.lab.fleet import FleetLab
from blocktui.lab.fleet_firewall import chain_name, dropping, firewall_usable, remove_chain
from blocktui.lab.fleet_host import FleetHost, stop_host

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

#: Not ``blocktui-fleet-``: these users must not look like a fleet's to anyone else's run.
PREFIX = f"btunit{os.getpid()}-"


@pytest.fixture
def root() -> Iterator[Path]:
    """A fleet root others can enter (as the lab requires), removed after."""
    if os.geteuid() != 0:
        pytest.skip("needs root: creates a user and firewall rules")
    made = Path(tempfile.mkdtemp(prefix="btfleet-unit-", dir="/tmp"))
    made.chmod(0o755)
    yield made
    shutil.rmtree(made, ignore_errors=True)


@pytest.fixture
def foreign_user(root: Path) -> Iterator[subprocess.Popen[bytes]]:
    """User ``PREFIX1`` with a home that is no fleet's, running a process; both removed after."""
    user = f"{PREFIX}1"
    subprocess.run(["useradd", "-M", "-U", "-d", str(root / "elsewhere"), "-s", "/bin/sh", user], check=True)
    known = pwd.getpwnam(user)
    process = subprocess.Popen(["sleep", "300"], user=known.pw_uid, group=known.pw_gid)
    try:
        yield process
    finally:
        process.kill()
        process.wait()
        subprocess.run(["userdel", user], check=False)


def test_a_user_of_another_fleet_is_refused_by_up_and_left_alone_by_down(
    root: Path, foreign_user: subprocess.Popen[bytes]
) -> None:
    lab = FleetLab(root / "fleet", user_prefix=PREFIX)
    with pytest.raises(HostError, match="already exists with home"):
        lab.up(hosts=1, domains=1)
    assert lab.hosts() == []  # not recorded: down has nothing of it to stop
    lab.down()
    # Even a host recorded with that user (as an older up did) keeps its hands off it.
    stop_host(FleetHost("fleet-1", f"{PREFIX}1", "127.0.1.1", 22, root / "fleet" / "fleet-1"))
    assert foreign_user.poll() is None
    assert pwd.getpwnam(f"{PREFIX}1").pw_dir == str(root / "elsewhere")


def _answers(address: tuple[str, int], timeout: float) -> bool:
    try:
        with socket.create_connection(address, timeout=timeout):
            return True
    except OSError:
        return False


def test_packets_a_killed_test_left_dropped_flow_again_after_down(root: Path) -> None:
    if (why := firewall_usable()) is not None:
        pytest.skip(why)
    with socket.socket() as server:
        server.bind(("127.0.1.250", 0))
        server.listen(8)
        address = server.getsockname()
        host = FleetHost("fleet-1", "nobody", address[0], address[1], root / "fleet" / "fleet-1")
        try:
            # Entered and never left, as by a test that pytest-timeout ended with os._exit() (held
            # in a name: collected, the generator would run its cleanup).
            left = dropping(root / "fleet", host)
            left.__enter__()
            assert not _answers(address, timeout=2.0)
            FleetLab(root / "fleet").down()
            assert _answers(address, timeout=30.0)
            rules = subprocess.run(["iptables", "-w", "-S"], capture_output=True, text=True, check=True)
            assert chain_name(root / "fleet") not in rules.stdout
        finally:
            remove_chain(root / "fleet")
