"""The journal when things go wrong around it: a disk replaced under a plan, a state directory unusable."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from blocktui.core.errors import BlocktuiError
from blocktui.core.model import BlockJob, JobKey
from blocktui.engine.facade import Engine
from blocktui.engine.journal import Journal
from blocktui.engine.planner import PlanStatus
from blocktui.engine.session import Session
from blocktui.lab import DiskSpec, Lab
from blocktui.lab.images import backing_file

from .branches import BranchFactory
from .conftest import MIB, DomainFactory
from .mounts import tmpfs

pytestmark = pytest.mark.integration


def _session(branches: BranchFactory) -> Session:
    session = Session([branches()], poll_interval=0.2)
    session.open()
    return session


def _job_now(session: Session, key: JobKey, timeout: float = 30.0) -> BlockJob | None:
    """The disk's job, once the host answers for the domain (a QMP host finds a new QEMU at its
    next directory scan)."""
    backend = session.backend(key.host)
    deadline = time.monotonic() + timeout
    while True:
        try:
            return backend.job_info(key.domain, key.disk)
        except BlocktuiError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_a_plan_is_not_carried_on_to_a_disk_recreated_under_the_same_name(
    lab: Lab, make_domain: DomainFactory, journal: Journal, branches: BranchFactory
) -> None:
    spec = DiskSpec("vda", 64 * MIB, 2)
    (disk,) = make_domain([spec])
    first = _session(branches)
    try:
        planner = Engine(first, journal)
        key = JobKey(first.hosts[0], disk.domain, disk.target)
        # A long gap after the first chunk: the plan is left part-way, as a quit blocktui leaves it.
        plan = planner.add_stream(key, chunk=16 * MIB, gap=600, bandwidth=32 * MIB)
        planner.run_until(lambda: plan.status is PlanStatus.GAP, timeout=60)
        planner.close()
    finally:
        first.close()

    # The same domain name, disk name and paths, made anew from the template.
    lab.destroy_domain(disk.domain)
    (again,) = lab.create_domain(disk.domain, [spec])
    assert again.top == disk.top and again.backing == disk.backing

    second = _session(branches)
    try:
        assert _job_now(second, key) is None
        planner = Engine(second, journal)
        planner.reattach()
        for _ in range(5):  # a few rounds in which a carried-on plan would start its next pull
            planner.step()
            second.wait(0.2)
        assert _job_now(second, key) is None
    finally:
        planner.close()
        second.close()

    entry = journal.get(plan.entry_id)
    assert entry is not None and entry.ended_at is not None
    assert entry.status == "unknown"
    assert "the disk was replaced since the plan was made" in entry.note
    assert journal.open_entries() == []
    assert backing_file(again.top) == str(again.backing[0])  # the new disk was left as it was made


def test_a_journal_whose_filesystem_fills_up_goes_on_in_memory_and_keeps_every_row(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "state", 1 * MIB) as state:
        warnings: list[str] = []
        journal = Journal(state.path / "journal.sqlite3", on_warning=warnings.append)
        try:
            ids = [
                journal.record_job(
                    host="h",
                    domain="d",
                    disk=f"vd{n}",
                    kind="pull",
                    origin="planned",
                    chain_before=["/b"],
                    status="active",
                )
                for n in "abc"
            ]
            state.fill()
            for step in range(300):
                journal.update(ids[0], note=f"{'x' * 2000} {step}")
                journal.add_checkpoint(ids[1], boundary=step, offset=step)
            journal.finish(ids[2], "completed", bytes_done=5)

            assert len(warnings) == 1 and "database or disk is full" in warnings[0]
            assert [e.id for e in journal.open_entries()] == ids[:2]
            second = journal.get(ids[1])
            assert second is not None and [c.seq for c in second.checkpoints] == list(range(1, 301))
            first = journal.get(ids[0])
            assert first is not None and first.note.endswith(" 299")
        finally:
            journal.close()
