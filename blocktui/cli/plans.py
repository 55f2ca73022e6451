"""The CLI's planned commands: chunked and guarded ``stream --wait``, pause/resume as plans, ``history``."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable
from typing import Any, TextIO

from blocktui.cli.args import bandwidth_arg, gap_arg, max_active_arg, positive_int, size_arg
from blocktui.cli.hosts import target_disk, wait_for_end
from blocktui.cli.output import describe_end, job_json, one_line, print_json, progress_line, warn
from blocktui.core.errors import InvalidInput, NoSpace
from blocktui.core.model import ConnectionState, HostInfo, JobKey, JobState
from blocktui.core.text import visible
from blocktui.core.units import format_bandwidth, format_size
from blocktui.core.views import JobView
from blocktui.core.windows import window_of
from blocktui.engine import GUARD_ENV, Engine, Entry, Journal, Plan, PlanStatus


def add_global_options(parser: argparse.ArgumentParser) -> None:
    """``--max-active``, ``--budget``, ``--no-guard``: how plans run on every host."""
    plans = parser.add_argument_group("plans (streams blocktui drives: stream --wait/--chunk, the dashboard)")
    plans.add_argument(
        "--max-active",
        type=max_active_arg,
        metavar="N",
        help="run at most N streams per host; others queue",
    )
    plans.add_argument(
        "--budget",
        type=bandwidth_arg,
        default=0,
        metavar="BW",
        help="cap the sum of stream rates per host",
    )
    plans.add_argument(
        "--no-guard",
        action="store_true",
        help=f"do not hold back streams of one domain ending together (guard is on for QEMU < 10.2; "
        f"also {GUARD_ENV}=off)",
    )


def add_stream_options(stream: argparse.ArgumentParser) -> None:
    """``--chunk``, ``--gap``, ``--dry-run`` and ``--force`` for ``stream``."""
    stream.add_argument(
        "--dry-run",
        action="store_true",
        help="only say what the stream would copy, how long it takes and whether it fits (exit 4: no room)",
    )
    stream.add_argument(
        "--force", action="store_true", help="start even when the copy looks too large for the free space"
    )
    stream.add_argument(
        "--chunk",
        type=size_arg,
        metavar="SIZE",
        help="stop at every SIZE boundary (implies --wait)",
    )
    stream.add_argument("--gap", type=gap_arg, metavar="SECONDS", help="pause between chunks (default 0)")


def add_history_command(commands: Any) -> None:
    """The ``history`` subcommand."""
    history = commands.add_parser("history", help="jobs blocktui started or saw, from its journal")
    history.add_argument("--json", action="store_true", help="machine-readable output")
    history.add_argument("--limit", type=positive_int, default=50, metavar="N", help="newest N (default 50)")


#: How long ``abort`` waits for its turn before giving up (seconds): other ends take seconds.
ABORT_TURN_TIMEOUT = 600.0


def cmd_preflight(engine: Engine, args: argparse.Namespace) -> int:
    """``stream --dry-run``: the pre-flight alone; nothing is started."""
    key = target_disk(engine, args)
    check = engine.preflight(key, bandwidth=args.bandwidth, base=args.base)
    if args.json:
        print_json(check.as_json())
    else:
        print(f"{visible(key.domain)}/{visible(key.disk)}: {check.summary()}")
        if check.reason:
            print(one_line(check.reason), file=sys.stderr)
    return NoSpace.exit_code if check.fits is False else 0


def refuse_if_no_room(engine: Engine, key: JobKey, args: argparse.Namespace) -> None:
    """Refuse a stream whose copy cannot fit where the overlay lives (unless ``--force``).

    Raises:
        NoSpace: the copy needs more room than there is.
    """
    if args.force:
        return
    check = engine.preflight(key, bandwidth=args.bandwidth, base=args.base)
    if check.fits is False:
        raise NoSpace(f"{visible(key.domain)}/{visible(key.disk)}: {check.reason}")


def cmd_stream_planned(engine: Engine, args: argparse.Namespace) -> int:
    """``stream --wait`` / ``--chunk``: a plan drives the stream (chunks, budget, guard) to its end."""
    key = target_disk(engine, args)
    refuse_if_no_room(engine, key, args)
    plan = engine.add_stream(key, bandwidth=args.bandwidth, base=args.base, chunk=args.chunk, gap=args.gap)
    return _follow_to_end(engine, plan, key, args)


def cmd_stream_window(engine: Engine, args: argparse.Namespace) -> int:
    """``stream --offset --length``: a plan copies one window (this process reads it, so it waits)."""
    if args.offset is None or args.length is None:
        raise InvalidInput("a window needs both --offset and --length (e.g. --offset 16M --length 8M)")
    if args.dry_run:
        raise InvalidInput("--dry-run measures whole streams only: leave out --offset/--length")
    window, widened = window_of(args.offset, args.length)
    if widened:
        print(one_line(widened), file=sys.stderr)
    key = target_disk(engine, args)
    plan = engine.add_stream(key, bandwidth=args.bandwidth, chunk=args.chunk, window=window)
    return _follow_to_end(engine, plan, key, args)


def cmd_stream_unwatched(engine: Engine, args: argparse.Namespace) -> int:
    """``stream`` without ``--wait``: start it and leave, where nobody needs to watch its end."""
    key = target_disk(engine, args)
    where = f"{visible(key.domain)}/{visible(key.disk)}"
    refuse_if_no_room(engine, key, args)
    engine.step()
    plan = engine.start_unwatched(key, bandwidth=args.bandwidth, base=args.base)
    if plan is not None:
        # Another job of the domain started at the same moment: its end and ours need a guard.
        print(
            one_line(
                f"{where}: another job of {visible(key.domain)} started at the same time; "
                "staying to guard the end, as --wait does (Ctrl-C hands it back)"
            ),
            file=sys.stderr,
        )
        return _follow_to_end(engine, plan, key, args)
    view = engine.job(key)
    if args.json and view is not None:
        print_json(job_json(view))
    else:
        print(f"{where}: stream started ({format_bandwidth(args.bandwidth)})")
    return 0


def cmd_abort_guarded(engine: Engine, args: argparse.Namespace) -> int:
    """``abort``: an abort ends the QEMU job, so it waits for its turn when another job of the domain ends."""
    key = target_disk(engine, args)
    where = f"{visible(key.domain)}/{visible(key.disk)}"
    engine.step()
    plan = engine.abort(key)
    if plan is not None:
        print(f"{where}: abort waits for its turn ({visible(plan.note)})", file=sys.stderr)
        engine.run_until(lambda: plan.status is PlanStatus.DONE, timeout=ABORT_TURN_TIMEOUT)
    if not args.wait:
        print(f"{where}: abort {'sent' if plan is not None else 'requested'}")
        return 0
    print(describe_end(wait_for_end(engine, key)))
    return 0


def _follow_to_end(engine: Engine, plan: Plan, key: JobKey, args: argparse.Namespace) -> int:
    """Run the loop until ``plan`` is done, showing progress; print its outcome, return the exit code."""
    show = None if args.json else progress_line
    outage = OutageNotice(key)
    for snapshot in engine.polls():
        if plan.status is PlanStatus.DONE:
            break
        outage.update(snapshot.hosts)
        view = next((v for v in snapshot.jobs if v.key == key), None)
        if show is not None and view is not None and not view.state.is_final:
            show(view)
    entry = engine.journal.get(plan.entry_id)
    if sys.stderr.isatty() and not args.json:
        sys.stderr.write("\n")
    view = engine.job(key)
    completed = entry is not None and entry.status == JobState.COMPLETED.value
    if args.json:
        print_json(final_record(key, view, entry))
    elif view is not None and (view.state.is_final or entry is None):
        print(describe_end(view))
    elif entry is not None:
        reason = entry.error or entry.note
        where = f"{visible(key.domain)}/{visible(key.disk)}"
        line = f"{where}: {entry.status} after {format_size(entry.bytes_done)} copied"
        print(f"{line}: {visible(reason)}" if reason else line)
    if not args.json and entry is not None and entry.checkpoints:
        points = ", ".join(f"{format_size(c.boundary)} (+{c.overshoot} B)" for c in entry.checkpoints)
        print(f"checkpoints: {points}")
    return 0 if completed else 1


def final_record(key: JobKey, view: JobView | None, entry: Entry | None) -> dict[str, Any]:
    """The JSON ``stream --wait`` prints: the job as last seen, its outcome, and the plan.

    The plan's outcome in the journal decides the exit code, so it is the record's ``state`` too
    whenever the last view of the job is not final (a plan can end on an error while the job was
    last seen running: the domain died, a host refused).
    """
    record: dict[str, Any] = job_json(view) if view is not None else {}
    if entry is None:
        return record
    if view is None:
        record.update(uri=key.host, domain=key.domain, disk=key.disk, kind=entry.kind)
        record.update(cur=entry.bytes_done, end=entry.size, remaining=max(0, entry.size - entry.bytes_done))
        record["bandwidth"] = entry.bandwidth
    if view is None or not view.state.is_final:
        record["state"] = entry.status
        if entry.error:
            record["error"] = entry.error
        if entry.note:
            record["note"] = entry.note
    record["plan"] = entry.as_json()
    return record


class OutageNotice:
    """Says once on stderr that the host stopped answering while a job is followed, and once that it is back.

    The job goes on in QEMU meanwhile; the session reconnects and the job's true outcome is reported.
    """

    def __init__(self, key: JobKey, out: TextIO | None = None) -> None:
        self.key = key
        self.out = out
        self.down = False

    def update(self, hosts: Iterable[HostInfo]) -> None:
        """Compare the host's state with the last one seen and say what changed."""
        info = next((h for h in hosts if h.uri == self.key.host), None)
        if info is None:
            return
        down = info.state is not ConnectionState.CONNECTED
        if down == self.down:
            return
        self.down = down
        where = f"{visible(self.key.domain)}/{visible(self.key.disk)}"
        if down:
            why = f" ({info.message})" if info.message and "answering" not in info.message else ""
            message = f"{info.uri} is not answering{why}; still waiting for {where}, whose job goes on"
        else:
            message = f"{info.uri} is answering again; following {where}"
        if sys.stderr.isatty() and self.out is None:
            sys.stderr.write("\n")  # off the progress line
        print(one_line(message), file=self.out or sys.stderr, flush=True)


