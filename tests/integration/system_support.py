"""Domains on the system libvirtd the tests start, and blocktui run against it in separate processes.

Every domain created here has a name starting with ``PREFIX`` and is recorded by UUID, so teardown
removes it even after a test renamed it, and never touches anyone else's domains.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from blocktui.lab.images import compare, create_base, create_overlay, flatten_copy
from blocktui.lab.system import SYSTEM_URI, Daemon, domain_xml

#: Makes this run's own libvirt calls, in a process of its own.
CALLS = Path(__file__).with_name("libvirt_calls.py")

#: Every test domain's name starts with this.
PREFIX = "btsys-"
MIB = 1024 * 1024


@dataclass(frozen=True)
class SystemDisk:
    """One test disk: its overlay and the base it reads through."""

    top: Path
    base: Path


class SystemHost:
    """The test run's system libvirtd: makes domains, runs ``blocktui -c qemu:///system``.

    Its own libvirt calls go through ``libvirt_calls.py`` in a process of their own: this test
    process holds the embedded lab, and then cannot reach a daemon (see that file).
    """

    def __init__(self, daemon: Daemon, work: Path) -> None:
        self.daemon = daemon
        self.work = work
        self._uuids: list[str] = []
        self._by_name: dict[str, str] = {}
        # faulthandler: a test can make a stuck blocktui print its threads' stacks (SIGABRT).
        self.env = {**os.environ, "BLOCKTUI_STATE_DIR": str(work / "state"), "PYTHONFAULTHANDLER": "1"}
        self.env.pop("LIBVIRT_DEFAULT_URI", None)
        self.remove_domains()  # left over from an interrupted run

    def _libvirt(self, action: str, **fields: Any) -> Any:
        """One call on the daemon, made by ``libvirt_calls.py``; its error is raised here."""
        done = subprocess.run(
            [sys.executable, str(CALLS)],
            input=json.dumps({"action": action, **fields}),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            raise AssertionError(f"libvirt {action} failed: {done.stderr.strip()}")
        answer = json.loads(done.stdout)
        if "error" in answer:
            raise AssertionError(f"libvirt {action}: {answer['error']}")
        return answer["result"]

    def define(self, name: str, *, size: int = 4 * MIB, base_name: str = "base.qcow2") -> SystemDisk:
        """Define a persistent, shut-off TCG domain with one disk (vda) over a fresh base image."""
        assert name.startswith(PREFIX)
        directory = self.work / f"d{len(self._uuids)}"
        directory.mkdir(parents=True)
        disk = SystemDisk(directory / "top.qcow2", directory / base_name)
        create_base(disk.base, size)
        create_overlay(disk.top, disk.base)
        uuid = self._libvirt("define", xml=domain_xml(name, [disk.top]))
        self._uuids.append(uuid)
        self._by_name[name] = uuid
        return disk

    def define_disks(self, name: str, sizes: list[int]) -> list[SystemDisk]:
        """Define a shut-off TCG domain with a disk per size (vda, vdb, ...), each over its own base."""
        assert name.startswith(PREFIX)
        directory = self.work / f"d{len(self._uuids)}"
        directory.mkdir(parents=True)
        disks = [
            SystemDisk(directory / f"top{i}.qcow2", directory / f"base{i}.qcow2") for i in range(len(sizes))
        ]
        for disk, size in zip(disks, sizes, strict=True):
            create_base(disk.base, size)
            create_overlay(disk.top, disk.base)
        self._uuids.append(self._libvirt("define", xml=domain_xml(name, [d.top for d in disks])))
        return disks

    def job_speed(self, name: str, disk: str) -> int | None:
        """The speed (bytes/s) of ``disk``'s block job as libvirt reads it; None without a job."""
        speed = self._libvirt("job_speed", name=name, disk=disk)
        return None if speed is None else int(speed)

    def rename(self, name: str, new: str) -> None:
        """Rename a shut-off persistent test domain (libvirt allows names XML cannot hold)."""
        self._libvirt("rename", name=name, new=new)

    def start(self, name: str) -> None:
        """Start a test domain paused: block jobs run, no guest burns CPU."""
        self._libvirt("start", name=name)

    def flush(self, name: str) -> None:
        """Make QEMU write out cached qcow2 metadata (resume + suspend), so qemu-img reads it right."""
        self._libvirt("flush", name=name)

    def has_job(self, name: str, disk: str) -> bool:
        """Whether ``disk`` of domain ``name`` has a block job, as libvirt sees it."""
        return bool(self._libvirt("has_job", name=name, disk=disk))

    def qemu_pid(self, name: str) -> int:
        """The process id of the domain's QEMU."""
        return int(Path(f"/run/libvirt/qemu/{name}.pid").read_text().strip())

    def remove_domains(self) -> None:
        """Destroy and undefine every domain this host made, or that carries the test prefix."""
        self._libvirt("remove", uuids=self._uuids, prefix=PREFIX)
        self._uuids.clear()
        self._by_name.clear()

    def remove(self, name: str) -> None:
        """Destroy and undefine one domain this host defined as ``name``."""
        self._libvirt("remove", uuids=[self._by_name.pop(name)], prefix=None)

    def close(self) -> None:
        """Remove the test domains."""
        self.remove_domains()

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """``python -m blocktui -c qemu:///system ARGS`` in its own process.

        Raises:
            subprocess.TimeoutExpired: it did not end within ``timeout`` seconds.
        """
        return blocktui("-c", SYSTEM_URI, *args, env=self.env, timeout=timeout)

    def popen(self, *args: str) -> subprocess.Popen[str]:
        """``python -m blocktui -c qemu:///system ARGS`` started in the background, output piped."""
        argv = [sys.executable, "-m", "blocktui", "-c", SYSTEM_URI, *args]
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env)

    def json(self, *args: str) -> Any:
        """The JSON a successful command prints."""
        done = self.run(*args)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)


