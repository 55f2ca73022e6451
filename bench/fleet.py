"""8. Fleet: the dashboard over H hosts reached over SSH (the fleet lab), one host slow, one partitioned.

Each host is a fleet-lab host of its own (its user, session libvirtd and sshd on 127.0.1.K), and
the dashboard is ``blocktui -c URI ...`` with every host's ``qemu+ssh`` URI, in a pty as in the
other sections. Three figures:

1. First screen with one slow host: that host's URI runs ssh through ``slow_link.py`` (a
   ProxyCommand holding every byte 1 s each way, 2 s added to each round trip), the other hosts
   are as the lab made them. Time from process start to the first screen whose tree lists every
   domain of every other host; the pty is tall enough for the whole tree.
2. Lag while one host is partitioned (iptables DROP on its sshd, ``blocktui.lab.fleet_firewall``): one
   job per host at 1 MiB/s (polled every refresh, ``core.cadence``). The bench records each
   host's ``done`` cell from every screen and each host's own progress through a libvirt
   connection of its own every 0.1 s; a row is late by the time it kept a value after the host
   had moved past it, in refreshes (the dashboard's mean poll period, counted in its process).
3. CPU of the dashboard with H hosts and 64 throttled streams spread over them, as figure 1
   takes it (every thread, 60 s); its ssh children are noted beside.
"""

from __future__ import annotations

import math
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import Settings, log
from bench.counted import read_steps
from bench.fleet_lab import HostProgress, Links, ScreenRows, fleet_up, slow_ssh
from bench.fleet_screen import all_listed, done_cells, listed, worst_lag
from bench.monitor import GOAL_CPU_PER_MIN, dashboard, dashboard_argv, percent_of_core
from bench.report import Figure
from bench.terminal import COLUMNS, LINES, Lines, Terminal
from blocktui.lab import MIB
from blocktui.lab.fleet import FleetLab

SECTION = "8 fleet (dashboard over SSH hosts of the fleet lab)"
#: Added to the slow host's link in each direction.
ONE_WAY = 1.0
GOAL_FIRST_S = 1.0
#: The lag jobs' speed: fast enough to be read on every refresh (``core.cadence``).
LAG_SPEED = 1 * MIB
#: The CPU figure's streams: as figure 1's.
CPU_SPEED = 64 * 1024
#: A row later than this many refreshes has missed one (a change just after a poll waits one full
#: refresh, plus the poll and the drawing, so a row on time is between 1 and 2).
GOAL_LAG = 2.0
#: From the dashboard's start to its CPU window: imports, ten ssh links, the first listing.
CPU_WARMUP = 10.0


@dataclass(frozen=True)
class Sizes:
    """The section's scale (``--quick`` shrinks it)."""

    hosts: int
    domains: int
    size: int
    jobs: int
    starts: int
    calm_s: float
    cut_s: float
    cpu_s: float

    @property
    def label(self) -> str:
        return f"{self.hosts} hosts x {self.domains} domains"


def sizes(settings: Settings) -> Sizes:
    """10 hosts (the issue's figure) with as many domains as this 2-core machine bears."""
    if settings.quick:
        return Sizes(hosts=4, domains=2, size=16 * MIB, jobs=8, starts=1, calm_s=6, cut_s=10, cpu_s=20)
    return Sizes(hosts=10, domains=8, size=16 * MIB, jobs=64, starts=3, calm_s=12, cut_s=20, cpu_s=60)


def _domains(count: int) -> set[str]:
    return {f"vm-{index}" for index in range(1, count + 1)}


def tree_lines(size: Sizes) -> int:
    """A pty height whose tree pane (2/5 of the rows between header and footer) holds every node."""
    nodes = size.hosts * (1 + 2 * size.domains)  # a host, each domain, its one disk
    return max(LINES, math.ceil((nodes + 2) * 5 / 2) + 4)


# -- 1. first screen --------------------------------------------------------------------------


#: How long the slow host may take to be listed (ssh's and libvirt's round trips, 2 s each).
JOIN_TIMEOUT = 300.0


def _start_once(uris: list[str], fast: set[str], slow: str | None, size: Sizes, join: bool) -> dict[str, Any]:
    """Process start to the first screen listing every fast host's domains; with ``join``, to the
    first listing the ``slow`` one's too."""
    wanted = {name: _domains(size.domains) for name in fast}
    first: list[Lines] = []

    def full(lines: Lines) -> bool:
        if all_listed(lines, wanted):
            first.append(list(lines))
            return True
        return False

    with Terminal(dashboard_argv(*uris), lines=tree_lines(size)) as term:
        shown = term.wait_for(full, 60)
        at_first = listed(first[0]).get(slow or "", set())
        joined = shown
        if slow is not None and join:
            joined = term.wait_for(
                lambda lines: all_listed(lines, {slow: _domains(size.domains)}), JOIN_TIMEOUT
            )
    return {
        "start_to_screen_s": shown - term.started,
        "first_output_s": term.first_output - term.started,
        "joined_s": joined - term.started,
        "slow_listed_at_first": len(at_first),
    }