def cmd_pause_planned(engine: Engine, args: argparse.Namespace) -> int:
    """Pause or resume through the plans: QMP holds the job; libvirt stops it at a checkpoint."""
    key = target_disk(engine, args)
    where = f"{visible(key.domain)}/{visible(key.disk)}"
    pausing = args.command == "pause"
    owner = engine.driven_elsewhere(key)
    if owner is not None:
        engine.ask_owner(owner, pause=pausing)
        print(f"{where}: {args.command} requested from the blocktui process {owner.owner} driving it")
        return 0
    engine.step()
    engine.reattach()  # an earlier blocktui's plan on it (if any) is this one's now
    if pausing:
        engine.pause(key)
        engine.run_until(lambda: _settled(engine, key, PlanStatus.PAUSED), timeout=120)
        how = "held in place" if engine.supports(key.host, "supports_pause") else "stopped at a checkpoint"
        print(f"{where}: paused ({how}; 'blocktui resume' carries it on)")
        return 0
    engine.resume(key)
    engine.run_until(lambda: _settled(engine, key, PlanStatus.ACTIVE), timeout=60)
    print(f"{where}: resumed")
    return 0


def _settled(engine: Engine, key: JobKey, status: PlanStatus) -> bool:
    """The plan on ``key`` reached ``status`` (or ended, or there is none)."""
    plan = engine.plan(key)
    return plan is None or plan.status in (status, PlanStatus.DONE)


