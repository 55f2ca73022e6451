"""The command line's hosts: which ones the options name, and the engine over them."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from blocktui.cli.output import warn
from blocktui.core.errors import NotFound
from blocktui.core.model import JobKey
from blocktui.core.scheduler import HostPolicy
from blocktui.core.views import JobView, Snapshot
from blocktui.engine import Engine, HostSpec, Journal, open_engine

#: Seconds one host call may take before the command gives up ("host not answering", exit 5).
#: Sized so a command that makes a few calls still ends within 15 s on a loaded machine.
CALL_TIMEOUT = 8.0


@contextmanager
def engine_for(args: argparse.Namespace, *, connect: bool = True, bounded: bool = True) -> Iterator[Engine]:
    """The engine over the hosts the options name, with the plan options; closed (plans handed on) on exit.

    Args:
        connect: open the connections now; the dashboard opens them itself, in a worker (and
            closes the engine itself).
        bounded: give each libvirt call ``CALL_TIMEOUT`` seconds. The dashboard does without: its
            host calls never run on the UI thread, and a helper thread per call would cost it
            about 0.2 ms of CPU per poll of each job.
    """
    with ExitStack() as stack:
        spec = HostSpec(
            uris=tuple(args.connect),
            qmp_sockets=tuple(Path(socket) for socket in args.qmp),
            qmp_dirs=tuple(Path(directory) for directory in args.qmp_dir),
            lab=args.lab,
            readonly=args.readonly,
            qmp_hold=args.qmp_hold,
            call_timeout=CALL_TIMEOUT if bounded else None,
        )
        engine = open_engine(
            spec,
            stack,
            policy=HostPolicy(max_active=args.max_active, budget=args.budget),
            guard=False if args.no_guard else None,
            # The dashboard shows the journal's warnings itself; a command prints them on stderr.
            journal=Journal if not connect else lambda: Journal(on_warning=warn),
        )
        if not connect:
            yield engine
            return
        stack.callback(engine.close)
        engine.connect()
        yield engine


def wait_for_end(
    engine: Engine, key: JobKey, on_progress: Callable[[JobView], None] | None = None
) -> JobView:
    """Run the loop until the job on ``key`` ends (or stops at a checkpoint); return its final view."""

    def seen(_snapshot: Snapshot) -> JobView:
        view = engine.job(key)
        if view is None:
            raise NotFound(f"the job on {key.domain}/{key.disk} is no longer tracked")
        if on_progress is not None and not view.state.is_final:
            on_progress(view)
        return view

    return next(view for view in map(seen, engine.polls()) if view.state.is_final)