def blocktui(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``python -m blocktui ARGS`` in its own process, with ``env``.

    Raises:
        subprocess.TimeoutExpired: it did not end within ``timeout`` seconds.
    """
    argv = [sys.executable, "-m", "blocktui", *args]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout, check=False)


class Lines:
    """A background reader of a process's stderr, to wait for a line without fixed sleeps."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        assert process.stderr is not None
        self._reader = threading.Thread(target=self._read, args=(process.stderr,), daemon=True)
        self._reader.start()

    def _read(self, stream: TextIO) -> None:
        for line in stream:
            self.lines.put(line)

    def wait_for(self, words: str, timeout: float) -> str:
        """The first line holding ``words``; fails the test after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            self.seen.append(line)
            if words in line:
                return line
        raise AssertionError(f"no stderr line with {words!r} within {timeout} s; saw {self.seen}")

    def rest(self) -> list[str]:
        """Every line read so far, and whatever is queued."""
        while not self.lines.empty():
            self.seen.append(self.lines.get_nowait())
        return self.seen

    def to_the_end(self, timeout: float = 10) -> list[str]:
        """Every line, once the process has closed its stderr (or ``timeout`` seconds passed)."""
        self._reader.join(timeout)
        return self.rest()


def until(ready: Callable[[], bool], process: subprocess.Popen[str], what: str, timeout: float = 60) -> None:
    """Poll ``ready`` while ``process`` (a blocktui command) runs; fail with its stderr if it ends first.

    On timeout the process is made to dump its threads' stacks (faulthandler, on SIGABRT) into the
    failure message.
    """
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None:
            _out, err = process.communicate()
            raise AssertionError(f"blocktui exited {process.returncode} before {what}: {err}")
        if time.monotonic() > deadline:
            process.send_signal(signal.SIGABRT)
            _out, err = process.communicate()
            raise AssertionError(f"no {what} within {timeout} s; blocktui's threads: {err}")
        time.sleep(0.05)


def wait_for_plan_active(system_host: SystemHost, name: str, process: subprocess.Popen[str]) -> None:
    """Until the journal shows blocktui's stream of ``name`` running (its start call has returned)."""

    def active() -> bool:
        entries = system_host.json("history", "--json")
        return any(e["domain"] == name and e["status"] == "active" for e in entries)

    until(active, process, f"active plan for {name}")


def finish(process: subprocess.Popen[str], timeout: float = 120) -> tuple[str, str]:
    """Wait for a blocktui command to end; its output. One that does not end fails with its threads."""
    try:
        return process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGABRT)
        _out, err = process.communicate()
        raise AssertionError(f"blocktui did not end within {timeout} s; its threads: {err}") from None


def reap(process: subprocess.Popen[str]) -> None:
    """Kill a blocktui command a failed test left running."""
    if process.poll() is None:
        process.kill()
        process.communicate()


@dataclass
class FollowedStream:
    """A running ``stream DOMAIN vda --wait --json`` of a fresh domain, and what its disk read before."""

    name: str
    disk: SystemDisk
    saved: Path
    process: subprocess.Popen[str]
    stderr: Lines

    def finish(self, timeout: float = 120) -> str:
        """Wait for the command to end; its stdout (its stderr is all in ``stderr`` then).

        A command that does not end fails the test with its threads' stacks.
        """
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.send_signal(signal.SIGABRT)
            self.process.wait()
            threads = "".join(self.stderr.to_the_end())
            raise AssertionError(f"blocktui did not end within {timeout} s; its threads: {threads}") from None
        assert self.process.stdout is not None
        out = self.process.stdout.read()
        self.stderr.to_the_end()
        return out

    def reads_as_before(self, system_host: SystemHost) -> bool:
        """Whether the disk (QEMU's cache written out first) reads what its chain read before."""
        system_host.flush(self.name)
        return compare(self.disk.top, self.saved)


def follow_stream(
    system_host: SystemHost, name: str, size: int, bandwidth: str, saved: Path
) -> FollowedStream:
    """Define and start domain ``name``, save its content to ``saved``, stream it until the plan runs.

    The caller ``reap``s the process when done.
    """
    disk = system_host.define(name, size=size)
    system_host.start(name)
    flatten_copy(disk.top, saved)
    process = system_host.popen("stream", name, "vda", "--bandwidth", bandwidth, "--wait", "--json")
    try:
        stderr = Lines(process)
        wait_for_plan_active(system_host, name, process)
    except BaseException:
        reap(process)
        raise
    return FollowedStream(name, disk, saved, process, stderr)