def cmd_history(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Print the journal."""
    out = out or sys.stdout
    journal = Journal(on_warning=warn)
    try:
        entries = journal.history(args.limit)
    finally:
        journal.close()
    if args.json:
        print_json([e.as_json() for e in entries], out)
        return 0
    if not entries:
        out.write(f"no jobs in the journal ({journal.path})\n")
        return 0
    for entry in entries:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(entry.started_at))
        took = "" if entry.ended_at is None else f" in {entry.ended_at - entry.started_at:.1f}s"
        chunks = f", chunks of {format_size(entry.chunk)}" if entry.chunk else ""
        if entry.window is not None:
            chunks += f", window {entry.window.describe()}"
        out.write(
            f"{started}  {visible(entry.domain)}/{visible(entry.disk)}  {entry.kind}  {entry.status}{took}  "
            f"{format_size(entry.bytes_done)}  limit {format_bandwidth(entry.bandwidth)}{chunks}"
            f"  ({entry.origin}, {visible(entry.host)})\n"
        )
        for point in entry.checkpoints:
            out.write(
                f"    checkpoint {point.seq}: {format_size(point.boundary)}, overshoot {point.overshoot} B\n"
            )
        if entry.error or entry.note:
            out.write(f"    {visible(entry.error or entry.note)}\n")
    return 0
