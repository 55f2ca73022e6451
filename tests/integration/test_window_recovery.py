"""Windows that go wrong on QEMU's side or ours: nothing stays behind, and the next window works.

A QEMU restarted on the same socket (blocktui forgets the NBD server it had there), and a start
that fails on this machine after the filter went in.
"""

from __future__ import annotations

import queue
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from blocktui.backends.qmp import QmpBackend
from blocktui.core.errors import HostError
from blocktui.core.model import BackendEvent, DomainState, JobEvent, JobKind, JobState
from blocktui.core.windows import Window
from blocktui.lab import DiskSpec
from blocktui.lab.qmp_lab import QmpLab

from .cli_support import private_root
from .window_support import ours_in_qemu

pytestmark = pytest.mark.integration

MIB = 1024 * 1024

#: Generous for a loaded 2-core machine.
DEADLINE = 120.0


@pytest.fixture(scope="module")
def rlab() -> Iterator[QmpLab]:
    """A QMP lab of this module's own (its QEMUs are killed and started again)."""
    for root in private_root("btr-"):
        lab = QmpLab(root / "lab")
        try:
            yield lab
        finally:
            lab.down()


def _wait(backend: QmpBackend, events: queue.Queue[BackendEvent], domain: str) -> JobEvent:
    """The window's final event (polling the backend meanwhile, as a session would)."""
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        try:
            event = events.get(timeout=0.2)
        except queue.Empty:
            backend.list_jobs()
            continue
        ours = isinstance(event, JobEvent) and event.kind is JobKind.WINDOW and event.domain == domain
        if ours and isinstance(event, JobEvent) and event.state.is_final:
            return event
    raise AssertionError(f"{domain}: the window did not end within {DEADLINE:.0f} s")


def _running(backend: QmpBackend, domain: str) -> bool:
    try:
        return backend.get_domain(domain).state is DomainState.RUNNING
    except HostError:  # caught while QEMU starts up (its socket resets a connection)
        return False


@pytest.mark.parametrize("hold", [True, False], ids=["held", "short-sessions"])
@pytest.mark.timeout(300)
def test_a_window_after_qemu_restarts_on_the_same_socket(rlab: QmpLab, hold: bool) -> None:
    name = f"r{int(hold)}"
    rlab.create_domain(name, [DiskSpec("vda", 32 * MIB, 2)])
    events: queue.Queue[BackendEvent] = queue.Queue()
    backend = QmpBackend(directory=rlab.socket_dir, timeout=5.0, hold=hold, rescan_interval=0.5)
    backend.set_listener(events.put)
    backend.connect()
    try:
        backend.start_window(name, "vda", Window(0, 16 * MIB), bandwidth=256 * 1024)
        pid = rlab.pid(name)
        assert pid is not None
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
        rlab.kill(name)
        lost = _wait(backend, events, name)
        assert lost.state in (JobState.UNKNOWN, JobState.FAILED), lost

        subprocess.run(argv, check=True, timeout=60)  # the same QEMU again (it daemonizes)
        deadline = time.monotonic() + DEADLINE
        while not _running(backend, name):
            assert time.monotonic() < deadline, "the restarted QEMU was not seen again"
            time.sleep(0.2)

        backend.start_window(name, "vda", Window(16 * MIB, MIB))
        done = _wait(backend, events, name)

        assert done.state is JobState.COMPLETED, done
        assert ours_in_qemu(rlab.spare_socket(name)) == ([], [], False)
    finally:
        backend.close()
        rlab.destroy_domain(name)


@pytest.mark.timeout(300)
def test_a_start_failing_after_the_filter_went_in_leaves_nothing(
    rlab: QmpLab, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = "f1"
    rlab.create_domain(name, [DiskSpec("vda", 32 * MIB, 2)])
    events: queue.Queue[BackendEvent] = queue.Queue()
    backend = QmpBackend(directory=rlab.socket_dir, timeout=5.0, hold=True)
    backend.set_listener(events.put)
    backend.connect()
    try:

        def no_room(prefix: str) -> str:
            raise OSError(28, "No space left on device", prefix)

        # The server's directory is made after blockdev-add: this machine's failure, not QEMU's.
        with monkeypatch.context() as patch:
            patch.setattr("tempfile.mkdtemp", no_room)
            with pytest.raises(HostError) as refused:
                backend.start_window(name, "vda", Window(0, MIB))
        assert "No space left on device" in str(refused.value) and "\n" not in str(refused.value)
        assert ours_in_qemu(rlab.spare_socket(name)) == ([], [], False)
        assert backend.list_jobs() == []  # no phantom window holding the disk

        backend.start_window(name, "vda", Window(0, MIB))
        assert _wait(backend, events, name).state is JobState.COMPLETED
        assert ours_in_qemu(rlab.spare_socket(name)) == ([], [], False)
    finally:
        backend.close()
        rlab.destroy_domain(name)
