"""The measured side of each benchmark: runs blocktui in its own process, reports JSON to a file.

``python -m bench.agent KIND --out FILE ...`` where KIND is ``monitor``, ``latency``,
``scale`` or ``table``. A separate process keeps the CPU time and RSS it reports blocktui's alone.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

T_PROCESS = time.monotonic()

# blocktui's libvirt event module must come first: it routes libvirt's log away from stderr.
from blocktui.backends.libvirt_events import ensure_event_loop  # noqa: E402  # isort: skip
from blocktui.backends.libvirt import LibvirtBackend  # noqa: E402
from blocktui.core.model import JobKey, JobState  # noqa: E402
from blocktui.core.views import JobView, Snapshot  # noqa: E402
from blocktui.engine.session import Session  # noqa: E402

if TYPE_CHECKING:
    from blocktui.ui.app import BlocktuiApp

T_IMPORTED = time.monotonic()


def ui_available() -> bool:
    """Whether the Textual dashboard can be imported (else the Session poll loop stands in)."""
    try:
        import blocktui.ui.app
        import blocktui.ui.widgets.jobs_table  # noqa: F401
    except ImportError:
        return False
    return True


def cpu_of(pid: int) -> float:
    """CPU seconds of another process so far (see ``bench.host.cpu_seconds``)."""
    from bench.host import cpu_seconds

    return cpu_seconds(pid)


class StampedBackend(LibvirtBackend):
    """The libvirt backend, noting the monotonic time libvirt delivers each final job event.

    Only for the benchmark: it overrides the backend's event callback to stamp first, then lets
    the backend handle the event unchanged.
    """

    def __init__(self, uri: str) -> None:
        super().__init__(uri)
        self.delivered: dict[tuple[str, str], float] = {}

    def _on_block_job(
        self, conn: Any, dom: Any, disk: str, job_type: int, status: int, opaque: object
    ) -> None:
        now = time.monotonic()
        if status in (0, 1, 2):  # COMPLETED, FAILED, CANCELED: the job's final event
            self.delivered[(dom.name(), disk)] = now
        super()._on_block_job(conn, dom, disk, job_type, status, opaque)


class StampedSession(Session):
    """The session, noting when a step first returns each job in a final state (benchmark only)."""

    def __init__(self, backends: Sequence[LibvirtBackend]) -> None:
        super().__init__(backends)
        self.stepped: dict[tuple[str, str], float] = {}

    def step(self) -> Snapshot:
        snapshot = super().step()
        now = time.monotonic()
        for job in snapshot.jobs:
            if job.state.is_final:
                self.stepped.setdefault((job.key.domain, job.key.disk), now)
        return snapshot


def poll_loop(session: Session, stop: threading.Event, on_snapshot: Callable[[Snapshot], None]) -> None:
    """The dashboard's poll worker: step, hand the snapshot on, wait for an event or the interval."""
    while not stop.is_set():
        on_snapshot(session.step())
        session.wait(session.poll_interval)


class TableProbe:
    """Watches what the jobs table is given and when the screen next refreshes after a final state.

    Wraps ``JobsTable.sync`` for this process only (the dashboard's code is unchanged).
    """

    def __init__(self) -> None:
        self.syncs = 0
        self.rows = 0
        self.shown: dict[tuple[str, str], float] = {}
        self.synced: dict[tuple[str, str], float] = {}
        self.watch: set[tuple[str, str]] = set()

    def stamp(self, where: tuple[str, str]) -> None:
        """Note that the screen has just refreshed with ``where`` in its final state."""
        self.shown[where] = time.monotonic()

    def install(self) -> None:
        from blocktui.ui.widgets.jobs_table import JobsTable

        original = JobsTable.sync
        probe = self

        def sync(table: JobsTable, jobs: Sequence[JobView], *rest: Any, **options: Any) -> bool:
            # Whatever else the table takes is passed through untouched.
            changed = original(table, jobs, *rest, **options)
            probe.syncs += 1
            probe.rows = len(jobs)
            for job in jobs:
                where = (job.key.domain, job.key.disk)
                if job.state.is_final and where in probe.watch:
                    probe.watch.discard(where)
                    probe.synced[where] = time.monotonic()
                    table.call_after_refresh(probe.stamp, where)
            return changed

        JobsTable.sync = sync  # type: ignore[method-assign,assignment]


