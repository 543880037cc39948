"""The agent's own small database (sqlite3 in the state folder).

It holds what must survive a restart and be shared by two tasks that run at once: the hash
cache, the per-item outcomes of prune and restore requests (so a redelivered order touches
nothing twice), the reports already sent per order, how often an order was started (so an
order that keeps killing its worker stops), and the outbox of reports not yet taken by the
broker.

One ``StateDB`` holds one connection, opened once and used for the whole task (an order,
a CLI command): opening sqlite per call cost more than the work on a rescan. sqlite
serialises writers with its file lock and WAL lets readers proceed meanwhile, so two
processes (a task and the outbox sender) share the file safely. ``synchronous=NORMAL``
under WAL makes a commit survive a killed process (the data is in the OS) without an
fsync per commit; only a power cut may lose the last commits, and everything here can be
recomputed (hashes), is re-sent by the dashboard (orders) or re-checked on disk (items).

A full disk surfaces as :class:`StateFull` (``sqlite3.OperationalError`` "database or disk
is full", or ``OSError`` ENOSPC/EDQUOT while opening), so the agent can say so in a report
instead of dying with a traceback.
"""

from __future__ import annotations

import errno
import json
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS file_hashes (
    dev INTEGER NOT NULL, ino INTEGER NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    ctime_ns INTEGER NOT NULL, sha256 TEXT NOT NULL, seen_at REAL NOT NULL,
    PRIMARY KEY (dev, ino)
);
CREATE TABLE IF NOT EXISTS item_outcomes (
    kind TEXT NOT NULL, request_id TEXT NOT NULL, path TEXT NOT NULL,
    outcome TEXT NOT NULL, detail TEXT NOT NULL, bytes INTEGER NOT NULL, done_at REAL NOT NULL,
    PRIMARY KEY (kind, request_id, path)
);
CREATE TABLE IF NOT EXISTS runs (
    task TEXT NOT NULL, request_id TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, reports TEXT, started_at REAL, finished_at REAL,
    order_body TEXT,
    PRIMARY KEY (task, request_id)
);
CREATE TABLE IF NOT EXISTS outbox (
    report_id TEXT PRIMARY KEY, report TEXT NOT NULL, queued_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, next_try_at REAL NOT NULL, last_error TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS outbox_next_try_at ON outbox (next_try_at);
CREATE TABLE IF NOT EXISTS aspose_listings (
    model_dir TEXT PRIMARY KEY, signature TEXT NOT NULL, listing TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS instance (token TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS file_uses (
    store TEXT NOT NULL, path TEXT NOT NULL, seen_at REAL NOT NULL, seen_by TEXT NOT NULL,
    PRIMARY KEY (store, path)
);
"""

# The first cache kept every version of a file, keyed by its whole identity; one row per
# inode keeps the table as large as the folder. Old rows are carried over, newest last.
_MIGRATE_HASHES = """
INSERT OR REPLACE INTO file_hashes SELECT dev, ino, size, mtime_ns, ctime_ns, sha256, seen_at
    FROM hashes ORDER BY seen_at;
DROP TABLE hashes;
"""

# Bumped with every change of _SCHEMA (the tables are created when it differs).
_USER_VERSION = 3
# Columns added to a table that an earlier version created: (table, column, declaration).
_ADDED_COLUMNS = (("runs", "order_body", "TEXT"),)

# Cached hash of one inode: (ino, size, mtime_ns, ctime_ns, sha256), the row as sqlite gives it.
CachedHash = tuple[int, int, int, int, str]
HashRow = tuple[int, int, int, int, int, str]  # dev, ino, size, mtime_ns, ctime_ns, sha256


class StateFull(OSError):
    """The state folder has no room left: nothing more can be recorded there."""


def is_disk_full(exc: BaseException, folder: Path | None = None) -> bool:
    """``exc`` comes from a full disk: ENOSPC, sqlite's "full", or an I/O error with no room left.

    sqlite reports a failed write of its WAL or shared-memory file as "disk I/O error";
    that is a full disk when the folder has (next to) no free space.
    """
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    if "full" in str(exc):
        return True
    if "disk I/O error" in str(exc) and folder is not None:
        try:
            return shutil.disk_usage(folder).free < 256 * 1024
        except OSError:
            return False
    return False


@contextmanager
def _full_is_state_full(path: Path) -> Iterator[None]:
    try:
        yield
    except (sqlite3.OperationalError, OSError) as exc:
        if is_disk_full(exc, path.parent):
            raise StateFull(errno.ENOSPC, f"the agent's state folder is full ({path.parent}): {exc}") from exc
        raise


class StateDB:
    """The state database of one task; see the module docstring. Close it (or use ``with``)."""

    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / "agent.sqlite3"
        self._lock = threading.RLock()
        with _full_is_state_full(self.path):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Long timeout: a second task waits for the writer instead of failing with "locked".
            self._db = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
            try:
                self._db.execute("PRAGMA synchronous=NORMAL")
                # Every task opens the database: the schema is written once, not at every open
                # (a write transaction per order, and the largest part of opening it).
                if self._db.execute("PRAGMA user_version").fetchone()[0] != _USER_VERSION:
                    self._create()
                # Which database this is, whatever its path or inode (both are reused once a
                # folder is removed): a process's copy of its rows (hashing.HashCache) must not
                # outlive the database being replaced.
                self.identity: str = self._db.execute("SELECT token FROM instance").fetchone()[0]
            except BaseException:
                self._db.close()
                raise

    def _create(self) -> None:
        self._db.execute("PRAGMA journal_mode=WAL")
        with self._transaction() as db:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            for table, column, declaration in _ADDED_COLUMNS:
                if column not in {row[1] for row in db.execute(f"PRAGMA table_info({table})")}:
                    db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
            if db.execute("SELECT 1 FROM sqlite_master WHERE name='hashes'").fetchone():
                for statement in _MIGRATE_HASHES.split(";"):
                    if statement.strip():
                        db.execute(statement)
            if db.execute("SELECT 1 FROM instance").fetchone() is None:
                db.execute("INSERT INTO instance (token) VALUES (?)", (uuid.uuid4().hex,))
            db.execute(f"PRAGMA user_version={_USER_VERSION}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> StateDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock, _full_is_state_full(self.path):
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def _execute(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Cursor:
        with self._lock, _full_is_state_full(self.path):
            return self._db.execute(sql, tuple(params))

    # ------------------------------------------------------------ hash cache

    # A cached hash counts only if size, mtime and ctime all match: mtime can be set back with
    # utime() after an in-place rewrite, ctime cannot, so such a file is hashed again.
    def cached_hash(self, dev: int, ino: int, size: int, mtime_ns: int, ctime_ns: int) -> str | None:
        row = self._execute(
            "SELECT sha256 FROM file_hashes WHERE dev=? AND ino=? AND size=? AND mtime_ns=? AND ctime_ns=?",
            (dev, ino, size, mtime_ns, ctime_ns),
        ).fetchone()
        return row[0] if row else None

    def hashes_of(self, dev: int, inodes: list[int]) -> dict[int, CachedHash]:
        """The cached hashes of these inodes of device ``dev``, by inode, in one query.

        A scan asks once per folder: the whole cache of a 100k-file folder held in memory
        cost more RAM than the walk itself, one query per file cost more time than the walk.
        The inodes travel as one JSON array (no limit on the number of sqlite parameters).
        """
        if not inodes:
            return {}
        low, high = min(inodes), max(inodes)
        if high - low < 2 * len(inodes):
            # Files made together get neighbouring inodes: a range scan of the primary key is
            # the cheapest query, and the few strangers it returns are simply not asked for.
            rows = self._execute(
                "SELECT ino, size, mtime_ns, ctime_ns, sha256 FROM file_hashes "
                "WHERE dev=? AND ino BETWEEN ? AND ?",
                (dev, low, high),
            ).fetchall()
        else:
            rows = self._execute(
                "SELECT ino, size, mtime_ns, ctime_ns, sha256 FROM file_hashes "
                "WHERE dev=? AND ino IN (SELECT value FROM json_each(?))",
                (dev, json.dumps(inodes)),
            ).fetchall()
        return {row[0]: row for row in rows}

    # ------------------------------------------------------------ Aspose's listing

    def aspose_listing(self, model_dir: str, signature: str) -> list[str] | None:
        """Aspose's list_local() answer for ``model_dir`` if nothing it reads changed since."""
        row = self._execute(
            "SELECT listing FROM aspose_listings WHERE model_dir=? AND signature=?", (model_dir, signature)
        ).fetchone()
        return json.loads(row[0]) if row else None

    def store_aspose_listing(self, model_dir: str, signature: str, listing: list[str]) -> None:
        self._execute(
            "INSERT OR REPLACE INTO aspose_listings VALUES (?, ?, ?)",
            (model_dir, signature, json.dumps(listing)),
        )

    def store_hashes(self, rows: Iterable[HashRow]) -> None:
        """Store many hashes in one transaction (one commit for a whole scan, not one per file)."""
        now = time.time()
        with self._transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO file_hashes VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(*row, now) for row in rows],
            )

    def store_hash(self, dev: int, ino: int, size: int, mtime_ns: int, ctime_ns: int, sha256: str) -> None:
        self.store_hashes([(dev, ino, size, mtime_ns, ctime_ns, sha256)])

    # ------------------------------------------------------------ per-item outcomes

    def item_outcomes(self, kind: str, request_id: str) -> dict[str, tuple[str, str, int]]:
        rows = self._execute(
            "SELECT path, outcome, detail, bytes FROM item_outcomes WHERE kind=? AND request_id=?",
            (kind, request_id),
        ).fetchall()
        return {path: (outcome, detail, size) for path, outcome, detail, size in rows}

    def record_item(
        self, kind: str, request_id: str, path: str, outcome: str, detail: str, size: int
    ) -> None:
        # OR IGNORE: the first recorded outcome is the truth; a concurrent duplicate cannot overwrite it.
        self._execute(
            "INSERT OR IGNORE INTO item_outcomes VALUES (?, ?, ?, ?, ?, ?, ?)",
            (kind, request_id, path, outcome, detail, size, time.time()),
        )

    def purge_marks(self, kind: str, order_id: str) -> dict[str, tuple[int, int]]:
        """Folder -> (files, bytes) of every request folder purge order ``order_id`` began to
        delete (``workers.prune.purge_requests`` writes the mark before rmtree starts)."""
        rows = self._execute(
            "SELECT request_id, detail, bytes FROM item_outcomes WHERE kind=? AND path=?", (kind, order_id)
        ).fetchall()
        return {rid: (int(files) if files.isdigit() else 0, size) for rid, files, size in rows}

    def request_time(self, kind: str, request_id: str) -> float | None:
        """When the first item of a request was recorded (the start of its quarantine)."""
        row = self._execute(
            "SELECT MIN(done_at) FROM item_outcomes WHERE kind=? AND request_id=?", (kind, request_id)
        ).fetchone()
        return row[0] if row else None

    # ------------------------------------------------------------ task runs

    def start_attempt(
        self, task: str, request_id: str, order: dict[str, Any] | None = None
    ) -> tuple[int, list[dict[str, Any]] | None]:
        """Count a start of ``task`` for ``request_id``, journaling its verified ``order``.

        Returns (attempts including this one, reports already sent if the run finished before).
        A finished run does not count further attempts. The journal lets a restarted agent
        answer an order it began and never finished (``unfinished_runs``).
        """
        with self._transaction() as db:
            row = db.execute(
                "SELECT attempts, reports FROM runs WHERE task=? AND request_id=?", (task, request_id)
            ).fetchone()
            if row and row[1] is not None:
                return row[0], json.loads(row[1])
            attempts = (row[0] if row else 0) + 1
            db.execute(
                "INSERT INTO runs (task, request_id, attempts, started_at, order_body) "
                "VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (task, request_id) DO UPDATE SET attempts=excluded.attempts, "
                "started_at=excluded.started_at, order_body=COALESCE(excluded.order_body, order_body)",
                (task, request_id, attempts, time.time(), None if order is None else json.dumps(order)),
            )
            return attempts, None

    def unfinished_runs(self, tasks: Iterable[str]) -> list[tuple[str, str, dict[str, Any]]]:
        """(task, request id, journaled order) of every run of ``tasks`` that started and never
        finished (its agent was killed or restarted mid-run), oldest first."""
        rows = self._execute(
            "SELECT task, request_id, order_body FROM runs WHERE reports IS NULL AND order_body IS NOT NULL "
            "AND task IN (SELECT value FROM json_each(?)) ORDER BY started_at",
            (json.dumps(list(tasks)),),
        ).fetchall()
        return [(task, rid, json.loads(body)) for task, rid, body in rows]

    def run_unfinished(self, task: str, request_id: str) -> bool:
        """A run of ``task`` for ``request_id`` started and never finished (its worker died)."""
        row = self._execute(
            "SELECT reports FROM runs WHERE task=? AND request_id=?", (task, request_id)
        ).fetchone()
        return row is not None and row[0] is None

    def run_finished(self, task: str, request_id: str) -> bool:
        """A run of ``task`` for ``request_id`` finished and its reports were recorded."""
        row = self._execute(
            "SELECT reports FROM runs WHERE task=? AND request_id=?", (task, request_id)
        ).fetchone()
        return row is not None and row[0] is not None

    def finish_run(self, task: str, request_id: str, reports: list[dict[str, Any]]) -> None:
        """Mark the run finished and put its reports in the outbox, in one transaction.

        Either both happen or neither: a run is never finished with reports that will not
        be sent, nor are reports sent for a run that a redelivery would do again.
        """
        now = time.time()
        with self._transaction() as db:
            db.execute(
                "UPDATE runs SET reports=?, finished_at=? WHERE task=? AND request_id=?",
                (json.dumps(reports), now, task, request_id),
            )
            self._queue(db, reports, now)

    # ------------------------------------------------------------ outbox (workers.reporting)

    @staticmethod
    def _queue(db: sqlite3.Connection, reports: list[dict[str, Any]], now: float) -> None:
        # REPLACE: the reports of a finished order asked for again are due again now.
        db.executemany(
            "INSERT OR REPLACE INTO outbox (report_id, report, queued_at, attempts, next_try_at) "
            "VALUES (?, ?, ?, 0, ?)",
            [(r["report_id"], json.dumps(r), now + i * 1e-6, now) for i, r in enumerate(reports)],
        )

    def queue_reports(self, reports: list[dict[str, Any]]) -> None:
        """Put reports in the outbox (due now), in one transaction."""
        with self._transaction() as db:
            self._queue(db, reports, time.time())

    def due_reports(self, *, everything: bool = False) -> list[tuple[str, dict[str, Any]]]:
        """(report id, report) of the rows due now (all rows if ``everything``), oldest first."""
        rows = self._execute(
            "SELECT report_id, report FROM outbox WHERE ? OR next_try_at <= ? ORDER BY queued_at",
            (everything, time.time()),
        ).fetchall()
        return [(rid, json.loads(body)) for rid, body in rows]

    def claim_report(self, report_id: str, *, everything: bool = False, hold: float = 30.0) -> bool:
        """Take a due row for one send attempt: the other sender skips it for ``hold`` seconds."""
        now = time.time()
        return (
            self._execute(
                "UPDATE outbox SET next_try_at=? WHERE report_id=? AND (? OR next_try_at <= ?)",
                (now + hold, report_id, everything, now),
            ).rowcount
            == 1
        )

    def report_sent(self, report_id: str) -> None:
        self._execute("DELETE FROM outbox WHERE report_id=?", (report_id,))

    def report_failed(self, report_id: str, error: str, hold: float | None = None) -> int:
        """Count a failed send; returns the attempts so far. ``hold``: seconds until the next try."""
        with self._transaction() as db:
            row = db.execute("SELECT attempts FROM outbox WHERE report_id=?", (report_id,)).fetchone()
            attempts = (row[0] if row else 0) + 1
            db.execute(
                "UPDATE outbox SET attempts=?, last_error=?, next_try_at=? WHERE report_id=?",
                (attempts, error[:2000], time.time() + (hold or 0.0), report_id),
            )
        return attempts

    def postpone_due(self, seconds: float) -> None:
        """Push every due row back by ``seconds`` (the broker is away for all of them)."""
        now = time.time()
        self._execute("UPDATE outbox SET next_try_at=? WHERE next_try_at <= ?", (now + seconds, now + 1e-3))

    def pending_reports(self) -> int:
        return int(self._execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    # ------------------------------------------------------------ last seen open (workers.usage)

    def record_uses(self, rows: Iterable[tuple[str, str, float, str]]) -> None:
        """(store, path, seen_at, seen_by) sightings; a later sighting replaces an earlier one."""
        with self._transaction() as db:
            db.executemany(
                "INSERT INTO file_uses VALUES (?, ?, ?, ?) ON CONFLICT (store, path) DO UPDATE SET "
                "seen_at=excluded.seen_at, seen_by=excluded.seen_by WHERE excluded.seen_at >= seen_at",
                rows,
            )

    def uses(self) -> list[tuple[str, str, float, str]]:
        return self._execute("SELECT store, path, seen_at, seen_by FROM file_uses").fetchall()
