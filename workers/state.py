"""The agent's own small database (sqlite3 in the state folder).

It holds what must survive a restart and be shared by two tasks that run at once: the hash
cache, the per-item outcomes of prune and restore requests (so a redelivered order touches
nothing twice), the reports already sent per order, and how often an order was started (so
an order that keeps killing its worker stops). Every method opens its own short connection:
sqlite serialises writers with its file lock, and WAL lets readers proceed meanwhile.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS hashes (
    dev INTEGER NOT NULL, ino INTEGER NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    ctime_ns INTEGER NOT NULL, sha256 TEXT NOT NULL, seen_at REAL NOT NULL,
    PRIMARY KEY (dev, ino, size, mtime_ns, ctime_ns)
);
CREATE TABLE IF NOT EXISTS item_outcomes (
    kind TEXT NOT NULL, request_id TEXT NOT NULL, path TEXT NOT NULL,
    outcome TEXT NOT NULL, detail TEXT NOT NULL, bytes INTEGER NOT NULL, done_at REAL NOT NULL,
    PRIMARY KEY (kind, request_id, path)
);
CREATE TABLE IF NOT EXISTS runs (
    task TEXT NOT NULL, request_id TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, reports TEXT, started_at REAL, finished_at REAL,
    PRIMARY KEY (task, request_id)
);
"""


class StateDB:
    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / "agent.sqlite3"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # Long timeout: a second task waits for the writer instead of failing with "locked".
        with closing(sqlite3.connect(self.path, timeout=60, isolation_level=None)) as db:
            yield db

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    # ------------------------------------------------------------ hash cache

    # The key adds ctime to (dev, inode, size, mtime): mtime can be set back with utime() after
    # an in-place rewrite, ctime cannot, so such a file is hashed again instead of trusted.
    def cached_hash(self, dev: int, ino: int, size: int, mtime_ns: int, ctime_ns: int) -> str | None:
        with self._connect() as db:
            row = db.execute(
                "SELECT sha256 FROM hashes WHERE dev=? AND ino=? AND size=? AND mtime_ns=? AND ctime_ns=?",
                (dev, ino, size, mtime_ns, ctime_ns),
            ).fetchone()
        return row[0] if row else None

    def store_hash(self, dev: int, ino: int, size: int, mtime_ns: int, ctime_ns: int, sha256: str) -> None:
        with self._connect() as db:
            db.execute(
                "INSERT OR REPLACE INTO hashes VALUES (?, ?, ?, ?, ?, ?, ?)",
                (dev, ino, size, mtime_ns, ctime_ns, sha256, time.time()),
            )

    # ------------------------------------------------------------ per-item outcomes

    def item_outcomes(self, kind: str, request_id: str) -> dict[str, tuple[str, str, int]]:
        with self._connect() as db:
            rows = db.execute(
                "SELECT path, outcome, detail, bytes FROM item_outcomes WHERE kind=? AND request_id=?",
                (kind, request_id),
            ).fetchall()
        return {path: (outcome, detail, size) for path, outcome, detail, size in rows}

    def record_item(
        self, kind: str, request_id: str, path: str, outcome: str, detail: str, size: int
    ) -> None:
        # OR IGNORE: the first recorded outcome is the truth; a concurrent duplicate cannot overwrite it.
        with self._connect() as db:
            db.execute(
                "INSERT OR IGNORE INTO item_outcomes VALUES (?, ?, ?, ?, ?, ?, ?)",
                (kind, request_id, path, outcome, detail, size, time.time()),
            )

    def request_time(self, kind: str, request_id: str) -> float | None:
        """When the first item of a request was recorded (the start of its quarantine)."""
        with self._connect() as db:
            row = db.execute(
                "SELECT MIN(done_at) FROM item_outcomes WHERE kind=? AND request_id=?", (kind, request_id)
            ).fetchone()
        return row[0] if row else None

    # ------------------------------------------------------------ task runs

    def start_attempt(self, task: str, request_id: str) -> tuple[int, list[dict[str, Any]] | None]:
        """Count a start of ``task`` for ``request_id``.

        Returns (attempts including this one, reports already sent if the run finished before).
        A finished run does not count further attempts.
        """
        with self._transaction() as db:
            row = db.execute(
                "SELECT attempts, reports FROM runs WHERE task=? AND request_id=?", (task, request_id)
            ).fetchone()
            if row and row[1] is not None:
                return row[0], json.loads(row[1])
            attempts = (row[0] if row else 0) + 1
            db.execute(
                "INSERT INTO runs (task, request_id, attempts, started_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (task, request_id) DO UPDATE SET attempts=excluded.attempts, "
                "started_at=excluded.started_at",
                (task, request_id, attempts, time.time()),
            )
            return attempts, None

    def run_unfinished(self, task: str, request_id: str) -> bool:
        """A run of ``task`` for ``request_id`` started and never finished (its worker died)."""
        with self._connect() as db:
            row = db.execute(
                "SELECT reports FROM runs WHERE task=? AND request_id=?", (task, request_id)
            ).fetchone()
        return row is not None and row[0] is None

    def run_finished(self, task: str, request_id: str) -> bool:
        """A run of ``task`` for ``request_id`` finished and its reports were recorded."""
        with self._connect() as db:
            row = db.execute(
                "SELECT reports FROM runs WHERE task=? AND request_id=?", (task, request_id)
            ).fetchone()
        return row is not None and row[0] is not None

    def finish_run(self, task: str, request_id: str, reports: list[dict[str, Any]]) -> None:
        with self._connect() as db:
            db.execute(
                "UPDATE runs SET reports=?, finished_at=? WHERE task=? AND request_id=?",
                (json.dumps(reports), time.time(), task, request_id),
            )
