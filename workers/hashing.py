"""Streaming SHA-256 with a cache keyed by (device, inode, size, mtime_ns, ctime_ns).

Model files are GBs: hashing reads them in 1 MiB chunks, and an unchanged file (same inode,
size and mtime) is never read again. Hashing works on an open file descriptor, so the bytes
hashed are those of the file that was checked, not of whatever the path names a moment later.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass

from workers.state import StateDB

CHUNK = 1024 * 1024

Progress = Callable[[int], None]


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

    def sha256_fd(self, fd: int) -> str | None:
        """The SHA-256 of the open regular file ``fd``, from the cache when unchanged.

        Returns None if the file changed while it was being read (the digest would describe
        no version of the file that ever existed, so it is neither returned nor cached).
        """
        before = os.fstat(fd)
        key = (before.st_dev, before.st_ino, before.st_size, before.st_mtime_ns, before.st_ctime_ns)
        cached = self.db.cached_hash(*key)
        if cached is not None:
            self.stats.cache_hits += 1
            return cached
        digest = hashlib.sha256()
        offset = 0
        self.stats.files_hashed += 1
        while True:
            chunk = os.pread(fd, CHUNK, offset)
            if not chunk:
                break
            digest.update(chunk)
            offset += len(chunk)
            self.stats.bytes_hashed += len(chunk)
            if self.progress is not None:
                self.progress(len(chunk))
        after = os.fstat(fd)
        if (after.st_size, after.st_mtime_ns) != (
            before.st_size,
            before.st_mtime_ns,
        ) or offset != after.st_size:
            return None
        value = digest.hexdigest()
        self.db.store_hash(*key, value)
        return value
