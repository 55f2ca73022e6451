"""1. Monitoring cost: blocktui showing N throttled streams versus a ``virsh blockjob --info`` loop."""

from __future__ import annotations

import resource
import subprocess
import time
from pathlib import Path

from bench.common import Settings, log, run_agent
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
from blocktui.engine.session import Session

#: Each background stream's limit: slow enough that none ends during the section (64 MiB base).
STREAM_LIMIT = 128 * 1024
DISKS_PER_DOMAIN = 8
#: The dashboard's refresh interval (``Session.poll_interval``), which the virsh loop matches.
REFRESH = Session(()).poll_interval
#: 2 % of one core, in CPU seconds per minute.
GOAL_CPU_PER_MIN = 1.2
GOAL_RATIO = 50.0

SECTION = "1 monitoring cost (CPU s per minute)"


def start_jobs(observer: Observer, work: Path, have: list[tuple[str, str]], total: int) -> None:
    """Grow the set of running throttled streams to ``total`` (domains of 8 disks, started paused)."""
    base = work / "base-64m.qcow2"
    make_base(base, 64 * MIB)
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


def virsh_loop(
    jobs: list[tuple[str, str]], daemon_pid: int, seconds: float, min_sweeps: int
) -> dict[str, float]:
    """Sweep ``virsh blockjob DOMAIN DISK --info`` over every job each REFRESH seconds."""
    children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    daemon0 = cpu_seconds(daemon_pid)
    start = time.monotonic()
    sweeps = 0
    sweep_times: list[float] = []
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
        sweep_times.append(took)
        if took < REFRESH:
            time.sleep(REFRESH - took)
    wall = time.monotonic() - start
    children1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (children1.ru_utime - children0.ru_utime) + (children1.ru_stime - children0.ru_stime)
    return {
        "cpu": cpu,
        "daemon_cpu": cpu_seconds(daemon_pid) - daemon0,
        "wall": wall,
        "sweeps": sweeps,
        "sweep_s": sum(sweep_times) / len(sweep_times),
    }


def _ours(settings: Settings, app: bool) -> dict[str, float]:
    return run_agent(
        "monitor",
        "--seconds",
        str(settings.monitor_seconds),
        "--daemon-pid",
        str(settings.daemon_pid),
        *(["--app"] if app else []),
        timeout=settings.monitor_seconds + 120,
    )


def run(settings: Settings, observer: Observer) -> tuple[list[Figure], list[tuple[str, str]]]:
    """Measure every N; return the figures and the jobs left running (the latency section reuses them)."""
    figures: list[Figure] = []
    jobs: list[tuple[str, str]] = []
    largest = max(settings.monitor_sizes)
    if settings.app:
        log("monitoring cost: headless dashboard with no jobs (its fixed cost)")
        idle_app = _ours(settings, True)
        per_min = idle_app["cpu"] / idle_app["wall"] * 60
        figures.append(
            Figure(
                SECTION,
                "N=0: blocktui dashboard, no jobs",
                f"{per_min:.2f} s/min ({per_min / 60 * 100:.1f} % of a core)",
                "",
                "(baseline, no goal)",
                None,
                f"the app's own cost with nothing to show: {idle_app['refreshes']:.0f} refreshes in "
                f"{idle_app['wall']:.0f} s",
                {"n": 0, "side": "dashboard", "blocktui": idle_app, "blocktui_cpu_per_min": per_min},
            )
        )
    for n in settings.monitor_sizes:
        log(f"monitoring cost: starting {n} throttled streams")
        start_jobs(observer, settings.work, jobs, n)
        time.sleep(1.0)
        idle0, t0 = cpu_seconds(settings.daemon_pid), time.monotonic()
        time.sleep(3.0)
        idle = (cpu_seconds(settings.daemon_pid) - idle0) / (time.monotonic() - t0) * 60
        sides: list[tuple[str, dict[str, float]]] = []
        if settings.app:
            log(f"monitoring cost: headless dashboard over {settings.monitor_seconds:.0f} s at N={n}")
            sides.append(("dashboard", _ours(settings, True)))
        log(f"monitoring cost: Session poll loop over {settings.monitor_seconds:.0f} s at N={n}")
        sides.append(("poll loop", _ours(settings, False)))
        log(f"monitoring cost: virsh loop at N={n}")
        theirs = virsh_loop(jobs[:n], settings.daemon_pid, settings.monitor_seconds / 2, 2)
        # CPU per sweep times sweeps per minute at the dashboard's refresh rate, even when the loop
        # cannot keep that pace (it is then both slower and this expensive).
        theirs_min = theirs["cpu"] / theirs["sweeps"] * 60 / REFRESH
        busy = min(1.0, theirs["sweep_s"] / REFRESH)
        theirs_daemon = theirs["daemon_cpu"] / theirs["sweeps"] * 60 / REFRESH - idle * busy
        pace = (
            "keeps the 0.5 s pace"
            if theirs["sweep_s"] <= REFRESH
            else f"cannot keep the pace: one sweep takes {theirs['sweep_s']:.1f} s"
        )
        for label, ours in sides:
            ours_min = ours["cpu"] / ours["wall"] * 60
            ours_daemon = ours["daemon_cpu"] / ours["wall"] * 60 - idle
            ratio = theirs_min / ours_min if ours_min > 0 else float("inf")
            met = ratio >= GOAL_RATIO and (n != largest or ours_min <= GOAL_CPU_PER_MIN)
            what = (
                "the real app headless (App.run_test): poll worker, tree, jobs table, detail, footer"
                if label == "dashboard"
                else "Session.step()/wait() at the dashboard's interval, no UI"
            )
            figures.append(
                Figure(
                    SECTION,
                    f"N={n}: blocktui {label}",
                    f"{ours_min:.2f} s/min ({ours_min / 60 * 100:.1f} % of a core)",
                    f"virsh loop {theirs_min:.1f} s/min: {ratio:.1f}x",
                    "≤ 1.2 s/min (2 %) at N=128; ≥ 50x cheaper",
                    met,
                    f"{what}; {ours['rows']:.0f} rows, {ours['refreshes']:.0f} refreshes in "
                    f"{ours['wall']:.0f} s; libvirtd on top of idle: blocktui {ours_daemon:.2f} s/min, "
                    f"virsh loop {theirs_daemon:.1f} s/min; virsh loop {pace}",
                    {
                        "n": n,
                        "side": label,
                        "blocktui": ours,
                        "virsh": theirs,
                        "daemon_idle_cpu_per_min": idle,
                        "blocktui_cpu_per_min": ours_min,
                        "virsh_cpu_per_min": theirs_min,
                        "blocktui_daemon_cpu_per_min": ours_daemon,
                        "virsh_daemon_cpu_per_min": theirs_daemon,
                        "ratio": ratio,
                    },
                )
            )
    return figures, jobs
