"""The measured side of some benchmarks: runs blocktui's engine in its own process, reports JSON to a file.

``python -m bench.agent KIND --out FILE ...`` where KIND is ``monitor`` (the Session poll loop, no
UI), ``budget``, ``queue``, ``chunks`` or ``table`` (the jobs table alone, headless).
A separate process keeps the CPU time it reports blocktui's alone. The dashboard itself is measured
as a user runs it, in a pty (``bench.terminal``), not here.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

# blocktui's libvirt event module must come first: it routes libvirt's log away from stderr.
from blocktui.backends.libvirt_events import ensure_event_loop  # isort: skip
from bench.counted import count_steps, read_steps
from blocktui.backends.libvirt import LibvirtBackend
from blocktui.core.model import JobKey, JobState
from blocktui.core.views import JobView, Snapshot
from blocktui.engine.session import Session


def cpu_of(pid: int) -> float:
    """CPU seconds of another process so far (see ``bench.host.cpu_seconds``)."""
    from bench.host import cpu_seconds

    return cpu_seconds(pid)


def poll_loop(session: Session, stop: threading.Event, on_snapshot: Callable[[Snapshot], None]) -> None:
    """The dashboard's poll worker: step, hand the snapshot on, wait for an event or the interval."""
    while not stop.is_set():
        on_snapshot(session.step())
        session.wait(session.poll_interval)


# -- monitoring cost ----------------------------------------------------------------------------


def monitor(args: argparse.Namespace) -> dict[str, Any]:
    """CPU of this process while it shows every job of the host, over a measured window."""
    ensure_event_loop()
    session = Session([LibvirtBackend(args.uri)])
    result: dict[str, Any] = {"mode": "session", **_monitor_session(session, args)}
    session.close()
    return result


def _window(args: argparse.Namespace, count_rows: Callable[[], int]) -> dict[str, Any]:
    """Sleep through the measured window, noting this process's and the daemon's CPU."""
    cpu0, daemon0, wall0 = time.process_time(), cpu_of(args.daemon_pid), time.monotonic()
    time.sleep(args.seconds)
    cpu1, daemon1, wall1 = time.process_time(), cpu_of(args.daemon_pid), time.monotonic()
    return {
        "cpu": cpu1 - cpu0,
        "daemon_cpu": daemon1 - daemon0,
        "wall": wall1 - wall0,
        "rows": count_rows(),
    }


def _monitor_session(session: Session, args: argparse.Namespace) -> dict[str, Any]:
    handle, counter = tempfile.mkstemp(prefix="bench-counted-")
    os.close(handle)
    count_steps(counter)  # counts the job statuses each poll reads
    session.open()
    stop = threading.Event()
    steps = [0]
    last: list[Snapshot] = []

    def keep(snapshot: Snapshot) -> None:
        steps[0] += 1
        last[:] = [snapshot]

    thread = threading.Thread(target=poll_loop, args=(session, stop, keep), daemon=True)
    thread.start()
    time.sleep(args.warmup)
    before, (_steps, read) = steps[0], read_steps(counter)
    result = _window(args, lambda: len(last[0].jobs) if last else 0)
    result["refreshes"] = steps[0] - before
    result["job_refreshes"] = read_steps(counter)[1] - read
    os.unlink(counter)
    stop.set()
    session.wake()
    thread.join(10)
    return result


# -- planner: host budget and chunk overshoot --------------------------------------------------


def _planner(args: argparse.Namespace, budget: int) -> Any:
    """An engine over a fresh session, its journal in the run's private directory."""
    from blocktui.core.scheduler import HostPolicy
    from blocktui.engine.facade import Engine
    from blocktui.engine.journal import Journal

    ensure_event_loop()
    session = Session([LibvirtBackend(args.uri)])
    session.open()
    journal = Journal(Path(args.state) / "journal.sqlite3")
    return Engine(session, journal, policy=HostPolicy(budget=budget))


def budget(args: argparse.Namespace) -> dict[str, Any]:
    """Streams under a host budget: their summed rate over a window, as blocktui polls it."""
    planner = _planner(args, args.bandwidth)
    keys = [JobKey(args.uri, *item.split(":", 1)) for item in args.disks.split(",")]
    for key in keys:
        planner.add_stream(key)
    samples: list[tuple[float, int]] = []
    start = time.monotonic()
    for snapshot in planner.polls(stop=lambda: time.monotonic() - start >= args.warmup + args.seconds):
        now = time.monotonic()
        jobs = [j for j in snapshot.jobs if j.key in keys]
        if now - start >= args.warmup and len(jobs) == len(keys):
            if any(j.state.is_final for j in jobs):
                break
            samples.append((now, sum(j.cur for j in jobs)))
    for key in keys:
        planner.cancel(key)
    planner.run_until(planner.idle, timeout=30)
    planner.close()
    (t0, c0), (t1, c1) = samples[0], samples[-1]
    windows = [
        (later[0][1] - c) / (later[0][0] - t)
        for i, (t, c) in enumerate(samples)
        if (later := [(tb, cb) for tb, cb in samples[i:] if tb - t >= 2.0])
    ]
    return {
        "rate": (c1 - c0) / (t1 - t0),
        "peak_rate": max(windows, default=0.0),
        "window": t1 - t0,
        "samples": len(samples),
        "streams": len(keys),
    }


