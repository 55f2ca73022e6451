"""Domains on the system libvirtd the tests start, and blocktui run against it in separate processes.

Every domain created here has a name starting with ``PREFIX`` and is recorded by UUID, so teardown
removes it even after a test renamed it, and never touches anyone else's domains.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Keeps libvirt's own log lines off the test output; must come before libvirt.
import blocktui.backends.libvirt_events  # noqa: F401  # isort: skip

import libvirt

from blocktui.lab.images import create_base, create_overlay
from blocktui.lab.system import SYSTEM_URI, Daemon, domain_xml

#: Every test domain's name starts with this.
PREFIX = "btsys-"
MIB = 1024 * 1024


def _quiet(_context: object, _error: object) -> None:
    """libvirt's error callback: the error is raised as an exception anyway."""


def _remove(dom: libvirt.virDomain) -> None:
    for step in (dom.destroy, dom.undefine):
        try:
            step()
        except libvirt.libvirtError:
            continue  # not running, or already gone


@dataclass(frozen=True)
class SystemDisk:
    """One test disk: its overlay and the base it reads through."""

    top: Path
    base: Path


class SystemHost:
    """The test run's system libvirtd: makes domains, runs ``blocktui -c qemu:///system``."""

    def __init__(self, daemon: Daemon, work: Path) -> None:
        self.daemon = daemon
        self.work = work
        # Errors reach the tests as exceptions; libvirt would also print each one to stderr.
        libvirt.registerErrorHandler(_quiet, None)
        self.conn = libvirt.open(SYSTEM_URI)
        self._uuids: list[str] = []
        # faulthandler: a test can make a stuck blocktui print its threads' stacks (SIGABRT).
        self.env = {**os.environ, "BLOCKTUI_STATE_DIR": str(work / "state"), "PYTHONFAULTHANDLER": "1"}
        self.env.pop("LIBVIRT_DEFAULT_URI", None)
        self.remove_domains()  # left over from an interrupted run

    def define(self, name: str, *, size: int = 4 * MIB, base_name: str = "base.qcow2") -> SystemDisk:
        """Define a persistent, shut-off TCG domain with one disk (vda) over a fresh base image."""
        assert name.startswith(PREFIX)
        directory = self.work / f"d{len(self._uuids)}"
        directory.mkdir(parents=True)
        disk = SystemDisk(directory / "top.qcow2", directory / base_name)
        create_base(disk.base, size)
        create_overlay(disk.top, disk.base)
        dom = self.conn.defineXML(domain_xml(name, [disk.top]))
        self._uuids.append(dom.UUIDString())
        return disk

    def domain(self, name: str) -> libvirt.virDomain:
        """The test domain called ``name``."""
        return self.conn.lookupByName(name)

    def start(self, name: str) -> None:
        """Start a test domain paused: block jobs run, no guest burns CPU."""
        self.domain(name).createWithFlags(libvirt.VIR_DOMAIN_START_PAUSED)

    def flush(self, name: str) -> None:
        """Make QEMU write out cached qcow2 metadata (resume + suspend), so qemu-img reads it right."""
        dom = self.domain(name)
        dom.resume()
        dom.suspend()

    def qemu_pid(self, name: str) -> int:
        """The process id of the domain's QEMU."""
        return int(Path(f"/run/libvirt/qemu/{name}.pid").read_text().strip())

    def remove_domains(self) -> None:
        """Destroy and undefine every domain this host made, or that carries the test prefix."""
        wanted = set(self._uuids)
        doomed = [
            dom
            for dom in self.conn.listAllDomains(0)
            if dom.UUIDString() in wanted or dom.name().startswith(PREFIX)
        ]
        # Each destroy waits a second or two for its QEMU to exit: wait for them together.
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(_remove, doomed))
        self._uuids.clear()

    def close(self) -> None:
        """Remove the test domains and close the connection."""
        try:
            self.remove_domains()
        finally:
            self.conn.close()

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
