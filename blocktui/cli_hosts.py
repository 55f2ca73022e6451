"""The command line's hosts: which ones the options name, opening them, finding a domain or disk."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from blocktui.core.errors import Conflict, HostError, NotFound
from blocktui.core.model import ConnectionState, Domain, JobKey
from blocktui.core.text import visible
from blocktui.core.views import JobView
from blocktui.engine.hosts import HostSpec, open_backends
from blocktui.engine.session import Session

#: Seconds one host call may take before the command gives up ("host not answering", exit 5).
#: Sized so a command that makes a few calls still ends within 15 s on a loaded machine.
CALL_TIMEOUT = 8.0


@contextmanager
def open_session(
    args: argparse.Namespace, *, connect: bool = True, bounded: bool = True
) -> Iterator[Session]:
    """Build a session for the hosts the options name; close them (and any lab) on exit.

    Args:
        connect: open the connections now; the dashboard opens them itself, in a worker.
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
        backends = open_backends(spec, stack)
        session = Session(backends, readonly=args.readonly)
        if not connect:
            yield session
            return
        stack.callback(session.close)
        session.open()
        for info in session.snapshot().hosts:
            if info.state is not ConnectionState.CONNECTED and len(backends) == 1:
                raise HostError(info.message or f"cannot connect to {info.uri}")
        yield session


def find_domain(session: Session, name: str) -> Domain:
    """The one domain called ``name`` on any host.

    Raises:
        NotFound: no host has it.
        Conflict: several hosts have it.
    """
    matches = [d for d in session.domains() if d.name == name]
    if not matches:
        hosts = ", ".join(session.hosts)
        raise NotFound(f"no domain {visible(name)!r} on {hosts}; 'blocktui ls' lists them")
    if len(matches) > 1:
        raise Conflict(
            f"domain {visible(name)!r} exists on several hosts "
            f"({', '.join(d.host for d in matches)}); name one host with -c"
        )
    if matches[0].error:
        raise HostError(f"domain {visible(name)!r} on {matches[0].host}: {matches[0].error}")
    return matches[0]


def find_disk_key(session: Session, domain: str, disk: str) -> JobKey:
    """The job key for ``domain``/``disk``, checking both exist."""
    found = find_domain(session, domain)
    if found.disk(disk) is None:
        targets = ", ".join(visible(d.target) for d in found.disks) or "none listed"
        raise NotFound(f"domain {visible(domain)!r} has no disk {visible(disk)!r} (disks: {targets})")
    return JobKey(found.host, found.name, disk)


def wait_for_end(
    session: Session, key: JobKey, on_progress: Callable[[JobView], None] | None = None
) -> JobView:
    """Poll until the job on ``key`` ends (or stops at a checkpoint); return its final view."""
    while True:
        session.step()
        view = session.job(key)
        if view is None:
            raise NotFound(f"the job on {key.domain}/{key.disk} is no longer tracked")
        if view.state.is_final:
            return view
        if on_progress is not None:
            on_progress(view)
        session.wait(session.poll_interval)
