"""Backends that share one lab connection: each session gets its own backend object and listener.

The embedded libvirt driver can be opened only a few times per process ("Too many drivers"), so
tests share one connection and fan its events out to every branch.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence

from blocktui.backends.base import Backend
from blocktui.core.model import BlockJob, Disk, Domain, HostInfo
from blocktui.core.windows import Window


class Branch(Backend):
    """One connection seen as several backends, each with its own listener.

    The embedded libvirt driver can be opened only a few times per process ("Too many drivers"),
    so the tests share one connection; every session still gets its own backend object and events.
    """

    def __init__(self, trunk: Backend, listeners: list[Branch]) -> None:
        super().__init__(trunk.uri, readonly=trunk.readonly)
        self.trunk = trunk
        self.supports_pause = trunk.supports_pause
        self.supports_events = trunk.supports_events
        self.supports_base = trunk.supports_base
        self.sees_host_files = trunk.sees_host_files
        self.supports_window = trunk.supports_window
        self._branches = listeners
        listeners.append(self)

    def connect(self) -> None:
        pass

    def close(self) -> None:
        if self in self._branches:
            self._branches.remove(self)

    def host_info(self) -> HostInfo:
        return self.trunk.host_info()

    def list_domains(self) -> list[Domain]:
        return self.trunk.list_domains()

    def get_domain(self, name: str) -> Domain:
        return self.trunk.get_domain(name)

    def start_stream(self, domain: str, disk: str, *, bandwidth: int = 0, base: str | None = None) -> None:
        self.trunk.start_stream(domain, disk, bandwidth=bandwidth, base=base)

    def start_window(
        self,
        domain: str,
        disk: str,
        window: Window,
        *,
        bandwidth: int = 0,
        local: Sequence[tuple[int, int]] = (),
    ) -> None:
        self.trunk.start_window(domain, disk, window, bandwidth=bandwidth, local=local)

    def set_speed(self, domain: str, disk: str, bandwidth: int) -> None:
        self.trunk.set_speed(domain, disk, bandwidth)

    def abort(self, domain: str, disk: str) -> None:
        self.trunk.abort(domain, disk)

    def pause(self, domain: str, disk: str) -> None:
        self.trunk.pause(domain, disk)

    def resume(self, domain: str, disk: str) -> None:
        self.trunk.resume(domain, disk)

    def job_info(self, domain: str, disk: str) -> BlockJob | None:
        return self.trunk.job_info(domain, disk)

    def list_jobs(
        self, *, known: Mapping[str, Sequence[Disk]] | None = None, skip: Collection[tuple[str, str]] = ()
    ) -> list[BlockJob]:
        return self.trunk.list_jobs(known=known, skip=skip)


BranchFactory = Callable[[], Backend]
