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

from blocktui.__main__ import main
from blocktui.core.views import Snapshot
from blocktui.engine.session import Session


def count_steps(path: str) -> None:
    """Make every ``Session.step`` of this process add one to the counter in ``path``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.pwrite(fd, (0).to_bytes(8, "little"), 0)
    original = Session.step
    done = [0]

    def step(session: Session) -> Snapshot:
        snapshot = original(session)
        done[0] += 1
        os.pwrite(fd, done[0].to_bytes(8, "little"), 0)
        return snapshot

    Session.step = step  # type: ignore[method-assign,assignment]


def read_steps(path: str) -> int:
    """The counter ``count_steps`` keeps in ``path`` (0 before the first step)."""
    with open(path, "rb") as counter:
        return int.from_bytes(counter.read(8) or b"\0", "little")


if __name__ == "__main__":
    count_steps(sys.argv[1])
    sys.argv = ["blocktui", *sys.argv[2:]]
    main()
