"""The job journal: every job blocktui started or saw, its plan, checkpoints and outcome (SQLite).

The journal records; it never holds user data. Plans (queue, chunks, pause) live here so a
restarted blocktui carries them on. Several blocktui processes may share it (WAL, busy timeout);
each open plan names the process that drives it, and only plans whose process is gone are
taken over.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs

from blocktui.core.errors import HostError

#: Environment variable that moves the state directory (tests use a private one).
STATE_DIR_ENV = "BLOCKTUI_STATE_DIR"

#: Bumped whenever the schema changes; ``_migrate`` brings older files up to it.
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY,
    host TEXT NOT NULL,
    domain TEXT NOT NULL,
    disk TEXT NOT NULL,
    kind TEXT NOT NULL,
    origin TEXT NOT NULL,          -- 'planned' (this tool runs it) or 'seen' (started elsewhere)
    chain_before TEXT NOT NULL,    -- JSON list of backing paths, nearest first
    base TEXT,
    bandwidth INTEGER NOT NULL DEFAULT 0,
    size INTEGER NOT NULL DEFAULT 0,
    chunk INTEGER NOT NULL DEFAULT 0,
    gap REAL NOT NULL DEFAULT 0,
    position REAL NOT NULL,        -- queue order
    status TEXT NOT NULL,          -- queued, active, gap, paused, holding, or a final job state
    pause_requested INTEGER NOT NULL DEFAULT 0,
    owner INTEGER,                 -- pid of the process driving an open plan
    started_at REAL NOT NULL,      -- wall-clock seconds
    ended_at REAL,
    bytes_done INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    note TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS jobs_open ON jobs (ended_at, host, domain, disk);
CREATE TABLE IF NOT EXISTS checkpoints (
    job_id INTEGER NOT NULL REFERENCES jobs (id),
    seq INTEGER NOT NULL,
    boundary INTEGER NOT NULL,
    offset INTEGER NOT NULL,       -- progress when the stream stopped (may pass the boundary)
    overshoot INTEGER NOT NULL,    -- bytes past the boundary
    at REAL NOT NULL,
    PRIMARY KEY (job_id, seq)
);
"""


def state_dir() -> Path:
    """``$BLOCKTUI_STATE_DIR``, else the platform's user state directory for blocktui."""
    override = os.environ.get(STATE_DIR_ENV)
    if override:
        return Path(override).expanduser().absolute()
    return Path(platformdirs.user_state_dir("blocktui"))


