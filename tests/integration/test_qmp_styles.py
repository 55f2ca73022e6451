"""blocktui on QEMUs started as people, Proxmox VE and libvirt start them, steered from a second process.

One ``blocktui stream --wait`` runs while separate ``blocktui`` processes list the disk, re-throttle,
pause, resume and abort the job, as an operator would from another terminal.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from blocktui.backends.qmp import QmpBackend
from blocktui.core.model import BlockJob, JobState
from blocktui.lab import DiskSpec, LabDisk
from blocktui.lab.images import backing_file, compare, flatten_copy
from blocktui.lab.qmp_lab import QmpLab

pytestmark = pytest.mark.integration

MIB = 1024 * 1024

#: Generous for a loaded 2-core machine: each blocktui run takes well under a second idle.
DEADLINE = 60.0

_names = itertools.count(1)


@pytest.fixture(scope="module", params=["drive", "proxmox", "libvirt"])
def styled(request: pytest.FixtureRequest) -> Iterator[QmpLab]:
    """A private QMP lab whose QEMUs attach disks in one style."""
    root = Path(tempfile.mkdtemp(prefix="bts-", dir="/tmp"))
    lab = QmpLab(root / "lab", request.param)
    try:
        yield lab
    finally:
        lab.down()
        shutil.rmtree(root, ignore_errors=True)


class Blocktui:
    """``python -m blocktui`` against one QEMU socket, with a private journal."""

    def __init__(self, socket: Path, state: Path) -> None:
        self.socket = socket
        self.env = {**os.environ, "BLOCKTUI_STATE_DIR": str(state)}

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "blocktui", "--qmp", str(self.socket), *args]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args), capture_output=True, text=True, env=self.env, timeout=DEADLINE, check=False
        )

    def ok(self, *args: str) -> str:
        done = self.run(*args)
        assert done.returncode == 0, f"blocktui {' '.join(args)} exited {done.returncode}: {done.stderr}"
        return done.stdout

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.argv(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env
        )


Domain = tuple[str, LabDisk, Path]


@pytest.fixture
def domain(styled: QmpLab, tmp_path: Path) -> Iterator[Domain]:
    """One QEMU with a three-image disk and a standalone one; (name, first disk, its content)."""
    name = f"s{next(_names)}"
    disks = styled.create_domain(name, [DiskSpec("vda", 24 * MIB, 3), DiskSpec("vdb", 16 * MIB, 1)])
    saved = tmp_path / "before.raw"
    flatten_copy(disks[0].top, saved)
    try:
        yield name, disks[0], saved
    finally:
        styled.destroy_domain(name)


@pytest.fixture
def waiter(styled: QmpLab, domain: Domain, tmp_path: Path) -> Blocktui:
    """The process that starts the stream and waits for it (the QEMU's primary socket)."""
    return Blocktui(styled.socket(domain[0]), tmp_path / "state")


@pytest.fixture
def operator(styled: QmpLab, domain: Domain, tmp_path: Path) -> Blocktui:
    """Another blocktui, from another terminal, on the same socket (neither holds it)."""
    return Blocktui(styled.socket(domain[0]), tmp_path / "state")


@pytest.fixture
def running() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes a test starts; any still running at the end are killed."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=DEADLINE)


def _job(operator: Blocktui, domain: str, disk: str) -> dict[str, Any] | None:
    jobs = json.loads(operator.ok("jobs", "--json"))
    return next((j for j in jobs if j["domain"] == domain and j["disk"] == disk), None)


def wait_job(
    operator: Blocktui, domain: str, disk: str, check: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """Poll ``jobs --json`` from the operator's process until the disk's job passes ``check``."""
    deadline = time.monotonic() + DEADLINE
    seen = None
    while time.monotonic() < deadline:
        seen = _job(operator, domain, disk)
        if seen is not None and check(seen):
            return seen
        time.sleep(0.1)
    raise AssertionError(f"{domain}/{disk}: job never matched; last seen {seen}")


def finish(process: subprocess.Popen[str]) -> tuple[int, dict[str, Any]]:
    """Wait for a ``stream --wait --json`` to end; its exit code and JSON record."""
    out, err = process.communicate(timeout=DEADLINE)
    try:
        return process.returncode, json.loads(out)
    except ValueError:
        raise AssertionError(f"stream exited {process.returncode} without JSON: {err}") from None


def listed_disks(operator: Blocktui, domain: str) -> dict[str, Any]:
    domains = json.loads(operator.ok("ls", "--json"))
    return {d["target"]: d for d in next(x for x in domains if x["name"] == domain)["disks"]}


def test_another_process_lists_rethrottles_pauses_and_resumes(
    styled: QmpLab,
    domain: Domain,
    waiter: Blocktui,
    operator: Blocktui,
    running: list[subprocess.Popen[str]],
) -> None:
    name, disk, saved = domain
    before = listed_disks(operator, name)
    stream = waiter.start("stream", name, disk.target, "--bandwidth", "1M", "--wait", "--json")
    running.append(stream)
    wait_job(operator, name, disk.target, lambda j: j["state"] == "active" and j["cur"] > 0)

    # Mid-job, both disks are listed under the same names as before.
    assert set(listed_disks(operator, name)) == set(before)
    operator.ok("speed", name, disk.target, "2M")
    wait_job(operator, name, disk.target, lambda j: j["bandwidth"] == 2 * MIB)
    operator.ok("pause", name, disk.target)
    paused = wait_job(operator, name, disk.target, lambda j: j["state"] == "paused")
    operator.ok("resume", name, disk.target)
    wait_job(operator, name, disk.target, lambda j: j["state"] == "active")
    operator.ok("speed", name, disk.target, "0")
    code, record = finish(stream)

    assert paused["cur"] < 24 * MIB
    assert (code, record["state"]) == (0, "completed")
    after = listed_disks(operator, name)
    assert set(after) == set(before) and after[disk.target]["chain"] == []
    styled.flush(name)
    assert backing_file(disk.top) is None
    assert compare(disk.top, saved)


def test_another_process_aborts_and_a_stream_to_a_base_keeps_it(
    styled: QmpLab,
    domain: Domain,
    waiter: Blocktui,
    operator: Blocktui,
    running: list[subprocess.Popen[str]],
) -> None:
    name, disk, saved = domain
    base = str(disk.backing[-1])
    stream = waiter.start("stream", name, disk.target, "--base", base, "-b", "1M", "--wait", "--json")
    running.append(stream)
    wait_job(operator, name, disk.target, lambda j: j["state"] == "active" and j["cur"] > 0)

    operator.ok("abort", name, disk.target)
    code, record = finish(stream)

    assert (code, record["state"]) == (1, "cancelled")
    styled.flush(name)
    assert backing_file(disk.top) == str(disk.backing[0])
    assert compare(disk.top, saved)

    # The same disk, pulled down to its base from the other process, keeps the base.
    operator.ok("stream", name, disk.target, "--base", base, "--wait", "--json")
    listed = listed_disks(operator, name)[disk.target]
    assert [layer["path"] for layer in listed["chain"]] == [base]
    styled.flush(name)
    assert backing_file(disk.top) == base
    assert compare(disk.top, saved)


def test_in_process_pause_resume_rethrottle_and_abort(styled: QmpLab, domain: Domain) -> None:
    name, disk, saved = domain
    backend = QmpBackend(sockets=[styled.socket(name)], timeout=5.0)
    backend.connect()
    try:
        backend.start_stream(name, disk.target, bandwidth=MIB)
        _wait_state(backend, name, disk.target, JobState.ACTIVE)
        backend.pause(name, disk.target)
        paused = _wait_state(backend, name, disk.target, JobState.PAUSED)
        backend.set_speed(name, disk.target, 2 * MIB)
        backend.resume(name, disk.target)
        resumed = _wait_state(backend, name, disk.target, JobState.ACTIVE)
        backend.abort(name, disk.target)
        deadline = time.monotonic() + DEADLINE
        while backend.job_info(name, disk.target) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert backend.job_info(name, disk.target) is None
        listed = backend.get_domain(name).disk(disk.target)
    finally:
        backend.close()

    assert paused.cur < paused.end
    assert resumed.bandwidth == 2 * MIB
    assert listed is not None and len(listed.chain) == 2
    styled.flush(name)
    assert backing_file(disk.top) == str(disk.backing[0])
    assert compare(disk.top, saved)


def _wait_state(backend: QmpBackend, domain: str, disk: str, state: JobState) -> BlockJob:
    deadline = time.monotonic() + DEADLINE
    job = None
    while time.monotonic() < deadline:
        job = backend.job_info(domain, disk)
        if job is not None and job.state is state:
            return job
        time.sleep(0.05)
    raise AssertionError(f"{domain}/{disk} never reached {state}; last {job}")
