"""Domains on the system libvirtd the tests start, and blocktui run against it in separate processes.

Every domain created here has a name starting with ``PREFIX`` and is recorded by UUID, so teardown
removes it even after a test renamed it, and never touches anyone else's domains.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from blocktui.lab.images import create_base, create_overlay
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
        self._uuids.append(self._libvirt("define", xml=domain_xml(name, [disk.top])))
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

    def close(self) -> None:
        """Remove the test domains."""
        self.remove_domains()

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """``python -m blocktui -c qemu:///system ARGS`` in its own process.

        Raises:
            subprocess.TimeoutExpired: it did not end within ``timeout`` seconds.
        """
        argv = [sys.executable, "-m", "blocktui", "-c", SYSTEM_URI, *args]
        return subprocess.run(
            argv, capture_output=True, text=True, env=self.env, timeout=timeout, check=False
        )

    def popen(self, *args: str) -> subprocess.Popen[str]:
        """``python -m blocktui -c qemu:///system ARGS`` started in the background, output piped."""
        argv = [sys.executable, "-m", "blocktui", "-c", SYSTEM_URI, *args]
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env)

    def json(self, *args: str) -> Any:
        """The JSON a successful command prints."""
        done = self.run(*args)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)
