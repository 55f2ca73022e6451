"""A system libvirtd for tests and benchmarks on a host without systemd, and TCG domains on it.

``virsh`` and separate blocktui processes cannot reach an embedded driver held by another
process, so whatever must behave like a real host runs against a system ``libvirtd`` (root only).
``system_daemon`` starts one when none runs (``virtlogd -d``, then ``libvirtd -d``, QEMU run as
root so no capability re-probe and no KVM permission problem) and stops only what it started.
Domains are type ``qemu`` (TCG): ``/dev/kvm`` is root-only here and block jobs need no guest.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

SYSTEM_URI = "qemu:///system"
QEMU_CONF = Path("/etc/libvirt/qemu.conf")
SOCKET = Path("/run/libvirt/libvirt-sock")
#: Seconds a daemon gets to start, to stop, or to open its socket (a loaded 2-core machine is slow).
START_TIMEOUT = 30.0
_ROOT_LINES = ('user = "root"', 'group = "root"')


class SystemDaemonError(RuntimeError):
    """The system daemon cannot be started or used here; the message says why and what to do."""


def pids_named(name: str) -> list[int]:
    """Process ids whose command name is exactly ``name``."""
    done = subprocess.run(["pgrep", "-x", name], capture_output=True, text=True, check=False)
    return [int(p) for p in done.stdout.split()]


def wait_for(ready: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``ready`` until it is true.

    Raises:
        SystemDaemonError: ``timeout`` seconds passed first.
    """
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise SystemDaemonError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)


@dataclass
class Daemon:
    """The system libvirtd in use, and what this process started (and must stop)."""

    pid: int
    started_here: bool
    virtlogd_pid: int | None
    conf_written: bool


def _write_qemu_conf() -> bool:
    """Make the daemon run QEMU as root; True if this process wrote the file (and removes it later)."""
    if QEMU_CONF.exists():
        text = QEMU_CONF.read_text()
        if all(line in text for line in _ROOT_LINES):
            return False
        raise SystemDaemonError(
            f"{QEMU_CONF} exists without {' and '.join(_ROOT_LINES)}; add them (TCG domains here run "
            "QEMU as root) or stop libvirtd and move the file away"
        )
    QEMU_CONF.parent.mkdir(parents=True, exist_ok=True)
    QEMU_CONF.write_text("# written by blocktui (lab/system.py); removed when it stops libvirtd\n")
    with QEMU_CONF.open("a") as conf:
        conf.write("\n".join(_ROOT_LINES) + "\n")
    return True


def _start(*argv: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=START_TIMEOUT)
    if done.returncode != 0:
        raise SystemDaemonError(f"{' '.join(argv)} failed: {done.stderr.strip() or done.stdout.strip()}")


def _wait_pid(name: str) -> int:
    found: list[int] = []

    def running() -> bool:
        found[:] = pids_named(name)
        return bool(found)

    wait_for(running, START_TIMEOUT, f"{name} to start")
    return found[0]


def stop_process(pid: int, signum: int = signal.SIGTERM) -> None:
    """Send ``signum`` to ``pid`` (woken first, in case it was left stopped) and wait for it to go.

    SIGKILL follows when it is still there after ``START_TIMEOUT`` seconds.
    """
    for sig in (signal.SIGCONT, signum):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
    try:
        wait_for(lambda: not Path(f"/proc/{pid}").exists(), START_TIMEOUT, f"process {pid} to exit")
    except SystemDaemonError:
        with suppress(ProcessLookupError):  # it went just now, after all
            os.kill(pid, signal.SIGKILL)


@contextmanager
def system_daemon() -> Iterator[Daemon]:
    """A running system libvirtd (reused if one runs); on exit, stops what it started.

    Raises:
        SystemDaemonError: not root, or the daemon cannot start.
    """
    if os.geteuid() != 0:
        raise SystemDaemonError("a system libvirtd needs root (run as root, or use the embedded lab)")
    running = pids_named("libvirtd")
    if running:
        # A run killed while it held the daemon frozen (SIGSTOP) could not thaw it: do it now.
        os.kill(running[0], signal.SIGCONT)
        daemon = Daemon(running[0], started_here=False, virtlogd_pid=None, conf_written=False)
    else:
        conf_written = _write_qemu_conf()
        Path("/var/log/libvirt").mkdir(parents=True, exist_ok=True)
        virtlogd_pid: int | None = None
        if not pids_named("virtlogd"):
            _start("virtlogd", "-d")
            virtlogd_pid = _wait_pid("virtlogd")
        _start("libvirtd", "-d")
        daemon = Daemon(_wait_pid("libvirtd"), True, virtlogd_pid, conf_written)
    try:
        wait_for(SOCKET.exists, START_TIMEOUT, f"libvirtd's socket {SOCKET}")
        yield daemon
    finally:
        if daemon.started_here:
            stop_process(daemon.pid)
            if daemon.virtlogd_pid is not None:
                stop_process(daemon.virtlogd_pid)
        if daemon.conf_written:
            QEMU_CONF.unlink(missing_ok=True)


def answering(path: Path = SOCKET) -> bool:
    """Whether a daemon accepts connections on ``path`` (a file left by a killed one does not)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


def revive(daemon: Daemon) -> None:
    """Start libvirtd again if ``daemon`` has died (a test killed it), as an operator would.

    ``daemon.pid`` then names the new process, so whoever stops the daemon stops that one. A daemon
    that still runs is left alone.

    Raises:
        SystemDaemonError: the old process does not go, or the new one does not start.
    """
    if Path(f"/proc/{daemon.pid}").exists():
        os.kill(daemon.pid, signal.SIGCONT)  # alive: at most held stopped
        return
    _start("libvirtd", "-d")
    daemon.pid = _wait_pid("libvirtd")
    wait_for(answering, START_TIMEOUT, f"the restarted libvirtd to answer on {SOCKET}")


@contextmanager
def frozen(pid: int) -> Iterator[None]:
    """Hold a process stopped (SIGSTOP) for the block; it is always continued (SIGCONT) after."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def disk_target(index: int) -> str:
    """``vda``, ``vdb``, ... ``vdz``."""
    return f"vd{chr(ord('a') + index)}"


def domain_xml(name: str, tops: list[Path], *, memory_mib: int = 32) -> str:
    """A minimal TCG domain with one virtio qcow2 disk per image in ``tops`` (no guest OS)."""
    disks = "".join(
        f"<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
        f"<source file={quoteattr(str(top))}/><target dev='{disk_target(i)}' bus='virtio'/></disk>"
        for i, top in enumerate(tops)
    )
    return (
        f"<domain type='qemu'><name>{escape(name)}</name><memory unit='MiB'>{memory_mib}</memory>"
        "<vcpu>1</vcpu><os><type arch='x86_64' machine='pc'>hvm</type></os>"
        f"<devices><emulator>/usr/bin/qemu-system-x86_64</emulator>{disks}</devices></domain>"
    )
