"""SIGTERM and SIGHUP end blocktui the way Ctrl-C and ``q`` do: in the CLI, and in the dashboard
running in a real pseudo-terminal, on a real QEMU. The job goes on on the host."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

#: Long enough for a loaded machine; every wait ends as soon as its condition holds.
DEADLINE = 90.0


class QmpLab:
    """A QMP lab of one domain in a private folder, driven by ``python -m blocktui`` processes."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = {**os.environ, "BLOCKTUI_LAB_DIR": str(root), "BLOCKTUI_STATE_DIR": str(root / "state")}
        self.sockets = root / "qmp" / "qmp"
        # A second monitor of the same QEMU: looks from here never compete with the process under test.
        self.spare = root / "qmp" / "spare" / "lab-1.qmp"

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "blocktui", *args]

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            self.argv(*args), capture_output=True, text=True, env=self.env, timeout=DEADLINE, check=False
        )
        if check and done.returncode != 0:
            raise AssertionError(f"{args} exited {done.returncode}: {done.stderr}")
        return done

    def job(self) -> dict[str, Any] | None:
        """lab-1/vda's job, read through the spare monitor."""
        jobs = json.loads(self.run("--qmp", str(self.spare), "jobs", "--json").stdout)
        return next((j for j in jobs if j["domain"] == "lab-1" and j["disk"] == "vda"), None)

    def wait_job(self, running: bool) -> dict[str, Any] | None:
        """Wait until lab-1/vda has a job (``running``) or has none."""
        deadline = time.monotonic() + DEADLINE
        while True:
            job = self.job()
            if (job is not None) == running:
                return job
            assert time.monotonic() < deadline, "timed out waiting for lab-1/vda's job"
            time.sleep(0.2)

    def abort(self) -> None:
        if self.job() is not None:
            self.run("--qmp", str(self.spare), "abort", "lab-1", "vda", "--wait", check=False)


@pytest.fixture(scope="module")
def qlab() -> Iterator[QmpLab]:
    root = Path(tempfile.mkdtemp(prefix="bts-", dir="/tmp"))
    lab = QmpLab(root)
    try:
        lab.run("lab", "up", "--qmp", "--domains", "1", "--disks", "1", "--size", "64M")
        yield lab
    finally:
        lab.run("lab", "down", "--qmp", check=False)
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_ends_stream_wait_like_ctrl_c_and_the_job_goes_on(qlab: QmpLab, signum: int) -> None:
    waiting = subprocess.Popen(
        qlab.argv("--qmp-dir", str(qlab.sockets), "stream", "lab-1", "vda", "--bandwidth", "512K", "--wait"),
        env=qlab.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        qlab.wait_job(running=True)
        waiting.send_signal(signum)
        _out, err = waiting.communicate(timeout=DEADLINE)
        assert waiting.returncode == 130, err
        assert "interrupted; jobs already started keep running" in err
        assert "Traceback" not in err
        job = qlab.job()
        assert job is not None and job["state"] == "active"
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.wait(DEADLINE)
        qlab.abort()
        qlab.wait_job(running=False)


def test_sigterm_quits_the_dashboard_and_restores_the_terminal(qlab: QmpLab) -> None:
    pid, fd = pty.fork()
    if pid == 0:  # the child: the dashboard on a 120x40 terminal
        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        env = {**qlab.env, "TERM": "xterm-256color"}
        os.execvpe(sys.executable, qlab.argv("--qmp-dir", str(qlab.sockets)), env)
    screen = b""
    try:
        screen = _read_until(fd, lambda seen: b"lab-1" in seen)
        os.kill(pid, signal.SIGTERM)
        screen += _read_until(fd, lambda seen: False)  # to the end of its output
        _, status = os.waitpid(pid, 0)
    finally:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0
    assert b"\x1b[?1049l" in screen  # it left the alternate screen: the terminal is the user's again
    assert b"on the host" in screen  # and said what happens to running jobs
    assert b"Traceback" not in screen


def _read_until(fd: int, done: Any) -> bytes:
    """Read a pty until ``done(everything read)`` or the child closes it, within the deadline."""
    seen = b""
    deadline = time.monotonic() + DEADLINE
    while not done(seen):
        left = deadline - time.monotonic()
        assert left > 0, f"timed out; the terminal showed: {seen[-400:]!r}"
        ready, _, _ = select.select([fd], [], [], min(left, 1.0))
        if not ready:
            continue
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the child has gone and the terminal closed
            break
        if not chunk:
            break
        seen += chunk
    return seen


def _alive(pid: int) -> bool:
    try:
        return os.waitpid(pid, os.WNOHANG) == (0, 0)
    except ChildProcessError:
        return False
