"""The SQLite job journal: rows, checkpoints, outcomes, ownership, schema version."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from blocktui.core.errors import HostError
from blocktui.journal import STATE_DIR_ENV, Journal, default_path

MIB = 1024**2


def make(journal: Journal, disk: str = "vda", owner: int | None = None) -> int:
    return journal.record_job(
        host="lab",
        domain="lab-1",
        disk=disk,
        kind="pull",
        origin="planned",
        chain_before=["/b/base.qcow2"],
        status="queued",
        size=256 * MIB,
        chunk=64 * MIB,
        gap=0.5,
        owner=owner,
    )


def test_env_override_moves_the_journal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(STATE_DIR_ENV, str(tmp_path / "state"))
    assert default_path() == tmp_path / "state" / "journal.sqlite3"


def test_plan_checkpoints_and_outcome_round_trip(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite3")
    job_id = make(journal)
    for boundary, offset in ((64, 64), (128, 129), (192, 192)):
        journal.add_checkpoint(job_id, boundary=boundary * MIB, offset=offset * MIB)
    journal.finish(job_id, "completed", bytes_done=256 * MIB)
    journal.close()

    entry = Journal(tmp_path / "j.sqlite3").get(job_id)
    assert entry is not None
    assert entry.status == "completed"
    assert entry.ended_at is not None
    assert entry.chain_before == ("/b/base.qcow2",)
    assert [c.seq for c in entry.checkpoints] == [1, 2, 3]
    assert [c.overshoot for c in entry.checkpoints] == [0, MIB, 0]
    assert entry.bytes_done == 256 * MIB
    assert entry.as_json()["checkpoints"][1]["offset"] == 129 * MIB


def test_open_entries_keep_queue_order_and_finish_closes(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite3")
    first, second = make(journal, "vda"), make(journal, "vdb")
    assert [e.id for e in journal.open_entries()] == [first, second]
    journal.finish(first, "cancelled", bytes_done=0)
    assert [e.id for e in journal.open_entries("lab")] == [second]
    assert [e.id for e in journal.history()] == [second, first]


def test_claim_refuses_a_plan_driven_by_a_live_process(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite3")
    mine = make(journal, owner=os.getpid())
    assert not journal.claim(mine, owner=os.getpid() + 10**6)
    orphan = make(journal, "vdb", owner=2**22 + 12345)  # no such pid
    assert journal.claim(orphan, owner=os.getpid())
    assert journal.get(orphan) is not None


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    Journal(path).close()
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version=99")
    with pytest.raises(HostError):
        Journal(path)


def test_update_rejects_unknown_columns(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite3")
    job_id = make(journal)
    journal.update(job_id, status="active", bandwidth=5)
    entry = journal.get(job_id)
    assert entry is not None and entry.status == "active" and entry.bandwidth == 5
    with pytest.raises(ValueError, match="cannot update"):
        journal.update(job_id, host="x")


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_journal_and_its_new_directory_are_private_to_their_user(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        journal = Journal(tmp_path / "state" / "journal.sqlite3")
        make(journal)
    finally:
        os.umask(old)
    assert _mode(tmp_path / "state") == 0o700
    files = sorted((tmp_path / "state").iterdir())
    assert files and all(_mode(f) == 0o600 for f in files), [(f.name, oct(_mode(f))) for f in files]
    journal.close()


def test_the_default_state_directory_is_tightened_but_a_chosen_one_is_left_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(STATE_DIR_ENV, raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    default_path().parent.mkdir(parents=True, mode=0o755)
    default_path().parent.chmod(0o755)
    Journal().close()
    assert _mode(default_path().parent) == 0o700

    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    monkeypatch.setenv(STATE_DIR_ENV, str(shared))
    Journal().close()
    assert _mode(shared) == 0o755
    assert _mode(shared / "journal.sqlite3") == 0o600
