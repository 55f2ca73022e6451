"""While a step is late, the screen shows the session's progress and host states over the last board."""

from __future__ import annotations

from blocktui.core.model import ConnectionState, HostInfo, JobKey, JobKind, JobState
from blocktui.core.views import JobView, Snapshot
from blocktui.ui.board import Board, live_board

LAB, SYSTEM = "qemu:///embed?root=/l", "qemu:///system"


def view(host: str, disk: str, state: JobState, cur: int, chunk: tuple[int, int] | None = None) -> JobView:
    return JobView(
        key=JobKey(host, "vm", disk),
        kind=JobKind.PULL,
        state=state,
        cur=cur,
        end=100,
        remaining=100 - cur,
        fraction=cur / 100,
        rate=None,
        eta=None,
        elapsed=0.0,
        bandwidth=0,
        error=None,
        note="",
        history=(),
        chunk=chunk,
    )


def test_running_rows_and_hosts_come_from_the_session_and_outcomes_wait_for_the_planner() -> None:
    connected = HostInfo(SYSTEM, ConnectionState.CONNECTED)
    silent = HostInfo(SYSTEM, ConnectionState.CONNECTED, silent_for=1.2)
    last = Board(
        Snapshot(
            hosts=(connected,),
            domains=(),
            jobs=(
                view(LAB, "vda", JobState.ACTIVE, 10, chunk=(1, 4)),
                view(LAB, "vdb", JobState.ACTIVE, 10),
                view(SYSTEM, "vda", JobState.ACTIVE, 30),
            ),
        )
    )
    live = Snapshot(
        hosts=(silent,),
        domains=(),
        jobs=(
            view(LAB, "vda", JobState.ACTIVE, 20),
            view(LAB, "vdb", JobState.COMPLETED, 100),  # the planner has not seen this end yet
            view(SYSTEM, "vda", JobState.ACTIVE, 30),
            view(LAB, "vdc", JobState.ACTIVE, 5),  # new: waits for the next board
        ),
    )

    shown = live_board(last, live)

    assert shown.snapshot.hosts == (silent,)
    assert [(v.key.disk, v.key.host, v.state, v.cur, v.chunk) for v in shown.snapshot.jobs] == [
        ("vda", LAB, JobState.ACTIVE, 20, (1, 4)),
        ("vdb", LAB, JobState.ACTIVE, 10, None),
        ("vda", SYSTEM, JobState.ACTIVE, 30, None),
    ]
