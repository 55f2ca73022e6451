"""``make bench``: run every benchmark, print one table, write it (and JSON) beside this package.

The run starts (or reuses) a system libvirtd, creates paused TCG domains named ``btbench-*`` over
qcow2 chains in a private directory, and removes all of them at the end. The fleet section then
brings up fleet-lab hosts of its own (users ``btbench-fleet-K``) and brings them down after.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from bench import fleet, latency, monitor, planner, rate_truth, scale, throughput
from bench.common import Settings, log
from bench.host import clean_dir, daemon_lock, destroy_domains, system_daemon
from bench.observer import Observer
from bench.report import Figure, machine, render, render_markdown, write_json

SECTIONS = ("monitor", "latency", "throughput", "throttle", "planner", "rate", "scale", "fleet")
#: Sections on the system libvirtd (the fleet brings up hosts of its own).
SYSTEM_SECTIONS = set(SECTIONS) - {"fleet"}
T = TypeVar("T")
failures: list[Figure] = []
RESULTS = Path(__file__).resolve().parent / "results"


def guarded(section: str, measure: Callable[[], T], empty: T) -> T:
    """Run one section; a failure becomes a "not measured" row instead of ending the whole run."""
    try:
        return measure()
    except Exception as exc:  # any failure of one section must not lose the others' figures
        log(f"{section} failed: {type(exc).__name__}: {exc}")
        failures.append(Figure(section, "not measured", f"{type(exc).__name__}", note=str(exc)[-300:]))
        return empty


def loaded_sections(
    settings: Settings, observer: Observer, only: Sequence[str]
) -> tuple[list[Figure], list[Figure]]:
    """The sections that need many running streams: monitoring cost, then latency and scale on the
    largest set of streams it leaves running. Returns (monitor and latency figures, scale's)."""
    figures: list[Figure] = []
    jobs: list[tuple[str, str]] = []
    if "monitor" in only:
        figures += guarded("1 monitor", lambda: monitor.run(settings, observer, jobs), [])
    if "latency" not in only and "scale" not in only:
        return figures, []
    monitor.start_jobs(observer, settings.work, jobs, max(settings.monitor_sizes))
    if "latency" in only:
        figures += guarded("2 latency", lambda: latency.run(settings, observer, len(jobs)), [])
    scaled: list[Figure] = []
    if "scale" in only:
        scaled = guarded("6 scale", lambda: scale.run(settings, len(jobs)), [])
    return figures, scaled


def system_sections(work: Path, quick: bool, only: Sequence[str]) -> list[Figure]:
    """Every section on the system libvirtd named in ``only``, in the table's order."""
    figures: list[Figure] = []
    with daemon_lock(), system_daemon() as daemon:
        settings = Settings(work=work, daemon_pid=daemon.pid, quick=quick)
        observer = Observer()
        try:
            loaded, scaled = loaded_sections(settings, observer, only)
            figures += loaded
            destroy_domains()
            if "latency" in only:
                figures += guarded("2 latency", lambda: latency.run(settings, observer, 0), [])
            if "throughput" in only:
                figures += throughput.run_neutrality(settings, observer)
            if "throttle" in only:
                figures += throughput.run_throttle(settings, observer)
            if "planner" in only:
                figures += planner.run(settings, observer)
            if "rate" in only:
                figures += guarded("7 rate", lambda: rate_truth.run(settings, observer), [])
        finally:
            destroy_domains()
            observer.close()
    return figures + scaled


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks named (default: all) and print the table."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--quick", action="store_true", help="smaller N and fewer repetitions")
    parser.add_argument("--work", type=Path, default=Path(os.environ.get("BLOCKTUI_LAB_DIR", "/tmp/btb")))
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("bench: run as root (it starts a system libvirtd and QEMU domains)", file=sys.stderr)
        return 2
    started = time.monotonic()
    figures: list[Figure] = []
    work: Path = args.work / "run"
    clean_dir(work)
    work.mkdir(parents=True)
    # The planner's journal (the dashboard opens one) stays in the private directory.
    os.environ["BLOCKTUI_STATE_DIR"] = str(work / "state")
    try:
        if SYSTEM_SECTIONS & set(args.only):
            figures += system_sections(work, args.quick, args.only)
        if "fleet" in args.only:
            settings = Settings(work=work, daemon_pid=0, quick=args.quick)
            figures += guarded("8 fleet", lambda: fleet.run(settings, guarded), [])
        figures += failures
    finally:
        clean_dir(work)
    elapsed = time.monotonic() - started
    meta = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "mode": "dashboard in a 160x50 pty",
        "quick": args.quick,
        "sections": args.only,
        "runtime_s": round(elapsed),
        "command": "make bench" + ("" if not args.quick else "  (python -m bench --quick)"),
    }
    table = render(figures)
    header = (
        f"blocktui benchmarks, {meta['date']}, {meta['runtime_s']} s, measuring the {meta['mode']}\n"
        f"machine: {', '.join(f'{k} {v}' for k, v in meta['machine'].items())}\n"
    )
    print(header + "\n" + table)
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "latest.txt").write_text(header + "\n" + table)
    (args.results / "latest.md").write_text(render_markdown(figures))
    write_json(args.results / "latest.json", figures, meta)
    log(f"wrote {args.results / 'latest.txt'} and latest.json in {elapsed:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
