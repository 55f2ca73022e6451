"""The fleet lab for tests: three hosts over SSH, brought up once per run."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from blocktui.lab import LAB_DIR_ENV
from blocktui.lab.fleet import FLEET_LOCK, FleetLab, HostStatus
from blocktui.lab.images import flatten_copy

from .system_support import blocktui

#: One fixed place, so a run killed half-way is cleaned up by the next one (``down`` first).
ROOT = Path("/tmp/btfleet-test")
HOSTS = 3
#: Each host's vm-1 gets 10 MiB and vm-2 12 MiB (sizes staggered by the lab): small and quick.
SIZE = "8M"


@dataclass
class Fleet:
    """The run's fleet: the lab, the environment that finds it (``--fleet``), and a journal of its own."""

    lab: FleetLab
    env: dict[str, str]

    def status(self, name: str) -> HostStatus:
        """One host as the lab sees it now."""
        return next(host for host in self.lab.status() if host.name == name)

    def top(self, name: str, domain: str) -> Path:
        """The top image of ``domain``'s vda on host ``name``."""
        return next(d.top for d in self.status(name).disks if d.domain == domain)

    def fresh(self, domain: str, *names: str) -> None:
        """Make ``domain`` anew on each host named (every host when none is), with a chain to pull."""
        for name in names or [h.name for h in self.lab.hosts()]:
            self.lab.recreate_domain(name, domain)

    def save(self, name: str, domain: str, work: Path) -> Path:
        """What ``domain``'s vda on ``name`` reads now, as a raw file, to compare with after a stream."""
        saved = work / f"{name}-{domain}.raw"
        flatten_copy(self.top(name, domain), saved)
        return saved

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """``blocktui ARGS`` with the fleet's environment."""
        return blocktui(*args, env=self.env, timeout=timeout)


def fleet_usable() -> str | None:
    """Why the fleet cannot run here, or None when it can."""
    if os.geteuid() != 0:
        return "needs root: the fleet lab creates users and starts sshd"
    for tool in ("sshd", "libvirtd", "virt-ssh-helper"):
        if shutil.which(tool, path="/usr/sbin:/usr/bin") is None:
            return f"{tool} is not installed (.ci/system-deps installs openssh-server and libvirt)"
    return None


@contextmanager
def fleet_for_run() -> Iterator[Fleet]:
    """``blocktui lab fleet up`` (three hosts, two domains each) for the run; ``down`` after."""
    reason = fleet_usable()
    if reason is not None:
        pytest.skip(reason)
    env = {**os.environ, LAB_DIR_ENV: str(ROOT), "BLOCKTUI_STATE_DIR": str(ROOT / "state")}
    with FLEET_LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second run waits (its timeout bounds the wait)
        fleet = Fleet(FleetLab(ROOT / "fleet"), env)
        try:
            fleet.run("lab", "fleet", "down")  # what a killed run left: users, daemons, dropped packets
            made = fleet.run("lab", "fleet", "up", "--hosts", str(HOSTS), "--domains", "2", "--size", SIZE)
            assert made.returncode == 0, made.stderr
            yield fleet
        finally:
            done = fleet.run("lab", "fleet", "down")
            shutil.rmtree(ROOT, ignore_errors=True)
            assert done.returncode == 0, done.stderr
