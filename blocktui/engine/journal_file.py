"""Where the job journal lives; its SQLite file opened private, shared (WAL), migrated, or held in memory."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

import platformdirs

from blocktui.core.errors import HostError

#: Environment variable that moves the state directory (tests use a private one).
STATE_DIR_ENV = "BLOCKTUI_STATE_DIR"

#: Bumped whenever the schema changes; ``migrate`` brings older files up to it.
SCHEMA_VERSION = 3

#: Milliseconds a write waits for another process's transaction before giving up.
BUSY_TIMEOUT_MS = 10_000

#: The statements that bring a file from version N-1 to N.
_STEPS: dict[int, tuple[str, ...]] = {
    1: (
        """CREATE TABLE IF NOT EXISTS jobs (
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
)""",
        "CREATE INDEX IF NOT EXISTS jobs_open ON jobs (ended_at, host, domain, disk)",
        """CREATE TABLE IF NOT EXISTS checkpoints (
    job_id INTEGER NOT NULL REFERENCES jobs (id),
    seq INTEGER NOT NULL,
    boundary INTEGER NOT NULL,
    offset INTEGER NOT NULL,       -- progress when the stream stopped (may pass the boundary)
    overshoot INTEGER NOT NULL,    -- bytes past the boundary
    at REAL NOT NULL,
    PRIMARY KEY (job_id, seq)
)""",
    ),
    # What identified the disk when the plan was made (JSON, ``core.identity.DiskIdentity``).
    2: ("ALTER TABLE jobs ADD COLUMN identity TEXT",),
    # The part of the disk a window plan copies (both NULL: the whole chain).
    3: (
        "ALTER TABLE jobs ADD COLUMN window_offset INTEGER",
        "ALTER TABLE jobs ADD COLUMN window_length INTEGER",
    ),
}

#: SQLite's primary result codes that mean "this file cannot be written (now)", not a bug of ours:
#: PERM, BUSY (past the timeout), READONLY, IOERR, CORRUPT, FULL, CANTOPEN, NOTADB.
_UNWRITABLE_CODES = frozenset({3, 5, 8, 10, 11, 13, 14, 26})


def state_dir() -> Path:
    """``$BLOCKTUI_STATE_DIR``, else the platform's user state directory for blocktui."""
    override = os.environ.get(STATE_DIR_ENV)
    if override:
        return Path(override).expanduser().absolute()
    return Path(platformdirs.user_state_dir("blocktui"))


def default_path() -> Path:
    """Where the journal lives."""
    return state_dir() / "journal.sqlite3"


def make_private(path: Path) -> None:
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


def unwritable(exc: sqlite3.Error) -> bool:
    """Whether SQLite failed because the file cannot be written (full, read-only, I/O, locked)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:
        return isinstance(exc, sqlite3.OperationalError)
    return (code & 0xFF) in _UNWRITABLE_CODES


def migrate(db: sqlite3.Connection, where: str) -> None:
    """Bring the schema up to ``SCHEMA_VERSION``; several processes may try at once.

    Raises:
        HostError: the file comes from a newer blocktui.
    """
    (version,) = db.execute("PRAGMA user_version").fetchone()
    if version == SCHEMA_VERSION:
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        # Read again under the write lock: another process may have migrated meanwhile.
        (version,) = db.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            raise HostError(
                f"the journal {where} is from a newer blocktui (schema {version}); "
                "upgrade blocktui or move the file away"
            )
        for step in range(version + 1, SCHEMA_VERSION + 1):
            for statement in _STEPS[step]:
                db.execute(statement)
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _connect(target: str | Path) -> sqlite3.Connection:
    # isolation_level=None: transactions are ours (BEGIN IMMEDIATE), never opened behind our back.
    return sqlite3.connect(
        target, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False, isolation_level=None
    )


def open_file(path: Path) -> sqlite3.Connection:
    """The journal file, private, in WAL mode (readers never wait for a writer), migrated.

    Raises:
        OSError, sqlite3.Error: the file or its directory cannot be created, opened or written.
        HostError: the file comes from a newer blocktui.
    """
    make_private(path)
    db = _connect(path)
    try:
        db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        db.execute("PRAGMA journal_mode=WAL")
        migrate(db, str(path))
    except BaseException:
        db.close()
        raise
    return db


def open_memory(copy_of: sqlite3.Connection | None = None) -> sqlite3.Connection:
    """A journal in memory: a copy of ``copy_of`` (so open rows keep their ids) or a fresh one."""
    db = _connect(":memory:")
    if copy_of is not None:
        with contextlib.suppress(sqlite3.Error):
            copy_of.backup(db)
            return db
        # The file cannot even be read back: start empty rather than not at all.
        db.close()
        db = _connect(":memory:")
    migrate(db, "in memory")
    return db
