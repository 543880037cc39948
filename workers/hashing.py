"""Streaming SHA-256 with a cache keyed by (device, inode), valid while size, mtime and ctime match.

Model files are GBs: hashing reads them in 1 MiB chunks into one reused buffer (hashlib
releases the GIL and runs at its own speed), and an unchanged file is never read again.
Hashing works on an open file descriptor, so the bytes hashed are those of the file that was
checked, not of whatever the path names a moment later.

A scan asks about thousands of files: ``cached_many`` reads the cached hashes of a whole
folder in one query, and keeps what it read in this process (``_process_rows``), so the next
scan of an unchanged tree by the same process (the worker runs an inventory every few
minutes) reads nothing from the database at all; new hashes are written in one transaction
at ``flush`` (the end of a scan or prune, and every ``FLUSH_SECONDS`` of hashing so a killed
scan of a large folder keeps most of its work), never one commit per file.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from workers.state import CachedHash, HashRow, StateDB

CHUNK = 1024 * 1024
FLUSH_SECONDS = 30.0

Progress = Callable[[int], None]

# This process's copy of the hash rows it read or wrote, per database and device:
# {(database's token, st_dev): {st_ino: (ino, size, mtime_ns, ctime_ns, sha256)}}. A row is used
# exactly like one read from the database, only if size, mtime and ctime still match the
# file's lstat, so a copy older than the database (another process hashed the file since)
# is either still right (the same three values: the same bytes) or a miss that asks the
# database. Kept for trees of up to RECENT_MAX files (some 3 MB at 10,000): past that the
# copy is dropped (None) and the device's rows are read from the database at every scan, as
# a copy of a 100,000-file tree would cost more memory than the scan itself.
_process_rows: dict[tuple[str, int], dict[int, CachedHash] | None] = {}
RECENT_MAX = 20_000


@dataclass
class HashStats:
    files_hashed: int = 0
    bytes_hashed: int = 0
    cache_hits: int = 0


class HashCache:
    def __init__(self, db: StateDB, progress: Progress | None = None) -> None:
        self.db = db
        self.stats = HashStats()
        self.progress = progress
        self._pending: list[HashRow] = []
        self._flushed_at = time.monotonic()
        self._buffer = bytearray(CHUNK)

    def cached_many(self, dev: int, inodes: list[int]) -> dict[int, CachedHash]:
        """Cached rows of many inodes at once (a folder of a scan), by inode; the caller compares
        size, mtime and ctime. From this process's copy, asking the database (one query) only
        for inodes it does not hold. The dict returned may hold other inodes too."""
        key = (self.db.identity, dev)
        recent = _process_rows.setdefault(key, {})
        if recent is None:
            return self.db.hashes_of(dev, inodes)
        missing = [ino for ino in inodes if ino not in recent]
        if missing:
            recent.update(self.db.hashes_of(dev, missing))
            if len(recent) > RECENT_MAX:
                _process_rows[key] = None  # too large a tree to keep: this folder still gets it
        return recent

    def cached(self, st: os.stat_result) -> str | None:
        """The cached SHA-256 of the file ``st`` describes, if it is unchanged since it was hashed."""
        value = self.db.cached_hash(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        if value is not None:
            self.stats.cache_hits += 1
        return value

    def sha256_fd(self, fd: int, before: os.stat_result | None = None) -> str | None:
        """The SHA-256 of the open regular file ``fd``, from the cache when unchanged.

        ``before`` is the file's fstat if the caller has it. Returns None if the file changed
        while it was being read (the digest would describe no version of the file that ever
        existed, so it is neither returned nor cached).
        """
        if before is None:
            before = os.fstat(fd)
        cached = self.cached(before)
        if cached is not None:
            return cached
        digest = hashlib.sha256()
        view = memoryview(self._buffer)
        offset, size = 0, before.st_size
        self.stats.files_hashed += 1
        while True:
            # Reading up to the size fstat gave saves the last empty read of every small file;
            # a file that grew meanwhile fails the fstat comparison below.
            n = os.preadv(fd, [view], offset) if offset < size else 0
            if not n:
                break
            digest.update(view[:n])
            offset += n
            self.stats.bytes_hashed += n
            if self.progress is not None:
                self.progress(n)
        after = os.fstat(fd)
        if (after.st_size, after.st_mtime_ns, after.st_ctime_ns) != (
            before.st_size,
            before.st_mtime_ns,
            before.st_ctime_ns,
        ) or offset != after.st_size:
            return None
        value = digest.hexdigest()
        row = (before.st_dev, before.st_ino, before.st_size, before.st_mtime_ns, before.st_ctime_ns, value)
        self._pending.append(row)
        recent = _process_rows.get((self.db.identity, before.st_dev))
        if recent is not None:
            recent[before.st_ino] = row[1:]
        if time.monotonic() - self._flushed_at > FLUSH_SECONDS:
            self.flush()
        return value

    def flush(self) -> None:
        """Write the hashes computed since the last flush, in one transaction."""
        if self._pending:
            self.db.store_hashes(self._pending)
            self._pending = []
        self._flushed_at = time.monotonic()