def default_path() -> Path:
    """Where the journal lives."""
    return state_dir() / "journal.sqlite3"


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A boundary a chunked stream stopped at."""

    seq: int
    boundary: int
    offset: int
    overshoot: int
    at: float


@dataclass(frozen=True, slots=True)
class Entry:
    """One journal row with its checkpoints."""

    id: int
    host: str
    domain: str
    disk: str
    kind: str
    origin: str
    chain_before: tuple[str, ...]
    base: str | None
    bandwidth: int
    size: int
    chunk: int
    gap: float
    position: float
    status: str
    pause_requested: bool
    owner: int | None
    started_at: float
    ended_at: float | None
    bytes_done: int
    error: str | None
    note: str
    checkpoints: tuple[Checkpoint, ...] = field(default=())

    def as_json(self) -> dict[str, Any]:
        """The ``history --json`` record."""
        return {
            "id": self.id,
            "uri": self.host,
            "domain": self.domain,
            "disk": self.disk,
            "kind": self.kind,
            "origin": self.origin,
            "chain_before": list(self.chain_before),
            "base": self.base,
            "bandwidth": self.bandwidth,
            "size": self.size,
            "chunk": self.chunk,
            "gap": self.gap,
            "status": self.status,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "bytes_done": self.bytes_done,
            "error": self.error,
            "note": self.note,
            "checkpoints": [
                {"boundary": c.boundary, "offset": c.offset, "overshoot": c.overshoot, "at": c.at}
                for c in self.checkpoints
            ],
        }


def pid_alive(pid: int | None) -> bool:
    """Whether a process with this id runs on this machine."""
    if pid is None or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _make_private(path: Path) -> None:
    """Create the journal's directory (0700) and file (0600) for their user alone.

    The journal names hosts, domains and image paths. An existing directory is tightened only when
    it is blocktui's own default one: ``$BLOCKTUI_STATE_DIR`` may name a directory others share.
    SQLite gives its -wal and -shm files the database file's mode.
    """
    directory = path.parent
    if not directory.exists():
        directory.mkdir(mode=0o700, parents=True)
        directory.chmod(0o700)  # mkdir's mode is filtered through the umask
    elif not os.environ.get(STATE_DIR_ENV) and directory == state_dir():
        directory.chmod(0o700)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    path.chmod(0o600)


_UPDATABLE = frozenset(
    {"status", "bandwidth", "size", "chunk", "gap", "pause_requested", "owner", "bytes_done", "error", "note"}
)


class Journal:
    """A connection to the journal file; safe to share between threads of one process."""

    def __init__(self, path: Path | None = None, *, clock: Any = time.time) -> None:
        self.path = path if path is not None else default_path()
        self._clock = clock
        self._lock = threading.Lock()
        try:
            _make_private(self.path)
            self._db = sqlite3.connect(self.path, timeout=10.0, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA busy_timeout=10000")
            self._migrate()
        except (OSError, sqlite3.Error) as exc:
            raise HostError(f"cannot open the job journal {self.path}: {exc}") from exc

    def _migrate(self) -> None:
        (version,) = self._db.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            raise HostError(
                f"the journal {self.path} is from a newer blocktui (schema {version}); "
                f"upgrade blocktui or move the file away"
            )
        if version < SCHEMA_VERSION:
            # One script so creating the tables and stamping the version commit together.
            with self._lock:
                self._db.executescript(
                    f"BEGIN IMMEDIATE;{_SCHEMA}PRAGMA user_version={SCHEMA_VERSION};COMMIT;"
                )

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

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
    ) -> int:
        """Add a job (or plan); return its id. Queue position follows insertion order."""
        now = self._clock()
        with self._transaction():
            cursor = self._db.execute(
                "INSERT INTO jobs (host, domain, disk, kind, origin, chain_before, base, bandwidth,"
                " size, chunk, gap, position, status, owner, started_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
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
                ),
            )
            return int(cursor.lastrowid or 0)

    def update(self, job_id: int, **fields: Any) -> None:
        """Change some columns of an open or closed row."""
        unknown = set(fields) - _UPDATABLE
        if unknown:
            raise ValueError(f"journal: cannot update {sorted(unknown)}")
        if not fields:
            return
        assignments = ", ".join(f"{name} = ?" for name in fields)
        with self._transaction():
            self._db.execute(f"UPDATE jobs SET {assignments} WHERE id = ?", (*fields.values(), job_id))

    def add_checkpoint(self, job_id: int, *, boundary: int, offset: int) -> Checkpoint:
        """Record that a chunked stream stopped at ``boundary`` with progress ``offset``."""
        now = self._clock()
        with self._transaction():
            (count,) = self._db.execute(
                "SELECT COUNT(*) FROM checkpoints WHERE job_id = ?", (job_id,)
            ).fetchone()
            checkpoint = Checkpoint(count + 1, boundary, offset, max(0, offset - boundary), now)
            self._db.execute(
                "INSERT INTO checkpoints (job_id, seq, boundary, offset, overshoot, at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (job_id, checkpoint.seq, boundary, offset, checkpoint.overshoot, now),
            )
            self._db.execute("UPDATE jobs SET bytes_done = MAX(bytes_done, ?) WHERE id = ?", (offset, job_id))
        return checkpoint

    def finish(
        self, job_id: int, status: str, *, bytes_done: int, error: str | None = None, note: str = ""
    ) -> None:
        """Close a row with its outcome."""
        with self._transaction():
            self._db.execute(
                "UPDATE jobs SET status = ?, bytes_done = ?, error = ?, note = ?, ended_at = ?, owner = NULL"
                " WHERE id = ? AND ended_at IS NULL",
                (status, bytes_done, error, note, self._clock(), job_id),
            )

    def claim(self, job_id: int, owner: int) -> bool:
        """Take over an open plan whose driving process is gone; False if another live one has it."""
        with self._transaction():
            row = self._db.execute("SELECT owner, ended_at FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None or row[1] is not None:
                return False
            current = row[0]
            if current not in (None, owner) and pid_alive(current):
                return False
            self._db.execute("UPDATE jobs SET owner = ? WHERE id = ?", (owner, job_id))
            return True

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
        with self._lock:
            rows = self._db.execute(
                "SELECT id, host, domain, disk, kind, origin, chain_before, base, bandwidth, size, chunk,"
                " gap, position, status, pause_requested, owner, started_at, ended_at, bytes_done,"
                f" error, note FROM jobs {tail}",
                params,
            ).fetchall()
            points: dict[int, list[Checkpoint]] = {}
            if rows:
                marks = ",".join("?" * len(rows))
                for job_id, seq, boundary, offset, overshoot, at in self._db.execute(
                    "SELECT job_id, seq, boundary, offset, overshoot, at FROM checkpoints"
                    f" WHERE job_id IN ({marks}) ORDER BY job_id, seq",
                    [row[0] for row in rows],
                ):
                    points.setdefault(job_id, []).append(Checkpoint(seq, boundary, offset, overshoot, at))
        return [
            Entry(
                id=row[0],
                host=row[1],
                domain=row[2],
                disk=row[3],
                kind=row[4],
                origin=row[5],
                chain_before=tuple(json.loads(row[6])),
                base=row[7],
                bandwidth=row[8],
                size=row[9],
                chunk=row[10],
                gap=row[11],
                position=row[12],
                status=row[13],
                pause_requested=bool(row[14]),
                owner=row[15],
                started_at=row[16],
                ended_at=row[17],
                bytes_done=row[18],
                error=row[19],
                note=row[20],
                checkpoints=tuple(points.get(row[0], ())),
            )
            for row in rows
        ]
