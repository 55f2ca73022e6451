"""The benchmark host: paused benchmark domains on a system libvirtd, qcow2 chains, CPU clocks.

``virsh`` cannot reach an embedded driver held by another process, so every figure that compares
with ``virsh`` runs against a system ``libvirtd`` (``blocktui.lab.system.system_daemon``: started
if none runs, stopped at the end only if this run started it). Domains are transient, type
``qemu`` (TCG), started paused: block jobs run on paused domains and no guest burns CPU.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from blocktui.lab.images import create_base, create_overlay
from blocktui.lab.system import SYSTEM_URI, Daemon, disk_target, domain_xml, system_daemon

__all__ = ["SYSTEM_URI", "Daemon", "disk_target", "domain_xml", "system_daemon"]

#: Every benchmark domain's name starts with this, so cleanup never touches anyone else's.
PREFIX = "btbench-"
MIB = 1024**2
GIB = 1024**3
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def run(*argv: str) -> str:
    """Run a command, return its stdout; raise with its stderr when it fails."""
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def virsh(*args: str) -> str:
    """One ``virsh`` call against the benchmark daemon."""
    return run("virsh", "-q", "-c", SYSTEM_URI, *args)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # After the ")" ending the command name, utime and stime are fields 12 and 13 (0-based 11, 12).
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


# -- images -----------------------------------------------------------------------------------


def make_base(path: Path, size: int) -> None:
    """A qcow2 image of ``size`` bytes, every cluster written (a pull copies all of it), kept between
    figures.

    Unallocated backing clusters are skipped by block-stream without throttling, so a sparse base
    would make rates and durations meaningless.
    """
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    create_base(partial, size)
    partial.rename(path)


def make_overlay(path: Path, base: Path) -> None:
    """A fresh, empty qcow2 overlay over ``base``."""
    path.unlink(missing_ok=True)
    create_overlay(path, base)


# -- domains ----------------------------------------------------------------------------------


def start_domain(name: str, tops: list[Path], workdir: Path) -> None:
    """Create a transient, paused benchmark domain (``name`` must start with ``PREFIX``)."""
    assert name.startswith(PREFIX)
    xml = workdir / f"{name}.xml"
    xml.write_text(domain_xml(name, tops))
    virsh("create", str(xml), "--paused")


def destroy_domains() -> None:
    """Destroy every benchmark domain on the daemon (transient: destroying removes it)."""
    names = virsh("list", "--name").split()
    for name in names:
        if name.startswith(PREFIX):
            subprocess.run(
                ["virsh", "-q", "-c", SYSTEM_URI, "destroy", name], capture_output=True, check=False
            )


def clean_dir(path: Path) -> None:
    """Remove a benchmark work directory."""
    shutil.rmtree(path, ignore_errors=True)


#: Held by whoever uses the machine's system libvirtd (the bench, the guard trials, the tests),
#: so no run stops or freezes the daemon under another.
LOCK = Path("/tmp/blocktui-system-daemon.lock")


@contextmanager
def daemon_lock() -> Iterator[None]:
    """Hold the system daemon's lock (waiting for whoever has it)."""
    with LOCK.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
