"""Opening hosts: the backends for libvirt URIs, QMP sockets or socket directories, and the lab.

The one place backends are built, so the front ends name hosts and never import a backend;
``open_engine`` gives them the engine over those hosts.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from blocktui.backends.base import Backend
from blocktui.core.errors import NotFound
from blocktui.core.scheduler import HostPolicy
from blocktui.engine.facade import Engine
from blocktui.engine.journal import Journal
from blocktui.engine.lookup import is_named
from blocktui.engine.session import Session


@dataclass(frozen=True)
class HostSpec:
    """The hosts to open, as the options name them.

    Attributes:
        call_timeout: seconds one libvirt call may take (None: no bound).
        policies: a host's own queue and budget, by the URI, socket or folder that names it
            (``lab`` for the lab).
    """

    uris: tuple[str, ...] = ()
    qmp_sockets: tuple[Path, ...] = ()
    qmp_dirs: tuple[Path, ...] = ()
    lab: bool = False
    fleet: bool = False
    readonly: bool = False
    qmp_hold: bool = False
    call_timeout: float | None = None
    policies: tuple[tuple[str, HostPolicy], ...] = ()


def default_uri() -> str:
    """``LIBVIRT_DEFAULT_URI``, else the system daemon for root and the session daemon for others."""
    uri = os.environ.get("LIBVIRT_DEFAULT_URI")
    if uri:
        return uri
    return "qemu:///system" if os.geteuid() == 0 else "qemu:///session"


def open_backends(spec: HostSpec, stack: ExitStack) -> list[Backend]:
    """The backends ``spec`` names (the default URI when it names none); the lab closes with ``stack``."""
    backends: list[Backend] = []
    if spec.lab:
        from blocktui.lab import open_lab  # noqa: PLC0415 - only the lab needs libvirt's lab

        lab = open_lab("libvirt")
        stack.callback(lab.close)
        backends.append(lab.backend(readonly=spec.readonly))
    if spec.qmp_sockets or spec.qmp_dirs:
        from blocktui.backends.qmp import QmpBackend  # noqa: PLC0415 - optional backend

        for socket in spec.qmp_sockets:
            backends.append(QmpBackend(sockets=[socket], readonly=spec.readonly, hold=spec.qmp_hold))
        for directory in spec.qmp_dirs:
            backends.append(QmpBackend(directory=directory, readonly=spec.readonly, hold=spec.qmp_hold))
    uris = list(spec.uris)
    if spec.fleet:
        uris.extend(fleet_uris())
    if not backends and not uris:
        uris.append(default_uri())
    if uris:
        from blocktui.backends.libvirt import LibvirtBackend  # noqa: PLC0415

        backends.extend(
            LibvirtBackend(uri, readonly=spec.readonly, call_timeout=spec.call_timeout) for uri in uris
        )
    return backends


def fleet_uris() -> list[str]:
    """The fleet lab's hosts, as libvirt URIs.

    Raises:
        NotFound: no fleet is up.
    """
    from blocktui.lab.fleet import FleetLab  # noqa: PLC0415 - only --fleet needs the fleet

    fleet = FleetLab()
    uris = fleet.uris()
    if not uris:
        raise NotFound(f"no fleet in {fleet.root}; 'blocktui lab fleet up' creates one (as root)")
    return uris


def open_engine(
    spec: HostSpec,
    stack: ExitStack,
    *,
    policy: HostPolicy | None = None,
    guard: bool | None = None,
    journal: Journal | Callable[[], Journal] | None = None,
) -> Engine:
    """An engine over the hosts ``spec`` names, not yet connected; the lab closes with ``stack``."""
    backends = open_backends(spec, stack)
    engine = Engine(Session(backends, readonly=spec.readonly), journal, policy=policy, guard=guard)
    for place, own in spec.policies:
        for backend in backends:
            if is_named(backend.uri, place):
                engine.set_policy(own, backend.uri)
    return engine