def queue(args: argparse.Namespace) -> dict[str, Any]:
    """Streams through a host queue and budget, to completion: the most ever active at once, and
    the summed rate over every 2 s window, as blocktui polls them."""
    from blocktui.core.model import JobState
    from blocktui.core.scheduler import HostPolicy

    planner = _planner(args, args.bandwidth)
    planner.set_policy(HostPolicy(max_active=args.max_active or None, budget=args.bandwidth))
    keys = [JobKey(args.uri, *item.split(":", 1)) for item in args.disks.split(",")]
    for key in keys:
        planner.add_stream(key)
    running = {JobState.ACTIVE, JobState.READY}
    samples: list[tuple[float, int]] = []
    most_active = 0
    start = time.monotonic()
    for snapshot in planner.polls(stop=lambda: planner.idle() or time.monotonic() - start >= args.seconds):
        jobs = [j for j in snapshot.jobs if j.key in keys]
        most_active = max(most_active, sum(j.state in running for j in jobs))
        samples.append((time.monotonic(), sum(j.cur for j in jobs if j.state is not JobState.QUEUED)))
    finished = planner.idle()
    planner.close()
    windows = []
    for i, (t0, c0) in enumerate(samples):
        later = [(t, c) for t, c in samples[i:] if t - t0 >= 2.0]
        if later:
            t1, c1 = later[0]
            windows.append((c1 - c0) / (t1 - t0))
    return {
        "most_active": most_active,
        "peak_rate": max(windows, default=0.0),
        "mean_rate": statistics.median(windows) if windows else 0.0,
        "finished": finished,
        "seconds": time.monotonic() - start,
        "streams": len(keys),
    }


def chunks(args: argparse.Namespace) -> dict[str, Any]:
    """Chunked streams to completion; the bytes each checkpoint landed past its boundary."""
    planner = _planner(args, 0)
    plans = [
        planner.add_stream(JobKey(args.uri, *item.split(":", 1)), bandwidth=args.bandwidth, chunk=args.chunk)
        for item in args.disks.split(",")
    ]
    start = time.monotonic()
    planner.run_until(planner.idle, timeout=args.seconds)
    took = time.monotonic() - start
    planner.close()
    overshoots = sorted(o for plan in plans for o in plan.overshoots)
    return {
        "overshoots": overshoots,
        "statuses": [str(plan.status) for plan in plans],
        "seconds": took,
    }


# -- one table update with many rows ------------------------------------------------------------


def table(args: argparse.Namespace) -> dict[str, Any]:
    """Time ``JobsTable.sync`` with ``rows`` jobs: the first fill, then updates where every row changed.

    Each time runs from the call to sync() until the screen has been refreshed with its changes.
    """
    return asyncio.run(_table(args.rows, args.repeats))


async def _table(rows: int, repeats: int) -> dict[str, Any]:
    from textual.app import App, ComposeResult

    from blocktui.core.model import JobKind
    from blocktui.ui.widgets.jobs_table import JobsTable

    class TableApp(App[None]):
        def compose(self) -> ComposeResult:
            yield JobsTable(id="jobs")

    def views(step: int) -> list[JobView]:
        size = 1024**3
        return [
            JobView(
                key=JobKey("qemu:///system", f"vm{i // 4:04d}", f"vd{'abcd'[i % 4]}"),
                kind=JobKind.PULL,
                state=JobState.ACTIVE,
                cur=(step * 7 + i) * 1024**2 % size,
                end=size,
                remaining=size - (step * 7 + i) * 1024**2 % size,
                fraction=((step * 7 + i) * 1024**2 % size) / size,
                rate=(50 + step + i % 13) * 1024**2,
                eta=float(10 + step + i % 17),
                elapsed=float(step),
                bandwidth=100 * 1024**2,
                error=None,
                note="",
                history=(),
            )
            for i in range(rows)
        ]

    app = TableApp()
    async with app.run_test(headless=True, size=(160, 50)) as pilot:
        jobs_table = app.query_one(JobsTable)

        async def refreshed() -> None:
            # Until the screen has been painted with what sync() changed: not pilot.pause(), whose
            # wait for the process to go idle sleeps 20 ms or more by itself.
            done = asyncio.Event()
            jobs_table.call_after_refresh(done.set)
            await done.wait()

        await pilot.pause()
        t0 = time.monotonic()
        jobs_table.sync(views(0), {})
        await refreshed()
        fill = time.monotonic() - t0
        syncs: list[float] = []
        totals: list[float] = []
        for step in range(1, repeats + 1):
            batch = views(step)
            await pilot.pause()  # start each update on an idle app
            t0 = time.monotonic()
            jobs_table.sync(batch, {})
            t1 = time.monotonic()
            await refreshed()
            t2 = time.monotonic()
            syncs.append(t1 - t0)
            totals.append(t2 - t0)
    return {
        "rows": rows,
        "fill_s": fill,
        "sync_ms": 1000 * statistics.median(syncs),
        "update_ms": 1000 * statistics.median(totals),
        "update_max_ms": 1000 * max(totals),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run one measurement and write its JSON result to ``--out``."""
    parser = argparse.ArgumentParser(prog="python -m bench.agent")
    parser.add_argument("kind", choices=("monitor", "budget", "queue", "chunks", "table"))
    parser.add_argument("--state", default="", help="directory for the planner's journal")
    parser.add_argument("--chunk", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--uri", default="qemu:///system")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--daemon-pid", type=int, default=0)
    parser.add_argument("--disks", default="", help="DOMAIN:DISK,... to stream")
    parser.add_argument("--bandwidth", type=int, default=0)
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--max-active", type=int, default=0)
    args = parser.parse_args(argv)
    kinds: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
        "monitor": monitor,
        "budget": budget,
        "queue": queue,
        "chunks": chunks,
        "table": table,
    }
    result = kinds[args.kind](args)
    args.out.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
