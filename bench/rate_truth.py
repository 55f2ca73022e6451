"""7. Rate and ETA as the dashboard shows them, against the truth measured from each job's real duration.

Three throttled streams run at once, each in its own paused domain (two pulls of one domain
ending together crash QEMU 7.2). A Session polls them as the dashboard's poll worker does (step,
then wait the poll interval) and every snapshot's ``JobView.rate`` and ``JobView.eta`` are kept:
the very values the jobs table formats. Afterwards the truth is known: the job ran from the
moment libvirt accepted the pull to its completion event (seen by the bench's own libvirt
client), so its true rate is its bytes over that duration and the true time left at a sample
is the end minus the sample's time.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.agent import poll_loop
from bench.common import Settings, log
from bench.host import MIB, PREFIX, SYSTEM_URI, make_overlay, start_domain, virsh
from bench.observer import Observer
from bench.report import Figure
from blocktui.backends.libvirt import LibvirtBackend
from blocktui.core.model import JobKey, JobState
from blocktui.core.views import Snapshot
from blocktui.engine.session import Session
from blocktui.lab.images import run_tool, write_pattern

SECTION = "7 rate and ETA shown vs the truth (job's real duration)"
KIB = 1024
#: QEMU's stream copies this much at once, then sleeps as its limit asks.
STEP = 512 * KIB
GOAL = 0.05
#: (label, limit in bytes/s, disk size, seconds after the start from which the goal applies).
CASES = (
    ("64 KiB/s", 64 * KIB, 16 * MIB, 60.0),
    ("1 MiB/s", 1 * MIB, 224 * MIB, 60.0),
    ("100 MiB/s", 100 * MIB, 3072 * MIB, 1.0),
)
#: The ETA is compared in relative terms only while 5 % of the time left is at least the poll
#: interval: closer to the end, a value refreshed every 0.5 s and shown in whole seconds cannot
#: be within 5 %; there its error is given in seconds.
ETA_RELATIVE_FROM = 10.0
#: qemu-io writes at most just under 2 GiB per request.
WRITE_PIECE = 1024 * MIB


@dataclass
class Sample:
    """What one snapshot showed for a job."""

    at: float
    cur: int
    end: int
    rate: float | None
    eta: float | None


@dataclass
class Run:
    """One throttled stream and everything shown about it."""

    label: str
    limit: int
    size: int
    since: float
    key: JobKey
    asked: float = 0.0
    started: float = 0.0
    ended: float = 0.0
    outcome: str = ""
    samples: list[Sample] = field(default_factory=list)


def _base(settings: Settings, size: int) -> Path:
    """A fully written qcow2 base of ``size`` bytes (an unwritten cluster is skipped unthrottled)."""
    path = settings.work / f"rate-base-{size // MIB}m.qcow2"
    if not path.exists():
        partial = path.with_suffix(".partial")
        run_tool("qemu-img", "create", "-q", "-f", "qcow2", str(partial), str(size))
        for offset in range(0, size, WRITE_PIECE):
            write_pattern(partial, 0x5A, offset, min(WRITE_PIECE, size - offset))
        partial.rename(path)
    return path


def _record(runs: dict[JobKey, Run], snapshot: Snapshot) -> None:
    now = time.monotonic()
    for job in snapshot.jobs:
        run = runs.get(job.key)
        if run is not None and job.state is JobState.ACTIVE:
            run.samples.append(Sample(now, job.cur, job.end, job.rate, job.eta))


def _measure(settings: Settings, observer: Observer) -> list[Run]:
    """Start the three streams together and keep every snapshot until each has ended."""
    runs: dict[JobKey, Run] = {}
    tops: list[Path] = []
    for label, limit, size, since in CASES:
        name = f"{PREFIX}rate{limit // KIB}k"
        top = settings.work / f"{name}-vda.qcow2"
        make_overlay(top, _base(settings, size))
        start_domain(name, [top], settings.work)
        tops.append(top)
        key = JobKey(SYSTEM_URI, name, "vda")
        runs[key] = Run(label, limit, size, since, key)
    session = Session([LibvirtBackend(SYSTEM_URI)])
    session.open()
    stop = threading.Event()
    thread = threading.Thread(target=poll_loop, args=(session, stop, lambda s: _record(runs, s)), daemon=True)
    # The bases were just written: their dirty pages must not be written back during the streams.
    os.sync()
    try:
        thread.start()
        for run in runs.values():
            run.asked = time.monotonic()
            session.start_stream(SYSTEM_URI, run.key.domain, run.key.disk, bandwidth=run.limit)
            run.started = time.monotonic()
        longest = max(size / limit for _label, limit, size, _since in CASES)
        for run in runs.values():
            run.ended, run.outcome = observer.wait_ended(run.key.domain, run.key.disk, 2 * longest + 60)
            log(f"rate: {run.label} ended {run.outcome} after {run.ended - run.started:.1f} s")
    finally:
        stop.set()
        session.wake()
        thread.join(10)
        session.close()
        for run, top in zip(runs.values(), tops, strict=True):
            virsh("destroy", run.key.domain)
            top.unlink(missing_ok=True)
    return list(runs.values())


def _errors(run: Run) -> dict[str, list[float]]:
    """Relative errors of the samples the goal applies to (the ETA's last seconds in seconds).

    Beside what was shown, the same for the job's own average pace so far (bytes over time since
    the start): the best any reading of the past can do when the pace later changes.
    """
    true_rate = run.size / (run.ended - run.started)
    errors: dict[str, list[float]] = {
        "rate": [],
        "eta": [],
        "eta_late_s": [],
        "rate_past": [],
        "eta_past": [],
    }
    for sample in run.samples:
        if sample.at - run.started < run.since or sample.at >= run.ended:
            continue
        left = run.ended - sample.at
        past = sample.cur / (sample.at - run.started)
        errors["rate"].append(abs((sample.rate or 0.0) - true_rate) / true_rate)
        errors["rate_past"].append(abs(past - true_rate) / true_rate)
        eta = float("inf") if sample.eta is None else sample.eta
        if left >= ETA_RELATIVE_FROM:
            errors["eta"].append(abs(eta - left) / left)
            errors["eta_past"].append(abs((run.size - sample.cur) / past - left) / left)
        else:
            errors["eta_late_s"].append(abs(eta - left))
    return errors


def _pace(rate: float) -> str:
    return f"{rate / MIB:.2f} MiB/s" if rate >= MIB else f"{rate / KIB:.1f} KiB/s"


def _figures(runs: list[Run]) -> list[Figure]:
    figures: list[Figure] = []
    for run in runs:
        if run.outcome != "completed":
            raise RuntimeError(f"the {run.label} stream ended {run.outcome}")
        errors = _errors(run)
        duration = run.ended - run.started
        late = errors["eta_late_s"]
        steps = run.size // STEP
        # QEMU copies its first step at once and then one per STEP / limit: the average over
        # the job is steps / (steps - 1) of the pace its steps keep.
        first_step = (steps / (steps - 1) - 1) * 100
        about = {
            "rate": (
                f"truth {_pace(run.size / duration)}: {run.size // MIB} MiB in {duration:.1f} s",
                f"; the truth counts QEMU's first 512 KiB step, copied at once: {first_step:+.1f} % "
                "over the pace of the steps"
                if first_step >= 0.5
                else "",
            ),
            "eta": (
                f"truth: the completion event ({duration:.1f} s after the start) minus the sample",
                f"; in the last {ETA_RELATIVE_FROM:.0f} s off by at most {max(late):.2f} s" if late else "",
            ),
        }
        for what in ("rate", "eta"):
            values = errors[what]
            if not values:
                raise RuntimeError(f"no {what} sample of the {run.label} stream from {run.since:.0f} s on")
            worst, median = max(values), statistics.median(values)
            truth, tail = about[what]
            truth += f"; from bytes so far / time so far: worst {max(errors[what + '_past']) * 100:.1f} %"
            figures.append(
                Figure(
                    SECTION,
                    f"{what} at {run.label}, worst / median error",
                    f"{worst * 100:.1f} % / {median * 100:.1f} %",
                    truth,
                    "within 5 %",
                    worst <= GOAL,
                    f"{len(values)} snapshots from {run.since:.0f} s after the start"
                    + (f" while ≥ {ETA_RELATIVE_FROM:.0f} s were left" if what == "eta" else "")
                    + tail
                    + f"; pull accepted in {(run.started - run.asked) * 1000:.0f} ms",
                    {
                        "limit": run.limit,
                        "size": run.size,
                        "duration_s": duration,
                        "errors": values,
                        "eta_late_s": late,
                        "samples": [(s.at - run.started, s.cur, s.rate, s.eta) for s in run.samples],
                    },
                )
            )
    return figures


def run(settings: Settings, observer: Observer) -> list[Figure]:
    """Stream at 64 KiB/s, 1 MiB/s and 100 MiB/s at once; compare what was shown with the truth."""
    log("rate: three throttled streams at once, about 4 minutes")
    return _figures(_measure(settings, observer))
