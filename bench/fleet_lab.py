"""The fleet under the bench: brought up for the section, the bench's own link to each host, a slow
ssh path for one host, and the two recorders the lag figure compares (screen and hosts).

The bench's fleet has users of its own (``btbench-fleet-K``) and its own root, so nothing of a
test run's fleet is reused or removed; it still takes the fleet lock, since two fleets at once
would share the machine's two cores and measure each other.
"""

from __future__ import annotations

import fcntl
import shlex
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# blocktui's event module first: it keeps libvirt's log lines off the terminal.
from blocktui.backends.libvirt_events import ensure_event_loop  # isort: skip

import libvirt

from bench.fleet_screen import done_cells
from bench.terminal import Lines, Terminal
from blocktui.lab.fleet import FLEET_LOCK, FleetLab
from blocktui.lab.fleet_host import FleetHost

#: The bench's fleet users: never the tests' (``blocktui-fleet-K``).
USER_PREFIX = "btbench-fleet-"
DISK = "vda"
#: How often the bench reads each host's true progress for the lag figure.
TRUTH_EVERY = 0.1


@contextmanager
def fleet_up(root: Path, hosts: int, domains: int, size: int) -> Iterator[tuple[FleetLab, float]]:
    """A fleet of ``hosts`` x ``domains`` under ``root`` for the block, and how long ``up`` took.

    Whatever a killed run left there is brought down first; everything is brought down after.
    """
    with FLEET_LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        lab = FleetLab(root, user_prefix=USER_PREFIX)
        lab.down()
        try:
            started = time.monotonic()
            lab.up(hosts=hosts, domains=domains, size=size)
            yield lab, time.monotonic() - started
        finally:
            lab.down()


def slow_ssh(lab: FleetLab, work: Path, one_way: float) -> Path:
    """An ssh command for libvirt's ``command=``: the fleet's own, through ``slow_link.py``.

    ssh gives ``%h %p`` (the host's address and port from the fleet's configuration) to the
    proxy, which holds every byte ``one_way`` seconds in each direction.
    """
    relay = Path(__file__).resolve().parent / "slow_link.py"
    proxy = f"ProxyCommand={shlex.quote(sys.executable)} {shlex.quote(str(relay))} %h %p {one_way}"
    wrapper = work / "slow-ssh"
    wrapper.write_text(f'#!/bin/sh\nexec {shlex.quote(str(lab.ssh_command))} -o {shlex.quote(proxy)} "$@"\n')
    wrapper.chmod(0o755)
    return wrapper


class Links:
    """The bench's own libvirt connection to each named host (the fleet's ssh), apart from the dashboard's."""

    def __init__(self, lab: FleetLab, hosts: Sequence[FleetHost]) -> None:
        ensure_event_loop()
        self.conns: dict[str, Any] = {}
        try:
            for host in hosts:
                self.conns[host.name] = libvirt.open(host.uri(lab.ssh_command))
        except BaseException:
            self.close()
            raise

    def pull(self, host: str, domain: str, bandwidth: int) -> None:
        """Start a whole-chain pull of the domain's disk at ``bandwidth`` bytes/s."""
        dom = self.conns[host].lookupByName(domain)
        dom.blockPull(DISK, bandwidth, libvirt.VIR_DOMAIN_BLOCK_PULL_BANDWIDTH_BYTES)

    def cur(self, host: str, domain: str) -> int | None:
        """The job's progress as the host reports it (None: no job)."""
        info: dict[str, int] = self.conns[host].lookupByName(domain).blockJobInfo(DISK, 0)
        return info.get("cur")

    def abort_all(self) -> None:
        """Stop every job on every linked host (what they copied stays; the fleet goes down after)."""
        for conn in self.conns.values():
            for dom in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
                try:
                    dom.blockJobAbort(DISK, 0)
                except libvirt.libvirtError:
                    continue  # no job on this one

    def close(self) -> None:
        for conn in self.conns.values():
            try:
                conn.close()
            except libvirt.libvirtError:
                continue  # a host cut off meanwhile: its link is gone anyway
        self.conns.clear()

    def __enter__(self) -> Links:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class Recorder:
    """A thread of the bench reading something again and again until ``stop``; what it read, timed."""

    def __init__(self, name: str) -> None:
        self._stop = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._guarded, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _guarded(self) -> None:
        try:
            self.loop()
        except BaseException as exc:  # reported by stop(): a silent recorder would fake a figure
            self.error = exc

    def loop(self) -> None:
        raise NotImplementedError

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def stop(self) -> None:
        """End the thread; raise what ended it early, if anything."""
        self._stop.set()
        self._thread.join(30)
        if self.error is not None:
            raise RuntimeError(f"{self._thread.name} failed: {self.error}") from self.error


class ScreenRows(Recorder):
    """Every screen the dashboard draws: each host's ``done`` cell, stamped with when it was read.

    Also when the screen first marked ``watched`` as not answering (None until then).
    """

    def __init__(self, term: Terminal, hosts: Sequence[str], watched: str) -> None:
        super().__init__("screen-rows")
        self.term = term
        self.hosts = list(hosts)
        self.samples: dict[str, list[tuple[float, str]]] = {host: [] for host in hosts}
        # In the header, or in the tree when the header has no room left for the host.
        self.marks = (f"{watched} not answering", f"{watched} reconnecting")
        self.marked: float | None = None

    def _seen(self, lines: Lines) -> bool:
        at = self.term.read_at
        for host, cell in done_cells(lines, self.hosts).items():
            self.samples[host].append((at, cell))
        if self.marked is None and any(mark in line for line in lines for mark in self.marks):
            self.marked = at
        return self.stopping

    def loop(self) -> None:
        while not self.stopping:
            try:
                self.term.wait_for(self._seen, 5.0)
            except TimeoutError:
                continue  # nothing drawn for 5 s: read on (the lag figure will show it)


class HostProgress(Recorder):
    """Each host's own progress of its job, read every ``TRUTH_EVERY`` s through the bench's links."""

    def __init__(self, links: Links, domain: str) -> None:
        super().__init__("host-progress")
        self.links = links
        self.domain = domain
        self.samples: dict[str, list[tuple[float, int]]] = {host: [] for host in links.conns}

    def loop(self) -> None:
        while not self.stopping:
            began = time.monotonic()
            for host, samples in self.samples.items():
                # Stamped when the read was asked: the host's value is at least that fresh.
                asked = time.monotonic()
                cur = self.links.cur(host, self.domain)
                if cur is not None:
                    samples.append((asked, cur))
            time.sleep(max(0.0, began + TRUTH_EVERY - time.monotonic()))