def dashboard(session: Session) -> BlocktuiApp:
    """The app as ``run_dashboard`` builds it: a planner with default policies over the session.

    The journal goes where ``$BLOCKTUI_STATE_DIR`` says (the benchmark's private directory).
    """
    from blocktui.engine.facade import Engine
    from blocktui.engine.journal import Journal
    from blocktui.ui.app import BlocktuiApp

    return BlocktuiApp(Engine(session, Journal()))


# -- monitoring cost ----------------------------------------------------------------------------


def monitor(args: argparse.Namespace) -> dict[str, Any]:
    """CPU of this process while it shows every job of the host, over a measured window."""
    ensure_event_loop()
    session = Session([LibvirtBackend(args.uri)])
    result: dict[str, Any] = {"mode": "app" if args.app else "session"}
    if args.app:
        result.update(asyncio.run(_monitor_app(session, args)))
    else:
        result.update(_monitor_session(session, args))
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
    before = steps[0]
    result = _window(args, lambda: len(last[0].jobs) if last else 0)
    result["refreshes"] = steps[0] - before
    stop.set()
    session.wake()
    thread.join(10)
    return result


async def _monitor_app(session: Session, args: argparse.Namespace) -> dict[str, Any]:

    probe = TableProbe()
    probe.install()
    app = dashboard(session)
    async with app.run_test(headless=True, size=(160, 50)):
        await asyncio.sleep(args.warmup)
        before = probe.syncs
        # The window sleeps in a thread so the app's loop keeps running undisturbed.
        result = await asyncio.to_thread(_window, args, lambda: probe.rows)
        result["refreshes"] = probe.syncs - before
        app.main.stop_polling()
    return result


# -- event-to-screen latency --------------------------------------------------------------------


def latency(args: argparse.Namespace) -> dict[str, Any]:
    """Start streams one at a time; for each, time libvirt's completion event to the table showing it."""
    ensure_event_loop()
    backend = StampedBackend(args.uri)
    session = StampedSession([backend])
    disks = [tuple(item.split(":", 1)) for item in args.disks.split(",")]
    probe = TableProbe()
    if args.app:
        shown = asyncio.run(_latency_app(session, disks, probe))
        mode = "app"
    else:
        shown = _latency_session(session, disks)
        mode = "session"
    session.close()
    ms = sorted(1000 * (shown[w] - backend.delivered[w]) for w in shown if w in backend.delivered)
    phases = {
        # libvirt's event to the session's step returning it final (drain, re-read chains, poll).
        "session_ms": [session.stepped[w] - backend.delivered[w] for w in shown if w in session.stepped],
        # that step to the table being given it (message to the UI thread, tree rebuild).
        "to_table_ms": [probe.synced[w] - session.stepped[w] for w in probe.synced if w in session.stepped],
        # the table given it to the screen refreshed.
        "paint_ms": [shown[w] - probe.synced[w] for w in probe.synced if w in shown],
    }
    return {
        "mode": mode,
        "count": len(ms),
        "p50_ms": statistics.median(ms) if ms else None,
        "p99_ms": _percentile(ms, 0.99),
        "max_ms": ms[-1] if ms else None,
        "samples_ms": ms,
        **{name: 1000 * statistics.median(v) if v else None for name, v in phases.items()},
    }


def _percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile."""
    if not sorted_values:
        return None
    rank = max(1, -(-int(q * len(sorted_values) * 1000) // 1000))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def _run_sequence(
    session: Session,
    disks: list[tuple[str, ...]],
    shown: dict[tuple[str, str], float],
    watch: Callable[[tuple[str, str]], None],
) -> dict[tuple[str, str], float]:
    """Start each disk's stream after the previous one was shown ended; return when each was shown."""
    for domain, disk in disks:
        where = (domain, disk)
        watch(where)
        session.start_stream(args_uri(session), domain, disk)
        deadline = time.monotonic() + 60
        while where not in shown and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(0.05)  # let libvirt finish with this domain before its next job starts
    return shown


def args_uri(session: Session) -> str:
    """The session's one host."""
    return session.hosts[0]


