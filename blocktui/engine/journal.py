"""The job journal: every job blocktui started or saw, its plan, checkpoints and outcome (SQLite).

The journal records; it never holds user data. Plans (queue, chunks, pause) live here so a
restarted blocktui carries them on. Several blocktui processes may share it (WAL, busy timeout,
every write one short ``BEGIN IMMEDIATE`` transaction); each open plan names the process that
drives it, and only plans whose process is gone are taken over.

A journal that cannot be written (read-only or full state directory, a lock held too long) never
stops a stream: the journal goes on in memory for this process and says so once, in one line
(``warning``, ``on_warning``).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from blocktui.core.identity import DiskIdentity
from blocktui.core.processes import pid_alive
from blocktui.core.windows import Window
from blocktui.engine.journal_file import (
    STATE_DIR_ENV,
    default_path,
    open_file,
    open_memory,
    state_dir,
    unwritable,
)
from blocktui.engine.journal_rows import COLUMNS, Checkpoint, Entry, entry_from_row, identity_text

__all__ = ["STATE_DIR_ENV", "Checkpoint", "Entry", "Journal", "default_path", "pid_alive", "state_dir"]

log = logging.getLogger(__name__)

T = TypeVar("T")

Work = Callable[[sqlite3.Connection], T]


_UPDATABLE = frozenset(
    {"status", "bandwidth", "size", "chunk", "gap", "pause_requested", "owner", "bytes_done", "error", "note"}
)


def _reason(exc: BaseException) -> str:
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return " ".join(text.split()) or type(exc).__name__


class Journal:
    """A connection to the journal file; safe to share between threads of one process.

    Attributes:
        warning: the one-line warning given when the file could not be used and the journal moved
            to memory; None while the file is in use.
        on_warning: called once with ``warning`` when that happens (from the thread that noticed).
    """

    def __init__(
        self,
        path: Path | None = None,
        *,
        clock: Any = time.time,
        on_warning: Callable[[str], None] | None = None,
    ) -> None:
        self.path = path if path is not None else default_path()
        self._clock = clock
        self._lock = threading.Lock()
        self.warning: str | None = None
        self.on_warning = on_warning
        try:
            self._db = open_file(self.path)
        except (OSError, sqlite3.Error) as exc:
            self._db = open_memory()
            self._moved_to_memory(exc)

    def _moved_to_memory(self, exc: BaseException) -> None:
        self.warning = (
            f"cannot write the job journal {self.path} ({_reason(exc)}); streams go on, but this "
            f"run's journal is kept in memory only and no later blocktui can carry its plans on "
            f"(free or fix {self.path.parent}, or set {STATE_DIR_ENV} to a writable directory)"
        )
        log.info("%s", self.warning)
        if self.on_warning is not None:
            self.on_warning(self.warning)

    def _guarded(self, work: Work[T], *, write: bool) -> T:
        """Run ``work`` (in one write transaction when ``write``); a file that fails moves to memory."""
        with self._lock:
            try:
                return self._run(work, write)
            except sqlite3.Error as exc:
                if self.warning is not None or not unwritable(exc):
                    raise
                # Copied, so rows already written keep their ids and open plans their state.
                old, self._db = self._db, open_memory(copy_of=self._db)
                old.close()
                self._moved_to_memory(exc)
                return self._run(work, write)

    def _run(self, work: Work[T], write: bool) -> T:
        if not write:
            return work(self._db)
        self._db.execute("BEGIN IMMEDIATE")
        try:
            result = work(self._db)
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
        return result

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._db.close()

    # -- writing ---------------------------------------------------------------------------

    def record_job(
        self,
        *,
        host: str,
        domain: str,
        disk: str,
        kind: str,
        origin: str,
        chain_before: Sequence[str],
        status: str,
        base: str | None = None,
        bandwidth: int = 0,
        size: int = 0,
        chunk: int = 0,
        gap: float = 0.0,
        owner: int | None = None,
        identity: DiskIdentity | None = None,
        window: Window | None = None,
    ) -> int:
        """Add a job (or plan); return its id. Queue position follows insertion order.

        Args:
            identity: what identifies the disk now, compared when the plan is re-attached.
            window: the part of the disk a window plan copies (None: the whole chain).
        """
        now = self._clock()
        values = (
            host,
            domain,
            disk,
            kind,
            origin,
            json.dumps(list(chain_before)),
            base,
            bandwidth,
            size,
            chunk,
            gap,
            now,
            status,
            owner,
            now,
            identity_text(identity),
            None if window is None else window.offset,
            None if window is None else window.length,
        )

        def insert(db: sqlite3.Connection) -> int:
            cursor = db.execute(
                "INSERT INTO jobs (host, domain, disk, kind, origin, chain_before, base, bandwidth,"
                " size, chunk, gap, position, status, owner, started_at, identity, window_offset,"
                " window_length)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                values,
            )
            return int(cursor.lastrowid or 0)

        return self._guarded(insert, write=True)

    def update(self, job_id: int, **fields: Any) -> None:
        """Change some columns of an open or closed row."""
        unknown = set(fields) - _UPDATABLE
        if unknown:
            raise ValueError(f"journal: cannot update {sorted(unknown)}")
        if not fields:
            return
        assignments = ", ".join(f"{name} = ?" for name in fields)
        self._guarded(
            lambda db: db.execute(f"UPDATE jobs SET {assignments} WHERE id = ?", (*fields.values(), job_id)),
            write=True,
        )

    def add_checkpoint(self, job_id: int, *, boundary: int, offset: int) -> Checkpoint:
        """Record that a chunked stream stopped at ``boundary`` with progress ``offset``."""
        now = self._clock()

        def add(db: sqlite3.Connection) -> Checkpoint:
            (count,) = db.execute("SELECT COUNT(*) FROM checkpoints WHERE job_id = ?", (job_id,)).fetchone()
            checkpoint = Checkpoint(count + 1, boundary, offset, max(0, offset - boundary), now)
            db.execute(
                "INSERT INTO checkpoints (job_id, seq, boundary, offset, overshoot, at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (job_id, checkpoint.seq, boundary, offset, checkpoint.overshoot, now),
            )
            db.execute("UPDATE jobs SET bytes_done = MAX(bytes_done, ?) WHERE id = ?", (offset, job_id))
            return checkpoint

        return self._guarded(add, write=True)

    def finish(
        self, job_id: int, status: str, *, bytes_done: int, error: str | None = None, note: str = ""
    ) -> None:
        """Close a row with its outcome."""
        values = (status, bytes_done, error, note, self._clock(), job_id)
        self._guarded(
            lambda db: db.execute(
                "UPDATE jobs SET status = ?, bytes_done = ?, error = ?, note = ?, ended_at = ?, owner = NULL"
                " WHERE id = ? AND ended_at IS NULL",
                values,
            ),
            write=True,
        )

    def claim(self, job_id: int, owner: int) -> bool:
        """Take over an open plan whose driving process is gone; False if another live one has it."""

        def take(db: sqlite3.Connection) -> bool:
            row = db.execute("SELECT owner, ended_at FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None or row[1] is not None:
                return False
            current = row[0]
            if current not in (None, owner) and pid_alive(current):
                return False
            db.execute("UPDATE jobs SET owner = ? WHERE id = ?", (owner, job_id))
            return True

        return self._guarded(take, write=True)

    # -- reading ---------------------------------------------------------------------------

    def get(self, job_id: int) -> Entry | None:
        """One row."""
        rows = self._select("WHERE id = ?", (job_id,))
        return rows[0] if rows else None

    def open_entries(self, host: str | None = None) -> list[Entry]:
        """Rows not yet ended (plans to carry on, jobs still watched), in queue order."""
        if host is None:
            return self._select("WHERE ended_at IS NULL ORDER BY position, id", ())
        return self._select("WHERE ended_at IS NULL AND host = ? ORDER BY position, id", (host,))

    def history(self, limit: int = 200) -> list[Entry]:
        """The most recent rows, newest first."""
        return self._select("ORDER BY started_at DESC, id DESC LIMIT ?", (limit,))

    def _select(self, tail: str, params: tuple[Any, ...]) -> list[Entry]:
        def read(db: sqlite3.Connection) -> list[Entry]:
            rows = db.execute(f"SELECT {COLUMNS} FROM jobs {tail}", params).fetchall()
            points: dict[int, list[Checkpoint]] = {}
            if rows:
                marks = ",".join("?" * len(rows))
                for job_id, seq, boundary, offset, overshoot, at in db.execute(
                    "SELECT job_id, seq, boundary, offset, overshoot, at FROM checkpoints"
                    f" WHERE job_id IN ({marks}) ORDER BY job_id, seq",
                    [row[0] for row in rows],
                ):
                    points.setdefault(job_id, []).append(Checkpoint(seq, boundary, offset, overshoot, at))
            return [entry_from_row(row, points.get(row[0], [])) for row in rows]

        return self._guarded(read, write=False)
