"""The command line's hosts: which ones the options name, and the engine over them."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from blocktui.cli.output import warn
from blocktui.core.config import Config
from blocktui.core.errors import InvalidInput, NotFound
from blocktui.core.model import JobKey
from blocktui.core.scheduler import HostPolicy
from blocktui.core.views import JobView, Snapshot
from blocktui.engine import Engine, HostSpec, Journal, open_engine

#: Seconds one host call may take before the command gives up ("host not answering", exit 5).
#: Sized so a command that makes a few calls still ends within 15 s on a loaded machine.
CALL_TIMEOUT = 8.0


def host_spec(args: argparse.Namespace, config: Config, *, call_timeout: float | None) -> HostSpec:
    """The hosts the options name, with the named hosts of the configuration file (``--host``).

    Without any host option, the file's default hosts (else the default URI). A named host's own
    queue and budget apply unless ``--max-active`` or ``--budget`` is given.

    Raises:
        InvalidInput: ``--host`` names no host of the file.
    """
    uris, sockets, folders, lab = list(args.connect), list(args.qmp), list(args.qmp_dir), bool(args.lab)
    names = list(args.host)
    if not (names or uris or sockets or folders or lab or args.fleet):
        names = list(config.default_hosts)
    policies: list[tuple[str, HostPolicy]] = []
    flags = args.max_active is not None or args.budget
    for name in names:
        host = config.hosts.get(name)
        if host is None:
            known = ", ".join(config.hosts) or "none"
            raise InvalidInput(f"--host {name}: the configuration file names no such host (hosts: {known})")
        place = host.uri or host.qmp or host.qmp_dir or "lab"
        if host.uri:
            uris.append(host.uri)
        elif host.qmp:
            sockets.append(host.qmp)
        elif host.qmp_dir:
            folders.append(host.qmp_dir)
        else:
            lab = True
        if host.policy is not None and not flags:
            policies.append((place, host.policy))
    return HostSpec(
        uris=tuple(uris),
        qmp_sockets=tuple(Path(socket) for socket in sockets),
        qmp_dirs=tuple(Path(directory) for directory in folders),
        lab=lab,
        fleet=args.fleet,
        readonly=args.readonly,
        qmp_hold=args.qmp_hold,
        call_timeout=call_timeout,
        policies=tuple(policies),
    )


def add_on_option(command: argparse.ArgumentParser) -> None:
    """``--on HOST``: which open host has the domain, when several have one of that name."""
    command.add_argument(
        "--on",
        metavar="HOST",
        help="the host with DOMAIN, when several are open: its URI, its name in the URI "
        "(fleet-2 for qemu+ssh://user@fleet-2/session), or a host the configuration file names",
    )


def target_disk(engine: Engine, args: argparse.Namespace) -> JobKey:
    """The disk a command addresses: ``DOMAIN DISK``, on the host ``--on`` names if given.

    Raises:
        NotFound: no such domain, disk or host. Conflict: the domain is on several hosts.
    """
    on: str | None = getattr(args, "on", None)
    config: Config | None = getattr(args, "settings", None)
    named = config.hosts.get(on) if config is not None and on is not None else None
    if named is not None:
        on = named.uri or named.qmp or named.qmp_dir or "lab"
    return engine.find_disk(args.domain, args.disk, host=on)


@contextmanager
def engine_for(
    args: argparse.Namespace, config: Config, *, connect: bool = True, bounded: bool = True
) -> Iterator[Engine]:
    """The engine over the hosts the options name, with the plan options; closed (plans handed on) on exit.

    Args:
        connect: open the connections now; the dashboard opens them itself, in a worker (and
            closes the engine itself).
        bounded: give each libvirt call ``CALL_TIMEOUT`` seconds. The dashboard does without: its
            host calls never run on the UI thread, and a helper thread per call would cost it
            about 0.2 ms of CPU per poll of each job.
    """
    with ExitStack() as stack:
        spec = host_spec(args, config, call_timeout=CALL_TIMEOUT if bounded else None)
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
