"""The SQLite job journal: rows, checkpoints, outcomes, ownership, schema version."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from blocktui.core.errors import HostError
from blocktui.core.identity import DiskIdentity, ImageFile
from blocktui.core.windows import Window
from blocktui.engine.journal import STATE_DIR_ENV, Journal, default_path

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


V1_SCHEMA = """
CREATE TABLE jobs (id INTEGER PRIMARY KEY, host TEXT NOT NULL, domain TEXT NOT NULL, disk TEXT NOT NULL,
    kind TEXT NOT NULL, origin TEXT NOT NULL, chain_before TEXT NOT NULL, base TEXT,
    bandwidth INTEGER NOT NULL DEFAULT 0, size INTEGER NOT NULL DEFAULT 0, chunk INTEGER NOT NULL DEFAULT 0,
    gap REAL NOT NULL DEFAULT 0, position REAL NOT NULL, status TEXT NOT NULL,
    pause_requested INTEGER NOT NULL DEFAULT 0, owner INTEGER, started_at REAL NOT NULL, ended_at REAL,
    bytes_done INTEGER NOT NULL DEFAULT 0, error TEXT, note TEXT NOT NULL DEFAULT '');
CREATE TABLE checkpoints (job_id INTEGER NOT NULL, seq INTEGER NOT NULL, boundary INTEGER NOT NULL,
    offset INTEGER NOT NULL, overshoot INTEGER NOT NULL, at REAL NOT NULL, PRIMARY KEY (job_id, seq));
INSERT INTO jobs (host, domain, disk, kind, origin, chain_before, position, status, started_at)
    VALUES ('lab', 'old-1', 'vda', 'pull', 'planned', '["/b/base.qcow2"]', 1.0, 'gap', 1.0);
PRAGMA user_version=1;
"""


def test_a_journal_from_the_previous_release_keeps_its_plans_and_gains_identities(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript(V1_SCHEMA)
    journal = Journal(path)
    (old,) = journal.open_entries()
    assert (old.domain, old.status, old.identity) == ("old-1", "gap", None)
    identity = DiskIdentity("/i/top.qcow2", "uuid-1", ImageFile(1, 2, 3))
    new = journal.record_job(
        host="lab", domain="new-1", disk="vda", kind="pull", origin="planned",
        chain_before=[], status="queued", identity=identity,
    )  # fmt: skip
    entry = journal.get(new)
    assert entry is not None and entry.identity == identity
    assert entry.as_json()["identity"]["image"] == {"device": 1, "inode": 2, "born_ns": 3}
    assert journal.warning is None


def test_an_unusable_state_directory_keeps_the_journal_in_memory_with_one_warning(tmp_path: Path) -> None:
    blocker = tmp_path / "state"
    blocker.write_text("a file where the state directory should be")
    warnings: list[str] = []
    journal = Journal(blocker / "journal.sqlite3", on_warning=warnings.append)
    job_id = make(journal)
    journal.add_checkpoint(job_id, boundary=64 * MIB, offset=64 * MIB)
    journal.finish(job_id, "completed", bytes_done=256 * MIB)

    entry = journal.get(job_id)
    assert entry is not None and entry.status == "completed" and len(entry.checkpoints) == 1
    assert len(warnings) == 1 and warnings == [journal.warning]
    assert "\n" not in warnings[0] and str(blocker) in warnings[0] and STATE_DIR_ENV in warnings[0]


WRITER = """
import json, sys, time
from pathlib import Path
from blocktui.engine.journal import Journal

path, name, count, go = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
while time.time() < go:
    time.sleep(0.001)
journal = Journal(path)
shared = int(sys.argv[5])
ids = []
started = time.time()
for index in range(count):
    job_id = journal.record_job(host="h", domain=name, disk=f"d{index}", kind="pull", origin="planned",
                                chain_before=["/b"], status="queued", owner=1)
    journal.update(job_id, status="active", bandwidth=index)
    journal.add_checkpoint(job_id, boundary=index, offset=index + 1)
    journal.add_checkpoint(shared, boundary=index, offset=index)
    journal.update(shared, note=f"{name} {index}")
    journal.finish(job_id, "completed", bytes_done=index * 10)
    ids.append(job_id)
print(json.dumps({"ids": ids, "warning": journal.warning, "span": [started, time.time()]}))
"""


def test_two_processes_writing_at_once_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "state" / "j.sqlite3"
    shared = make(Journal(path))
    count = 300
    go = time.time() + 1.5  # both start writing at the same moment, after their imports
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), name, str(count), str(go), str(shared)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("one", "two")
    ]
    results = []
    for writer in writers:
        out, err = writer.communicate(timeout=150)
        assert writer.returncode == 0, err
        results.append(json.loads(out))

    assert all(result["warning"] is None for result in results)
    # They really wrote at the same time: each started before the other was done.
    assert max(r["span"][0] for r in results) < min(r["span"][1] for r in results)
    journal = Journal(path)
    entries = {e.id: e for e in journal.history(limit=10 * count)}
    for name, result in zip(("one", "two"), results, strict=True):
        assert len(result["ids"]) == count
        for index, job_id in enumerate(result["ids"]):
            entry = entries[job_id]
            assert (entry.domain, entry.disk, entry.status) == (name, f"d{index}", "completed")
            assert (entry.bandwidth, entry.bytes_done) == (index, index * 10)
            assert [(c.seq, c.boundary, c.offset) for c in entry.checkpoints] == [(1, index, index + 1)]
    both = entries[shared].checkpoints
    assert sorted(c.seq for c in both) == list(range(1, 2 * count + 1))
    assert sorted(c.boundary for c in both) == sorted(2 * list(range(count)))
    assert len(entries) == 2 * count + 1


def test_the_journal_keeps_a_window_and_an_old_file_gains_the_columns(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript(V1_SCHEMA)
    journal = Journal(path)
    (old,) = journal.open_entries()
    assert old.window is None and old.as_json()["window"] is None
    new = journal.record_job(
        host="lab", domain="w", disk="vda", kind="window", origin="planned",
        chain_before=[], status="queued", window=Window(16 * MIB, 8 * MIB),
    )  # fmt: skip
    entry = journal.get(new)
    assert entry is not None and entry.window == Window(16 * MIB, 8 * MIB)
    assert entry.as_json()["window"] == {"offset": 16 * MIB, "length": 8 * MIB}
    journal.close()
