"""The agent's replay guard: the nonces of the orders it has accepted."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path


class ReplayGuard:
    """The nonces an agent has accepted, in a small sqlite table in its state folder.

    ``seen_before`` claims a nonce with one INSERT OR IGNORE, so of two workers that receive
    the same message at once exactly one wins (sqlite's file lock serialises the writers;
    the busy timeout makes the other wait instead of failing). A nonce is kept until its
    message could no longer pass the time checks anyway, plus a margin for a clock that is
    set back; after that the time checks refuse the message, so forgetting it is safe.
    """

    # Rows outlive their message's window by this much, in case the clock is set back.
    KEEP_MARGIN = timedelta(hours=1)

    def __init__(self, state_dir: Path, *, filename: str = "replay.sqlite3") -> None:
        state_dir = Path(state_dir)
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.path = state_dir / filename
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS seen_nonces ("
                " signer TEXT NOT NULL, nonce TEXT NOT NULL, keep_until REAL NOT NULL,"
                " PRIMARY KEY (signer, nonce))"
            )
            # For the prune in seen_before: DELETE ... WHERE keep_until < now.
            db.execute("CREATE INDEX IF NOT EXISTS seen_nonces_keep_until ON seen_nonces (keep_until)")

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        with closing(sqlite3.connect(self.path, timeout=30, isolation_level=None)) as db:
            yield db

    def seen_before(
        self, nonce: str, *, signer: str, valid_until: datetime, now: datetime | None = None
    ) -> bool:
        """Claim ``nonce``; True if it was claimed before (the message is a replay).

        ``valid_until`` is the last moment the time checks would still accept the message
        (for an order: ``expires_at + max_skew``).
        """
        now = now or datetime.now(UTC)
        keep_until = (valid_until + self.KEEP_MARGIN).timestamp()
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute("DELETE FROM seen_nonces WHERE keep_until < ?", (now.timestamp(),))
                inserted = db.execute(
                    "INSERT OR IGNORE INTO seen_nonces (signer, nonce, keep_until) VALUES (?, ?, ?)",
                    (signer, nonce, keep_until),
                ).rowcount
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        return inserted == 0

    def __len__(self) -> int:
        with self._connect() as db:
            return db.execute("SELECT COUNT(*) FROM seen_nonces").fetchone()[0]
