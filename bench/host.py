"""The benchmark host: a private system libvirtd, paused benchmark domains, qcow2 chains, CPU clocks.

``virsh`` cannot reach an embedded driver held by another process, so every figure that compares
with ``virsh`` runs against a system ``libvirtd`` started here (and stopped at the end, only if this
run started it). Domains are transient, type ``qemu`` (TCG), started paused: block jobs run on
paused domains and no guest burns CPU.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

from blocktui.lab.images import create_base, create_overlay

SYSTEM_URI = "qemu:///system"
QEMU_CONF = Path("/etc/libvirt/qemu.conf")
PID_FILE = Path("/run/libvirtd.pid")
SOCKET = Path("/run/libvirt/libvirt-sock")
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


def _pids_named(name: str) -> list[int]:
    done = subprocess.run(["pgrep", "-x", name], capture_output=True, text=True, check=False)
    return [int(p) for p in done.stdout.split()]


@dataclass
class Daemon:
    """The system libvirtd serving the benchmark, and whether this run started it."""

    pid: int
    started_here: bool
    virtlogd_pid: int | None
    conf_written: bool


def _write_qemu_conf() -> bool:
    """Make the daemon run QEMU as root (type qemu, no capability re-probe); True if we wrote it."""
    wanted = 'user = "root"\ngroup = "root"\n'
    if QEMU_CONF.exists():
        text = QEMU_CONF.read_text()
        if 'user = "root"' in text and 'group = "root"' in text:
            return False
        raise RuntimeError(f"{QEMU_CONF} exists without user/group root; set them for the benchmark")
    QEMU_CONF.write_text(f"# written by blocktui's benchmark (python -m bench); removed at its end\n{wanted}")
    return True


@contextmanager
def system_daemon() -> Iterator[Daemon]:
    """A running system libvirtd (reused if one runs); stops what it started on exit."""
    running = _pids_named("libvirtd")
    conf_written = False
    virtlogd_pid: int | None = None
    if running:
        daemon = Daemon(running[0], False, None, False)
    else:
        conf_written = _write_qemu_conf()
        Path("/var/log/libvirt").mkdir(parents=True, exist_ok=True)
        if not _pids_named("virtlogd"):
            run("virtlogd", "-d")
            virtlogd_pid = _wait_pid("virtlogd")
        run("libvirtd", "-d")
        daemon = Daemon(_wait_pid("libvirtd"), True, virtlogd_pid, conf_written)
        _wait_for(SOCKET.exists, 10.0, "libvirtd socket")
    try:
        yield daemon
    finally:
        if daemon.started_here:
            _stop(daemon.pid)
            if daemon.virtlogd_pid is not None:
                _stop(daemon.virtlogd_pid)
        if conf_written:
            QEMU_CONF.unlink(missing_ok=True)


def _wait_pid(name: str) -> int:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        pids = _pids_named(name)
        if pids:
            return pids[0]
        time.sleep(0.05)
    raise RuntimeError(f"{name} did not start")


def _wait_for(ready: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _stop(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)


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


def disk_target(index: int) -> str:
    """``vda``, ``vdb``, ... ``vdz``."""
    return f"vd{chr(ord('a') + index)}"


def domain_xml(name: str, tops: list[Path]) -> str:
    """A minimal TCG domain with one virtio qcow2 disk per image in ``tops``."""
    disks = "".join(
        f"<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
        f"<source file='{escape(str(top))}'/><target dev='{disk_target(i)}' bus='virtio'/></disk>"
        for i, top in enumerate(tops)
    )
    return (
        f"<domain type='qemu'><name>{escape(name)}</name><memory unit='MiB'>32</memory><vcpu>1</vcpu>"
        "<os><type arch='x86_64' machine='pc'>hvm</type></os>"
        f"<devices><emulator>/usr/bin/qemu-system-x86_64</emulator>{disks}</devices></domain>"
    )


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
