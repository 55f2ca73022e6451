"""1. Monitoring cost: the dashboard in a real terminal showing N throttled streams, versus a virsh loop.

The dashboard is the ``blocktui -c qemu:///system`` process in a 160x50 pseudo-terminal that the
bench drains (``bench.terminal``); its CPU is every thread's utime + stime from /proc over the
window. Each of its refreshes is one poll (``Session.step``, counted in the process by
``bench.counted``) then a wait of ``Session.poll_interval`` (0.5 s), so it brings N job statuses
to the screen per poll, at most twice a second. The ``virsh blockjob --info`` loop refreshes
every job as fast as it can, at most every 0.5 s; its CPU is the children's rusage. The ratio is
CPU per job-refresh of the two clients; libvirtd's extra CPU (above its rate with the same
streams running and no client) is shown beside it and is not in the ratio.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import Settings, log, run_agent
from bench.counted import read_steps
from bench.host import (
    MIB,
    PREFIX,
    SYSTEM_URI,
    cpu_seconds,
    disk_target,
    make_base,
    make_overlay,
    start_domain,
)
from bench.observer import Observer
from bench.report import Figure
from bench.terminal import Terminal, peak_rss_mib
from blocktui.engine.session import Session

#: Each background stream's limit: 64 KiB/s over a 256 MiB base, so none ends during the run.
STREAM_LIMIT = 64 * 1024
BASE_SIZE = 256 * MIB
DISKS_PER_DOMAIN = 8
#: The dashboard's refresh interval (``Session.poll_interval``), which the virsh loop matches.
REFRESH = Session(()).poll_interval
#: From process start to the window: imports, the first listing, the first full draw.
WARMUP = 5.0
#: 2 % of one core, in CPU seconds per minute.
GOAL_CPU_PER_MIN = 1.2
GOAL_RATIO = 50.0

SECTION = "1 monitoring cost (dashboard in a 160x50 pty)"
GOAL = "≤ 1.2 s/min (2 %) at N=128; ≥ 50x less CPU per job-refresh than virsh"


def dashboard_argv(*uris: str) -> list[str]:
    """The dashboard as a user starts it: ``blocktui -c URI ...`` (this tree's, by ``-m``)."""
    return [sys.executable, "-m", "blocktui", *(arg for uri in uris for arg in ("-c", uri))]


def start_jobs(observer: Observer, work: Path, have: list[tuple[str, str]], total: int) -> None:
    """Grow the set of running throttled streams to ``total`` (domains of 8 disks, started paused)."""
    base = work / "base-256m.qcow2"
    make_base(base, BASE_SIZE)
    while len(have) < total:
        index = len(have) // DISKS_PER_DOMAIN
        name = f"{PREFIX}mon{index:02d}"
        tops = [work / f"{name}-{disk_target(k)}.qcow2" for k in range(DISKS_PER_DOMAIN)]
        for top in tops:
            make_overlay(top, base)
        start_domain(name, tops, work)
        for k in range(DISKS_PER_DOMAIN):
            observer.pull(name, disk_target(k), STREAM_LIMIT)
            have.append((name, disk_target(k)))


def children_cpu(pid: int) -> float:
    """CPU seconds so far of the processes ``pid`` started and still has (ssh, for remote hosts)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if parent == pid:
                total += cpu_seconds(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
    return total


def dashboard(
    work: Path,
    daemon_pid: int | None,
    seconds: float,
    uris: Sequence[str] = (SYSTEM_URI,),
    warmup: float = WARMUP,
) -> dict[str, float]:
    """CPU of the dashboard process over ``seconds`` after the warm-up, and libvirtd's meanwhile.

    The refreshes are its polls, counted in the process (``bench.counted``): a poll that changed
    nothing writes nothing to the terminal, so the screen alone cannot count them. ``children_cpu``
    is the CPU of the processes it runs (libvirt's ssh to each remote host), not in ``cpu``.
    """
    counter = str(work / "steps")
    argv = [sys.executable, "-m", "bench.counted", counter, *(arg for uri in uris for arg in ("-c", uri))]

    def daemon() -> float:
        return 0.0 if daemon_pid is None else cpu_seconds(daemon_pid)

    with Terminal(argv, screen=False) as term:
        time.sleep(warmup)
        cpu0, daemon0, wall0 = term.cpu(), daemon(), time.monotonic()
        children0 = children_cpu(term.pid)
        bytes0, bursts0, (steps0, read0) = term.bytes_read, term.bursts, read_steps(counter)
        time.sleep(seconds)
        cpu1, daemon1, wall1 = term.cpu(), daemon(), time.monotonic()
        children1 = children_cpu(term.pid)
        steps, read = read_steps(counter)
        steps, read = steps - steps0, read - read0
        if term.process.poll() is not None:
            raise RuntimeError(f"the dashboard exited with {term.process.returncode}")
        written, updates = term.bytes_read - bytes0, term.bursts - bursts0
        rss = peak_rss_mib(term.pid)
    wall = wall1 - wall0
    return {
        "cpu": cpu1 - cpu0,
        "children_cpu": children1 - children0,
        "daemon_cpu": daemon1 - daemon0,
        "wall": wall,
        "refreshes": steps,
        "job_refreshes": read,
        "screen_updates": updates,
        "bytes_per_s": written / wall,
        "maxrss_mib": rss,
    }


def virsh_loop(
    jobs: list[tuple[str, str]], daemon_pid: int, seconds: float, min_sweeps: int
) -> dict[str, float]:
    """Refresh every job with ``virsh blockjob DOMAIN DISK --info``, as fast as it can up to 2 Hz."""
    children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    daemon0 = cpu_seconds(daemon_pid)
    start = time.monotonic()
    sweeps = 0
    while sweeps < min_sweeps or time.monotonic() - start < seconds:
        t0 = time.monotonic()
        for domain, disk in jobs:
            subprocess.run(
                ["virsh", "-c", SYSTEM_URI, "blockjob", domain, disk, "--info"],
                capture_output=True,
                check=False,
            )
        sweeps += 1
        took = time.monotonic() - t0
        if took < REFRESH:
            time.sleep(REFRESH - took)
    wall = time.monotonic() - start
    children1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (children1.ru_utime - children0.ru_utime) + (children1.ru_stime - children0.ru_stime)
    return {
        "cpu": cpu,
        "daemon_cpu": cpu_seconds(daemon_pid) - daemon0,
        "wall": wall,
        "refreshes": sweeps,
    }


def per_refresh(side: dict[str, float], n: int, idle: float) -> tuple[float, float]:
    """(client CPU ms, libvirtd extra CPU ms) per job-refresh; ``idle`` is libvirtd's CPU s/s."""
    # Job statuses actually read (blocktui reads a slow job only when it can have moved); a virsh
    # sweep reads every job.
    count = side.get("job_refreshes") or n * side["refreshes"]
    daemon = side["daemon_cpu"] - idle * side["wall"]
    return 1000 * side["cpu"] / count, 1000 * daemon / count


def _daemon_idle(daemon_pid: int) -> float:
    """libvirtd's CPU seconds per second with the streams running and no client polling."""
    cpu0, t0 = cpu_seconds(daemon_pid), time.monotonic()
    time.sleep(3.0)
    return (cpu_seconds(daemon_pid) - cpu0) / (time.monotonic() - t0)


def percent_of_core(cpu: float, wall: float) -> str:
    """CPU over a window as the table gives it: ``1.80 s/min (3.0 % of a core)``."""
    per_min = cpu / wall * 60
    return f"{per_min:.2f} s/min ({per_min / 60 * 100:.1f} % of a core)"


def _baseline(settings: Settings) -> Figure:
    log(f"monitoring cost: dashboard in a pty, no jobs, {settings.monitor_seconds:.0f} s")
    ours = dashboard(settings.work, settings.daemon_pid, settings.monitor_seconds)
    return Figure(
        SECTION,
        "N=0: blocktui, no jobs",
        percent_of_core(ours["cpu"], ours["wall"]),
        "",
        "(baseline, no goal)",
        None,
        f"the app's own cost with nothing to show; writes {ours['bytes_per_s'] / 1024:.1f} KiB/s to "
        f"the terminal; peak RSS {ours['maxrss_mib']:.0f} MiB",
        {"n": 0, "blocktui": ours},
    )


def _compare(settings: Settings, jobs: list[tuple[str, str]], n: int, largest: int) -> Figure:
    idle = _daemon_idle(settings.daemon_pid)
    log(f"monitoring cost: dashboard in a pty over {settings.monitor_seconds:.0f} s at N={n}")
    ours = dashboard(settings.work, settings.daemon_pid, settings.monitor_seconds)
    log(f"monitoring cost: virsh loop at N={n}")
    theirs = virsh_loop(jobs[:n], settings.daemon_pid, settings.monitor_seconds / 2, 3)
    ours_ms, ours_daemon_ms = per_refresh(ours, n, idle)
    theirs_ms, theirs_daemon_ms = per_refresh(theirs, n, idle)
    ratio = theirs_ms / ours_ms if ours_ms > 0 else float("inf")
    ours_min = ours["cpu"] / ours["wall"] * 60
    rate = theirs["refreshes"] / theirs["wall"]
    met = ratio >= GOAL_RATIO and (n != largest or ours_min <= GOAL_CPU_PER_MIN)
    return Figure(
        SECTION,
        f"N={n}: blocktui, {n} running streams",
        f"{percent_of_core(ours['cpu'], ours['wall'])}; {ours_ms:.3f} ms per job-refresh",
        f"virsh loop {theirs_ms:.1f} ms per job-refresh at {rate:.2f} sweeps/s: {ratio:.1f}x",
        GOAL if n == largest else "≥ 50x less CPU per job-refresh",
        met,
        f"blocktui: {ours['refreshes']:.0f} polls reading {ours['job_refreshes']:.0f} job statuses "
        f"in {ours['wall']:.0f} s "
        f"({ours['refreshes'] / ours['wall']:.2f}/s; {ours['screen_updates']:.0f} screen updates), writes "
        f"{ours['bytes_per_s'] / 1024:.1f} KiB/s, peak RSS {ours['maxrss_mib']:.0f} MiB; virsh loop: "
        f"{theirs['refreshes']:.0f} sweeps in {theirs['wall']:.0f} s "
        f"({percent_of_core(theirs['cpu'], theirs['wall'])}); "
        f"libvirtd on top of idle, per job-refresh (not in the ratio): blocktui {ours_daemon_ms:.3f} ms, "
        f"virsh {theirs_daemon_ms:.2f} ms",
        {
            "n": n,
            "blocktui": ours,
            "virsh": theirs,
            "daemon_idle_cpu_per_s": idle,
            "blocktui_ms_per_job_refresh": ours_ms,
            "virsh_ms_per_job_refresh": theirs_ms,
            "blocktui_daemon_ms_per_job_refresh": ours_daemon_ms,
            "virsh_daemon_ms_per_job_refresh": theirs_daemon_ms,
            "virsh_sweeps_per_s": rate,
            "ratio": ratio,
        },
    )


def _session_loop(settings: Settings, n: int, seconds: float) -> Figure:
    """The Session's poll loop alone, no UI (the former headless method, as a reference)."""
    log(f"monitoring cost: Session poll loop, no UI, {seconds:.0f} s at N={n}")
    ours: dict[str, Any] = run_agent(
        "monitor",
        "--seconds",
        str(seconds),
        "--daemon-pid",
        str(settings.daemon_pid),
        timeout=seconds + 120,
    )
    read = ours.get("job_refreshes") or n * ours["refreshes"]
    ms = 1000 * ours["cpu"] / read if read else float("nan")
    return Figure(
        SECTION,
        f"N={n}: Session poll loop, no UI (headless reference)",
        f"{percent_of_core(ours['cpu'], ours['wall'])}; {ms:.3f} ms per job-refresh",
        "",
        "(reference: what drawing adds)",
        None,
        f"Session.step()/wait() at the dashboard's interval in its own process; {ours['rows']:.0f} rows, "
        f"{ours['refreshes']:.0f} steps reading {read:.0f} job statuses in {ours['wall']:.0f} s",
        {"n": n, "session": ours},
    )


def run(settings: Settings, observer: Observer, jobs: list[tuple[str, str]]) -> list[Figure]:
    """Measure every N, growing ``jobs`` (left running: latency and scale reuse them)."""
    figures: list[Figure] = []
    largest = max(settings.monitor_sizes)
    for n in settings.monitor_sizes:
        if n == 0:
            figures.append(_baseline(settings))
            continue
        log(f"monitoring cost: starting {n} throttled streams at {STREAM_LIMIT // 1024} KiB/s")
        start_jobs(observer, settings.work, jobs, n)
        time.sleep(1.0)
        figures.append(_compare(settings, jobs, n, largest))
    figures.append(_session_loop(settings, largest, settings.monitor_seconds / 3))
    return figures
