"""The pre-flight on real images: what a stream will copy, and a copy too large for its filesystem refused."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from blocktui.cli.plans import cmd_preflight, refuse_if_no_room
from blocktui.core.errors import NoSpace
from blocktui.core.model import JobKey
from blocktui.engine.facade import Engine
from blocktui.engine.journal import Journal
from blocktui.engine.session import Session
from blocktui.lab import DiskSpec, Lab
from blocktui.lab.images import backing_file, compare, run_tool

from .conftest import MIB, DomainFactory, SaveContent, key_of
from .mounts import SmallFs, tmpfs

pytestmark = pytest.mark.integration


def _in_overlay(top: Path) -> int:
    """Bytes of data the overlay itself holds (depth 0 of its allocation map)."""
    extents = json.loads(run_tool("qemu-img", "map", "-U", "--output=json", str(top)))
    return sum(e["length"] for e in extents if e["depth"] == 0 and (e["data"] or e["zero"]))


def listed(session: Session, domain: str) -> None:
    """Poll until the session lists ``domain`` (a QMP directory finds a new QEMU within 2 s)."""
    deadline = time.monotonic() + 15
    while True:
        session.step()  # takes in the host's events: a QMP directory may come back from "no QEMU"
        session.refresh_domains()
        if any(d.name == domain for d in session.domains()):
            return
        assert time.monotonic() < deadline, f"{domain} not listed: {session.host_states()}"
        time.sleep(0.2)


def _args(**given: object) -> argparse.Namespace:
    fields = {"bandwidth": 0, "base": None, "force": False, "json": True, "domain": "", "disk": ""}
    return argparse.Namespace(**{**fields, **given})


def test_the_estimate_is_what_the_stream_then_copies(
    lab: Lab, make_domain: DomainFactory, session: Session, journal: Journal
) -> None:
    (disk,) = make_domain([DiskSpec("vda", 48 * MIB, 3)])
    session.refresh_domains()
    engine = Engine(session, journal)
    key = key_of(session, disk)
    before = _in_overlay(disk.top)

    check = engine.preflight(key, bandwidth=16 * MIB)
    to_base = engine.preflight(key, base=str(disk.backing[-1]))

    assert check.bytes_to_copy is not None and check.fits is True
    assert check.seconds_at_limit == pytest.approx(check.bytes_to_copy / (16 * MIB))
    # Stopping above the lowest image leaves its data where it is: less to copy.
    assert to_base.bytes_to_copy is not None and to_base.bytes_to_copy < check.bytes_to_copy
    plan = engine.add_stream(key, bandwidth=64 * MIB)
    engine.run_until(engine.idle, timeout=120)
    entry = journal.get(plan.entry_id)
    assert entry is not None and entry.status == "completed"
    lab.flush(disk.domain)
    copied = _in_overlay(disk.top) - before
    assert abs(check.bytes_to_copy - copied) <= 0.01 * copied
    # The stream's own total counts the whole disk, the part the overlay already held included:
    # the pre-flight says that figure too.
    assert entry.size == disk.size == check.stream_total


@pytest.fixture
def small(tmp_path: Path) -> Iterator[SmallFs]:
    """A 64 MiB filesystem; asked for before ``make_domain``, so the domains go before it does."""
    with tmpfs(tmp_path / "small", 64 * MIB) as mounted:
        yield mounted


def test_a_copy_larger_than_the_overlays_filesystem_is_refused_before_it_starts(
    small: SmallFs,
    make_domain: DomainFactory,
    session: Session,
    journal: Journal,
    save_content: SaveContent,
) -> None:
    (disk,) = make_domain([DiskSpec("vda", 96 * MIB, 2, overlay_dir=small.path)])
    saved = save_content(disk)
    listed(session, disk.domain)
    engine = Engine(session, journal)
    key = key_of(session, disk)

    with pytest.raises(NoSpace, match="--force") as refused:
        refuse_if_no_room(engine, key, _args())
    assert "\n" not in str(refused.value)
    assert cmd_preflight(engine, _args(domain=disk.domain, disk=disk.target)) == NoSpace.exit_code
    check = engine.preflight(key)
    assert check.fits is False and check.free_bytes is not None and check.free_bytes < 64 * MIB
    refuse_if_no_room(engine, key, _args(force=True))  # --force lets it through

    # Nothing started, nothing changed.
    assert session.backend(key.host).job_info(key.domain, key.disk) is None
    assert backing_file(disk.top) == str(disk.backing[0])
    assert compare(disk.top, saved)


def test_a_disk_that_is_not_there_or_stands_alone_says_so(
    make_domain: DomainFactory, session: Session, journal: Journal
) -> None:
    (alone,) = make_domain([DiskSpec("vda", 8 * MIB, 1)])
    session.refresh_domains()
    engine = Engine(session, journal)
    with pytest.raises(Exception, match="no backing file"):
        engine.preflight(key_of(session, alone))
    with pytest.raises(Exception, match="no disk"):
        engine.preflight(JobKey(session.hosts[0], alone.domain, "vdz"))