def _latency_session(session: Session, disks: list[tuple[str, ...]]) -> dict[tuple[str, str], float]:
    session.open()
    shown_at: dict[tuple[str, str], float] = {}
    watching: set[tuple[str, str]] = set()
    stop = threading.Event()

    def on_snapshot(snapshot: Snapshot) -> None:
        now = time.monotonic()
        for job in snapshot.jobs:
            where = (job.key.domain, job.key.disk)
            if where in watching and job.state.is_final:
                watching.discard(where)
                shown_at[where] = now

    thread = threading.Thread(target=poll_loop, args=(session, stop, on_snapshot), daemon=True)
    thread.start()
    try:
        return _run_sequence(session, disks, shown_at, watching.add)
    finally:
        stop.set()
        session.wake()
        thread.join(10)


async def _latency_app(
    session: Session, disks: list[tuple[str, ...]], probe: TableProbe
) -> dict[tuple[str, str], float]:

    probe.install()
    app = dashboard(session)
    async with app.run_test(headless=True, size=(160, 50)):
        await _until(lambda: probe.syncs > 0, 60)
        samples = await asyncio.to_thread(_run_sequence, session, disks, probe.shown, probe.watch.add)
        app.main.stop_polling()
    return samples


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
    return {"rate": (c1 - c0) / (t1 - t0), "window": t1 - t0, "samples": len(samples), "streams": len(keys)}


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


# -- scale --------------------------------------------------------------------------------------


def scale(args: argparse.Namespace) -> dict[str, Any]:
    """Open a big host: the first snapshot (Session only), or the dashboard's first complete screen.

    Times are absolute ``time.monotonic()`` readings (one clock for every process on the host), so
    the driver can count from the moment it started this process.
    """
    ensure_event_loop()
    if args.app:
        result = asyncio.run(_scale_app(args.uri))
    else:
        session = Session([LibvirtBackend(args.uri)])
        t_open = time.monotonic()
        session.open()
        snapshot = session.snapshot()
        result = {
            "open_s": time.monotonic() - t_open,
            "shown_at": time.monotonic(),
            "domains": len(snapshot.domains),
            "disks": sum(len(d.disks) for d in snapshot.domains),
            "layers": sum(len(disk.chain) for d in snapshot.domains for disk in d.disks),
        }
        session.close()
    result["imports_s"] = T_IMPORTED - T_PROCESS
    result["maxrss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


async def _scale_app(uri: str) -> dict[str, Any]:
    """From here to the first screen with the tree and the jobs table filled."""
    t_import = time.monotonic()
    import blocktui.ui.app  # noqa: F401 - timed here: the dashboard's import cost
    from blocktui.ui.widgets.domain_tree import DomainTree

    t0 = time.monotonic()
    probe = TableProbe()
    probe.install()
    session = Session([LibvirtBackend(uri)])
    app = dashboard(session)
    async with app.run_test(headless=True, size=(160, 50)) as pilot:
        await _until(lambda: probe.syncs > 0, 60)
        await pilot.pause()
        shown = time.monotonic()
        nodes = _count_nodes(app.main.query_one(DomainTree).root)
        app.main.stop_polling()
    return {"ui_import_s": t0 - t_import, "ui_s": shown - t0, "shown_at": shown, "tree_nodes": nodes}


async def _until(ready: Callable[[], bool], timeout: float) -> None:
    """Wait on the app's loop until ``ready()``; raise after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise TimeoutError("the dashboard showed nothing in time")
        await asyncio.sleep(0.005)


def _count_nodes(node: Any) -> int:
    return 1 + sum(_count_nodes(child) for child in node.children)


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


# -- entry ----------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run one measurement and write its JSON result to ``--out``."""
    parser = argparse.ArgumentParser(prog="python -m bench.agent")
    parser.add_argument("kind", choices=("monitor", "latency", "budget", "queue", "chunks", "scale", "table"))
    parser.add_argument("--state", default="", help="directory for the planner's journal")
    parser.add_argument("--chunk", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--uri", default="qemu:///system")
    parser.add_argument("--app", action="store_true", help="run the real dashboard headless")
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
        "latency": latency,
        "budget": budget,
        "queue": queue,
        "chunks": chunks,
        "scale": scale,
        "table": table,
    }
    result = kinds[args.kind](args)
    args.out.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
