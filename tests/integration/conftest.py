"""Fixtures for tests against real QEMU: one lab per kind for the whole run, domains per test.

The embedded libvirt driver allows one root per process lifetime, so the libvirt lab is opened once
per session and every test creates (and removes) its own domains in it.
"""

from __future__ import annotations

import fcntl
import itertools
import os
import queue
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from textual.pilot import Pilot

from blocktui.backends.base import Backend
from blocktui.core.model import BackendEvent, JobEvent, JobKey, JobState
from blocktui.engine.journal import Journal
from blocktui.engine.session import Session
from blocktui.lab import LAB_DIR_ENV, DiskSpec, Lab, LabDisk, open_lab
from blocktui.lab.images import backing_file, check, compare, flatten_copy
from blocktui.lab.qemu_styles import STYLES
from blocktui.lab.system import SystemDaemonError, system_daemon

from .branches import Branch, BranchFactory
from .fleet_support import Fleet, fleet_for_run
from .system_support import SystemHost

#: Lab kinds every integration test runs against (the QMP lab starts its QEMUs with -blockdev).
LAB_KINDS = ["libvirt", "qmp"]

#: Those plus the QMP lab with its QEMUs started in every other common way (``qmp-proxmox``: as
#: Proxmox VE does). Tests opt in with ``pytest.mark.parametrize("lab", ALL_LAB_KINDS, indirect=True)``.
ALL_LAB_KINDS = [*LAB_KINDS, *(f"qmp-{style}" for style in STYLES if style != "blockdev")]

MIB = 1024 * 1024


#: Held by whoever uses the machine's system libvirtd (this run, ``make bench``, the guard trials),
#: so a run never stops or freezes the daemon under another.
DAEMON_LOCK = Path("/tmp/blocktui-system-daemon.lock")


