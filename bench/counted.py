"""``python -m bench.counted FILE ARGS...``: blocktui's own command line, counting its polls in FILE.

The dashboard's refresh is one ``Session.step()`` followed by a wait of ``poll_interval``, so it
refreshes less often than every 0.5 s when a poll takes time. Nothing outside the process can see
a poll that changed nothing on the screen, so this wraps ``Session.step`` (class-wide, before the
command line runs) to write how many steps have returned to FILE as 8 bytes: one ``pwrite`` per
poll. Everything else is ``blocktui``'s ``main`` unchanged, in this process.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any

from blocktui.__main__ import main
from blocktui.core.model import BlockJob, JobKey
from blocktui.core.tracker import JobTracker
from blocktui.core.views import Snapshot
from blocktui.engine.session import Session


def count_steps(path: str) -> None:
    """Make every ``Session.step`` of this process add one to the counter in ``path``, and every
    job status a poll reads from a host add one to the second counter (a step need not read every
    job: a slow one is read when its progress can have moved, ``core.cadence``)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.pwrite(fd, bytes(16), 0)
    step_of, observe_of = Session.step, JobTracker.observe_jobs
    done = [0, 0]

    def step(session: Session) -> Snapshot:
        snapshot = step_of(session)
        done[0] += 1
        os.pwrite(fd, done[0].to_bytes(8, "little"), 0)
        return snapshot

    def observe(tracker: JobTracker, host: str, jobs: Iterable[BlockJob], **options: Any) -> set[JobKey]:
        read = list(jobs)
        done[1] += len(read)
        os.pwrite(fd, done[1].to_bytes(8, "little"), 8)
        return observe_of(tracker, host, read, **options)

    Session.step = step  # type: ignore[method-assign,assignment]
    JobTracker.observe_jobs = observe  # type: ignore[method-assign,assignment]


def read_steps(path: str) -> tuple[int, int]:
    """The counters ``count_steps`` keeps in ``path``: (steps, job statuses read)."""
    with open(path, "rb") as counter:
        data = counter.read(16).ljust(16, b"\0")
    return int.from_bytes(data[:8], "little"), int.from_bytes(data[8:], "little")


if __name__ == "__main__":
    count_steps(sys.argv[1])
    sys.argv = ["blocktui", *sys.argv[2:]]
    main()
