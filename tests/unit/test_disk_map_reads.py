"""Reading a disk's map: files on this machine through qemu-img, errors in one line that say what to do."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_backend import FakeBackend

from blocktui.core.allocation import Where
from blocktui.core.errors import HostError, Unsupported
from blocktui.core.model import Disk, JobKey
from blocktui.engine.facade import Engine
from blocktui.engine.session import Session

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def local_host() -> Iterator[tuple[FakeBackend, Engine]]:
    """A host whose image paths are files here and that cannot map disks itself."""
    backend = FakeBackend("fake:///local")
    backend.sees_host_files = True
    backend.supports_allocation_map = False
    session = Session([backend])
    session.open()
    engine = Engine(session, journal=None)
    yield backend, engine
    session.close()


def test_a_local_image_is_mapped_by_qemu_img(local_host: tuple[FakeBackend, Engine], tmp_path: Path) -> None:
    backend, engine = local_host
    image = tmp_path / "alone.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "4M"], check=True)
    write = ["qemu-io", "-f", "qcow2", "-c", "write 0 1M", str(image)]
    subprocess.run(write, check=True, capture_output=True)

    found = engine.disk_map(JobKey(backend.uri, "vm", "vda"), Disk("vda", str(image)))

    assert found.totals() == {Where.LOCAL: 1024**2, Where.BACKING: 0, Where.UNALLOCATED: 3 * 1024**2}
    assert backend.calls.count("allocation_map") == 0


def test_an_unreadable_image_is_one_line_saying_what_to_check(
    local_host: tuple[FakeBackend, Engine], tmp_path: Path
) -> None:
    backend, engine = local_host
    with pytest.raises(HostError, match="check that the image is there and readable") as failed:
        engine.disk_map(JobKey(backend.uri, "vm", "vda"), Disk("vda", str(tmp_path / "gone.qcow2")))
    assert "\n" not in str(failed.value)


def test_an_image_on_another_machine_says_where_to_run_it(local_host: tuple[FakeBackend, Engine]) -> None:
    backend, engine = local_host
    backend.sees_host_files = False
    with pytest.raises(Unsupported, match="run 'blocktui map' on the host itself"):
        engine.disk_map(JobKey(backend.uri, "vm", "vda"), Disk("vda", "rbd://mon/pool/image"))


def test_the_top_image_seen_before_a_qmp_job_is_used_while_the_job_hides_it(
    local_host: tuple[FakeBackend, Engine], tmp_path: Path
) -> None:
    backend, engine = local_host
    image = tmp_path / "top.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "1M"], check=True)
    key = JobKey(backend.uri, "vm", "vda")
    engine.disk_map(key, Disk("vda", str(image), node="vda"))

    during = engine.disk_map(key, Disk("vda", None, node="vda"))  # the graph names nodes only

    assert during.size == 1024**2