@contextmanager
def daemon_turn(wait: float = 120.0) -> Iterator[None]:
    """Hold the system daemon's lock, waiting at most ``wait`` seconds for another user to finish."""
    with DAEMON_LOCK.open("a") as handle:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"the system libvirtd is in use by another run ({DAEMON_LOCK}); try again later"
                    )
                time.sleep(1.0)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def system_host() -> Iterator[SystemHost]:
    """A system libvirtd for the run (started if none runs, stopped after only if started here).

    Its test domains are named ``btsys-*`` and always removed at the end, with their images.
    """
    if os.geteuid() != 0:
        pytest.skip("needs root: starts a system libvirtd (virtlogd -d, libvirtd -d) and TCG domains")
    if shutil.which("libvirtd") is None:
        pytest.skip("libvirtd is not installed (apt-get install libvirt-daemon libvirt-daemon-driver-qemu)")
    work = Path(tempfile.mkdtemp(prefix="btsys-", dir="/tmp"))
    try:
        with daemon_turn(), system_daemon() as daemon:
            host = SystemHost(daemon, work)
            try:
                yield host
            finally:
                host.close()
    except SystemDaemonError as exc:
        pytest.fail(f"cannot use a system libvirtd: {exc}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="session")
def fleet() -> Iterator[Fleet]:
    """The fleet lab for the run: three hosts over SSH, two domains each (see ``fleet_support``)."""
    with fleet_for_run() as made:
        yield made


def _lab_base() -> Path:
    """A short directory for the labs (UNIX socket paths under it must stay below 108 bytes)."""
    override = os.environ.get(LAB_DIR_ENV)
    if override:
        return Path(override)
    # Kept between runs: libvirt caches QEMU's capabilities there, saving seconds on the first open.
    return Path(f"/tmp/btl-{os.getuid()}")


def _free_root(kind: str, root: Path) -> Path | None:
    """``root`` if this run may use it, else None (another run holds that embedded libvirt root)."""
    if kind != "libvirt" or os.environ.get(LAB_DIR_ENV):
        return root  # an explicit directory is used as given; a clash then fails with a clear message
    from blocktui.lab.libvirt_lab import can_open

    return root if can_open(root) else None


def _open(kind: str, root: Path) -> Lab:
    if kind.startswith("qmp-"):
        return open_lab("qmp", root, style=kind.removeprefix("qmp-"))
    return open_lab(kind, root)


@pytest.fixture(scope="session", params=LAB_KINDS)
def lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    """The session's lab of one kind; domains left over from an interrupted run are removed first.

    When another test run holds the usual libvirt root, this run takes a fresh short one (slower:
    libvirt probes QEMU again there).
    """
    kind: str = request.param
    root = _free_root(kind, _lab_base() / kind)
    fresh = root is None
    if root is None:
        root = Path(tempfile.mkdtemp(prefix="btl-", dir="/tmp")) / kind
    opened = _open(kind, root)
    opened.down()
    try:
        yield opened
    finally:
        opened.down()
        opened.close()
        if fresh:
            shutil.rmtree(root.parent, ignore_errors=True)


_names = itertools.count(1)

DomainFactory = Callable[[list[DiskSpec]], list[LabDisk]]


@pytest.fixture
def make_domain(lab: Lab) -> Iterator[DomainFactory]:
    """Create lab domains for one test (named ``tN``); they and their images go when it ends."""
    created: list[str] = []

    def make(disks: list[DiskSpec]) -> list[LabDisk]:
        name = f"t{next(_names)}"
        created.append(name)
        return lab.create_domain(name, disks)

    yield make
    for name in created:
        lab.destroy_domain(name)


@pytest.fixture(scope="module")
def branches(lab: Lab) -> Iterator[BranchFactory]:
    """Backends sharing one lab connection (events fanned out to each)."""
    trunk = lab.backend()
    listeners: list[Branch] = []

    def fan_out(event: BackendEvent) -> None:
        for branch in list(listeners):
            branch.emit(event)

    trunk.set_listener(fan_out)
    yield lambda: Branch(trunk, listeners)
    trunk.close()


class EventLog:
    """Collects backend events from any thread; tests wait on it for a job's outcome."""

    def __init__(self) -> None:
        self.events: queue.Queue[BackendEvent] = queue.Queue()
        self.seen: list[BackendEvent] = []
        self._lock = threading.Lock()

    def __call__(self, event: BackendEvent) -> None:
        self.events.put(event)

    def wait_job(self, domain: str, disk: str, *, timeout: float = 60.0) -> JobEvent:
        """The first final or READY job event for ``domain``/``disk``.

        Raises:
            AssertionError: none arrived within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            for event in self.seen:
                if _matches(event, domain, disk):
                    self.seen.remove(event)
                    assert isinstance(event, JobEvent)
                    return event
        while (left := deadline - time.monotonic()) > 0:
            try:
                event = self.events.get(timeout=left)
            except queue.Empty:
                break
            if _matches(event, domain, disk):
                assert isinstance(event, JobEvent)
                return event
            with self._lock:
                self.seen.append(event)
        raise AssertionError(f"no job event for {domain}/{disk} within {timeout} s")


def _matches(event: BackendEvent, domain: str, disk: str) -> bool:
    return (
        isinstance(event, JobEvent)
        and event.domain == domain
        and event.disk == disk
        and (event.state.is_final or event.state is JobState.READY)
    )


@pytest.fixture
def events() -> EventLog:
    """An event collector to hand to ``Backend.set_listener``."""
    return EventLog()


@pytest.fixture
def backend(lab: Lab, events: EventLog) -> Iterator[Backend]:
    """A writable backend on the lab, its events going to ``events``."""
    opened = lab.backend()
    opened.set_listener(events)
    try:
        yield opened
    finally:
        opened.close()


SaveContent = Callable[[LabDisk], Path]


@pytest.fixture
def save_content(tmp_path: Path) -> SaveContent:
    """Save what a disk reads now (through its chain) as a raw file, to compare with later."""

    def save(disk: LabDisk) -> Path:
        dest = tmp_path / f"{disk.domain}-{disk.target}.raw"
        flatten_copy(disk.top, dest)
        return dest

    return save


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    """A private journal for one test."""
    opened = Journal(tmp_path / "journal.sqlite3")
    yield opened
    opened.close()


@pytest.fixture
def session(branches: BranchFactory) -> Iterator[Session]:
    """A session on the lab, polled often (plans react to progress)."""
    opened = Session([branches()], poll_interval=0.2)
    opened.open()
    yield opened
    opened.close()


def key_of(session: Session, disk: LabDisk) -> JobKey:
    return JobKey(session.hosts[0], disk.domain, disk.target)


def assert_streamed(lab: Lab, disk: LabDisk, saved: Path) -> None:
    """The disk reads what it read before, stands alone, and the image is sound."""
    lab.flush(disk.domain)
    assert backing_file(disk.top) is None
    assert compare(disk.top, saved)
    assert check(disk.top)


async def until(pilot: Pilot[int], condition: Callable[[], bool], timeout: float = 60.0) -> None:
    """Let the dashboard run until ``condition()`` holds (a deadline sized for a loaded machine)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("the dashboard did not get there in time")
        await pilot.pause(0.05)