def first_screen(lab: FleetLab, size: Sizes, work: Path, up_s: float) -> Figure:
    """Figure 1: the first screen over the fleet with the last host slowed, and with none."""
    hosts = lab.hosts()
    slow = hosts[-1]
    fast = {host.name for host in hosts[:-1]}
    normal = [host.uri(lab.ssh_command) for host in hosts]
    slowed = [*normal[:-1], slow.uri(slow_ssh(lab, work, ONE_WAY))]
    log(f"fleet: first screen over {size.label}, {slow.name} slowed, {size.starts} starts")
    # Only the first start waits for the slow host to join: it takes a minute.
    starts = [_start_once(slowed, fast, slow.name, size, n == 0) for n in range(size.starts)]
    log(f"fleet: first screen over {size.label}, none slowed")
    plain = [_start_once(normal, fast | {slow.name}, None, size, False) for _ in range(size.starts)]
    took = sorted(s["start_to_screen_s"] for s in starts)
    median = statistics.median(took)
    return Figure(
        SECTION,
        f"{size.label}, {slow.name} slowed by 2 s: process start to every other host listed",
        f"{median:.2f} s",
        f"no host slowed: {statistics.median(s['start_to_screen_s'] for s in plain):.2f} s "
        f"(all {size.hosts}); {slow.name} listed at {starts[0]['joined_s']:.1f} s",
        "< 1 s, not waiting for the slow host",
        median < GOAL_FIRST_S and not any(s["slow_listed_at_first"] for s in starts),
        f"median of {size.starts} starts (slowest {took[-1]:.2f} s, first output "
        f"{statistics.median(s['first_output_s'] for s in starts):.2f} s) of blocktui -c URI x{size.hosts} "
        f"in a {COLUMNS}x{tree_lines(size)} pty (tall enough for the whole tree); the slow host's ssh runs "
        f"through a ProxyCommand holding each byte {ONE_WAY:.0f} s each way; lab fleet up {size.label} "
        f"took {up_s:.0f} s",
        {"starts": starts, "unslowed": plain, "sizes": size.__dict__, "fleet_up_s": up_s},
    )


# -- 2. lag while one host is partitioned -----------------------------------------------------


def _period(counter: Path, steps0: int, since: float) -> float:
    """The dashboard's mean poll period since ``since``, from its step counter."""
    steps = read_steps(str(counter))[0] - steps0
    return (time.monotonic() - since) / steps if steps > 0 else math.inf


def partition_lag(lab: FleetLab, size: Sizes, work: Path) -> Figure:
    """Figure 2: how late the other hosts' rows are while the last host's packets are dropped."""
    hosts = lab.hosts()
    cut, others = hosts[-1], hosts[:-1]
    names = [host.name for host in others]
    domain = f"vm-{size.domains}"  # the largest: its pull outlasts the figure
    uris = [host.uri(lab.ssh_command) for host in hosts]
    counter = work / "fleet-steps"
    argv = [sys.executable, "-m", "bench.counted", str(counter), *(a for uri in uris for a in ("-c", uri))]
    log(f"fleet: lag of {len(others)} hosts' rows while {cut.name} is partitioned ({size.cut_s:.0f} s)")
    with Links(lab, [cut]) as link:
        link.pull(cut.name, domain, LAG_SPEED)
    with Links(lab, others) as links, Terminal(argv) as term:
        for name in names:
            links.pull(name, domain, LAG_SPEED)
        term.wait_for(lambda lines: len(done_cells(lines, [h.name for h in hosts])) == len(hosts), 90)
        screen, truth = ScreenRows(term, names, cut.name), HostProgress(links, domain)
        screen.start()
        truth.start()
        calm0, steps0 = time.monotonic(), read_steps(str(counter))[0]
        time.sleep(size.calm_s)
        calm1, calm_period = time.monotonic(), _period(counter, steps0, calm0)
        steps1 = read_steps(str(counter))[0]
        with lab.dropping(cut.name):
            cut0 = time.monotonic()
            time.sleep(size.cut_s)
            cut1, cut_period = time.monotonic(), _period(counter, steps1, cut0)
        time.sleep(2.0)  # the last values shown while cut off end on the screen
        stopped = time.monotonic()
        screen.stop()
        truth.stop()
    with Links(lab, hosts) as links:
        links.abort_all()
    calm, calm_host = worst_lag(screen.samples, truth.samples, calm0, calm1, stopped)
    worst, host = worst_lag(screen.samples, truth.samples, cut0, cut1, stopped)
    lag, calm_lag = worst / cut_period, calm / calm_period
    marked = f"{screen.marked - cut0:.1f} s" if screen.marked is not None else "never"
    return Figure(
        SECTION,
        f"{cut.name} partitioned {size.cut_s:.0f} s: worst lag of the other {len(others)} hosts' rows",
        f"{lag:.2f} refreshes ({worst * 1000:.0f} ms, {host})",
        f"not partitioned, {size.calm_s:.0f} s before: {calm_lag:.2f} refreshes ({calm * 1000:.0f} ms, "
        f"{calm_host or '—'})",
        "never more than 1 refresh late (< 2 refreshes from host to screen)",
        lag < GOAL_LAG,
        f"one pull per host at {LAG_SPEED // MIB} MiB/s; each host's own progress read every 0.1 s "
        f"through a libvirt link of the bench's; a row's lag is how long it kept a value after the host "
        f"had passed it (as the table rounds it), over the dashboard's mean poll period "
        f"({cut_period * 1000:.0f} ms partitioned, {calm_period * 1000:.0f} ms before); "
        f"header marked {cut.name} not answering after {marked}",
        {
            "worst_s": worst,
            "calm_worst_s": calm,
            "period_s": cut_period,
            "calm_period_s": calm_period,
            "marked_after_s": None if screen.marked is None else screen.marked - cut0,
            "screen_samples": sum(len(s) for s in screen.samples.values()),
            "host_samples": sum(len(s) for s in truth.samples.values()),
        },
    )


# -- 3. CPU with many jobs over many hosts ----------------------------------------------------


def spread(hosts: list[str], size: Sizes) -> list[tuple[str, str]]:
    """``size.jobs`` (host, domain) pairs, one disk each, dealt over the hosts in turn."""
    pairs = [(host, f"vm-{index}") for index in range(1, size.domains + 1) for host in hosts]
    return pairs[: size.jobs]


def fleet_cpu(lab: FleetLab, size: Sizes, work: Path) -> Figure:
    """Figure 3: the dashboard's CPU over every host with the jobs running."""
    jobs = spread([host.name for host in lab.hosts()], size)
    uris = [host.uri(lab.ssh_command) for host in lab.hosts()]
    log(f"fleet: dashboard CPU over {size.hosts} hosts, {len(jobs)} streams at 64 KiB/s, {size.cpu_s:.0f} s")
    with Links(lab, lab.hosts()) as links:
        for host, domain in jobs:
            links.pull(host, domain, CPU_SPEED)
        try:
            ours = dashboard(work, None, size.cpu_s, uris, CPU_WARMUP)
        finally:
            links.abort_all()
    per_min = ours["cpu"] / ours["wall"] * 60
    return Figure(
        SECTION,
        f"{size.hosts} hosts, {len(jobs)} running streams: blocktui CPU",
        percent_of_core(ours["cpu"], ours["wall"]),
        f"its {size.hosts} ssh processes: {percent_of_core(ours['children_cpu'], ours['wall'])}",
        "≤ 1.2 s/min (2 %), as figure 1",
        per_min <= GOAL_CPU_PER_MIN,
        f"streams at {CPU_SPEED // 1024} KiB/s dealt over the hosts ({size.label}); every thread of the "
        f"dashboard over {ours['wall']:.0f} s after {CPU_WARMUP:.0f} s; {ours['refreshes']:.0f} polls "
        f"reading {ours['job_refreshes']:.0f} job statuses, {ours['screen_updates']:.0f} screen updates, "
        f"peak RSS {ours['maxrss_mib']:.0f} MiB",
        {"jobs": len(jobs), "blocktui": ours},
    )


#: How the bench runs one figure: a failure becomes a "not measured" row (``bench.__main__``).
Guard = Callable[[str, Callable[[], list[Figure]], list[Figure]], list[Figure]]


def run(settings: Settings, guard: Guard) -> list[Figure]:
    """Bring the bench's fleet up, take the three figures, bring it down."""
    size = sizes(settings)
    root = settings.work.parent / "fleet"
    log(f"fleet: lab fleet up {size.label} in {root}")
    work = settings.work
    with fleet_up(root, size.hosts, size.domains, size.size) as (lab, up_s):
        log(f"fleet: up in {up_s:.0f} s")
        return [
            *guard("8 fleet first screen", lambda: [first_screen(lab, size, work, up_s)], []),
            *guard("8 fleet partition", lambda: [partition_lag(lab, size, work)], []),
            *guard("8 fleet cpu", lambda: [fleet_cpu(lab, size, work)], []),
        ]
