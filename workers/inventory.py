"""What is in the model folder: the walk (the truth about files) joined with Aspose's list_local().

The walk never follows a symlink: a link is reported as such (without a hash), so a link to
``/etc`` or to another disk can neither inflate the inventory nor be read by the agent. The
walk goes through directory file descriptors, so a folder swapped for a symlink while we walk
is met as a symlink (O_NOFOLLOW), not followed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path
from stat import S_ISDIR, S_ISLNK, S_ISREG
from typing import NamedTuple

from pydantic import TypeAdapter

from workers import __version__
from workers.aspose_backend import AsposeSession, ModelDirNotFound, aspose_version
from workers.hashing import HashCache, HashStats
from workers.prune import QUARANTINE_DIR
from workers.schema import FileEntry, HostFacts, InventoryReport, ModelDirState, wire_path
from workers.state import StateDB

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: a FIFO that replaced a file between scandir and open must not hang the walk.
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC

ProgressCallback = Callable[[int], None]


class Entry(NamedTuple):
    """One file as the walk found it: the fields of ``schema.FileEntry``, without validation.

    A rescan makes one per file, and a validated pydantic model cost more than the lstat
    that found the file; ``inventory_report`` validates them all at once, in pydantic's core.
    """

    path: str
    size: int
    mtime_ns: int
    sha256: str | None
    known_to_aspose: bool = False
    is_symlink: bool = False


_FILES = TypeAdapter(list[FileEntry])
# Entry(...) goes through a Python-level __new__; the walk makes one per file.
_new = tuple.__new__
_NAME = attrgetter("name")


@dataclass
class Scan:
    facts: HostFacts
    files: list[Entry]
    stats: HashStats
    # Entries that could not be read (path: reason); the rest of the walk still counts.
    problems: list[str] = field(default_factory=list)


class _Progress:
    """tqdm on a terminal only (a worker's log must not fill with bars), plus an optional hook."""

    def __init__(self, hook: ProgressCallback | None, desc: str) -> None:
        self.hook = hook
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(desc=desc, unit="B", unit_scale=True, unit_divisor=1024, leave=False)

    def __call__(self, nbytes: int) -> None:
        if self.bar is not None:
            self.bar.update(nbytes)
        if self.hook is not None:
            self.hook(nbytes)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _walk(
    dir_fd: int,
    prefix: str,
    cache: HashCache,
    files: list[Entry],
    problems: list[str],
    seen_by_aspose: list[str] | None = None,
) -> None:
    # The hot loop of every inventory: one lstat per entry (scandir's, relative to the
    # directory fd), one cache query per folder, and a file is opened only when its hash is
    # not cached. Kept flat on purpose: every call per entry shows on a 100k-file rescan.
    # ``seen_by_aspose`` (root and first level only) collects what list_local() reads.
    # Names are os's str form (undecodable bytes as surrogateescape) for the os calls; what
    # leaves the walk (``prefix`` too) is the schema's wire form, which carries any byte name.
    dir_st = os.fstat(dir_fd)
    if seen_by_aspose is not None:
        seen_by_aspose.append(f"{prefix}:{dir_st.st_ino}:{dir_st.st_mtime_ns}:{dir_st.st_ctime_ns}")
    with os.scandir(dir_fd) as it:
        entries = sorted(it, key=_NAME)
    found = []
    for entry in entries:
        name = entry.name
        if not prefix and name == QUARANTINE_DIR:
            continue
        try:
            found.append((name, entry.stat(follow_symlinks=False)))
        except FileNotFoundError:
            continue  # removed while we walked
    del entries
    # One query for the folder's files; regular files share the folder's device.
    known = cache.cached_many(dir_st.st_dev, [st.st_ino for _, st in found if S_ISREG(st.st_mode)])
    append = files.append
    hits = 0
    for name, st in found:
        mode = st.st_mode
        rel = prefix + wire_path(name)
        if S_ISREG(mode):
            # Same test as HashCache.cached, inlined: (size, mtime, ctime) of the same inode.
            row = known.get(st.st_ino)
            if (
                row is not None
                and row[1] == st.st_size
                and row[2] == st.st_mtime_ns
                and row[3] == st.st_ctime_ns
            ):
                hits += 1
                append(_new(Entry, (rel, st.st_size, st.st_mtime_ns, row[4], False, False)))
            else:
                append(_file_entry(dir_fd, name, rel, st, cache, problems))
        elif S_ISLNK(mode):
            append(Entry(rel, st.st_size, st.st_mtime_ns, None, False, True))
            if seen_by_aspose is not None:  # Aspose follows links: what they point at counts too
                seen_by_aspose.append(f"{rel}->{_target(dir_fd, name)}")
        elif S_ISDIR(mode):
            try:
                sub = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
            except OSError as exc:
                problems.append(f"{rel}: {exc.strerror}")
                continue
            try:
                _walk(sub, f"{rel}/", cache, files, problems, seen_by_aspose if not prefix else None)
            except OSError as exc:
                problems.append(f"{rel}: {exc.strerror}")
            finally:
                os.close(sub)
    cache.stats.cache_hits += hits


def _target(dir_fd: int, name: str) -> str:
    try:
        st = os.stat(name, dir_fd=dir_fd)
    except OSError:
        return "missing"
    return f"{st.st_mode:o}:{st.st_ino}:{st.st_mtime_ns}:{st.st_ctime_ns}"


def _aspose_listing(session: AsposeSession, db: StateDB, seen: list[str]) -> list[str]:
    """``session.list_local()``, or its last answer if nothing it reads changed since.

    list_local() reads the names in the model folder and in its first-level folders (it
    lists an empty file under the right name, and never looks deeper), and on a 10k-file
    folder it costs as much as the rest of a rescan. Its answer is kept with a signature of
    those folders (inode, mtime and ctime, which change with every name added, removed or
    renamed in them; and what each symlink there points at) and the Aspose version.
    """
    signature = hashlib.sha256("\n".join([aspose_version(), *seen]).encode()).hexdigest()
    model_dir = str(session.get_local_path())
    listing = db.aspose_listing(model_dir, signature)
    if listing is None:
        listing = session.list_local()
        db.store_aspose_listing(model_dir, signature, listing)
    return listing


def _file_entry(
    dir_fd: int, name: str, rel: str, st: os.stat_result, cache: HashCache, problems: list[str]
) -> Entry:
    sha256 = None
    try:
        fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        problems.append(f"{rel}: {exc.strerror}")
    else:
        try:
            fst = os.fstat(fd)
            if S_ISREG(fst.st_mode):
                st = fst  # describe the file we hashed, not the directory entry seen a moment ago
                sha256 = cache.sha256_fd(fd, fst)
        except OSError as exc:
            problems.append(f"{rel}: {exc.strerror}")
        finally:
            os.close(fd)
    return Entry(rel, st.st_size, st.st_mtime_ns, sha256)


def _mark_known(files: list[Entry], known: set[str]) -> None:
    """Flag the entries Aspose would load (a handful: looked up, not compared with every file)."""
    if not known:
        return
    for i, entry in enumerate(files):
        # Aspose follows a symlinked folder; deleting that link would hide the model from it.
        if entry.path in known or (entry.is_symlink and any(k.startswith(entry.path + "/") for k in known)):
            files[i] = entry._replace(known_to_aspose=True)


def scan(session: AsposeSession, db: StateDB, *, progress: ProgressCallback | None = None) -> Scan:
    """Walk the session's model folder, hash what changed, and join with Aspose's list_local()."""
    root = session.get_local_path()
    state, error = ModelDirState.OK, ""
    files: list[Entry] = []
    problems: list[str] = []
    seen_by_aspose: list[str] = []
    cache = HashCache(db, progress=None)
    try:
        root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        state, error = ModelDirState.MISSING, f"model folder does not exist: {wire_path(str(root))}"
    except OSError as exc:
        state, error = (
            ModelDirState.UNREADABLE,
            f"model folder cannot be opened: {wire_path(str(root))}: {exc.strerror}",
        )
    else:
        bar = _Progress(progress, desc="hashing models")
        cache.progress = bar
        try:
            _walk(root_fd, "", cache, files, problems, seen_by_aspose)
        except OSError as exc:
            state, error = (
                ModelDirState.UNREADABLE,
                f"model folder cannot be read: {wire_path(str(root))}: {exc.strerror}",
            )
        finally:
            cache.flush()  # what was hashed counts even if the walk failed half-way
            bar.close()
            os.close(root_fd)
    if state is ModelDirState.OK:
        try:
            _mark_known(files, {wire_path(k) for k in _aspose_listing(session, db, seen_by_aspose)})
        except ModelDirNotFound:
            state, error = (
                ModelDirState.MISSING,
                f"model folder vanished during the scan: {wire_path(str(root))}",
            )
        if problems:
            error = "; ".join(problems)[:2000]
    return Scan(facts=host_facts(root, state, error), files=files, stats=cache.stats, problems=problems)


def host_facts(root: Path, state: ModelDirState, error: str = "") -> HostFacts:
    total = free = None
    if state is ModelDirState.OK:
        usage = shutil.disk_usage(root)
        total, free = usage.total, usage.free
    return HostFacts(
        hostname=socket.gethostname(),
        model_dir=wire_path(str(root)),
        model_dir_state=state,
        model_dir_error=error,
        disk_total=total,
        disk_free=free,
        aspose_version=aspose_version(),
        agent_version=__version__,
    )


def inventory_report(host: str, scan_result: Scan, request_id: str | None = None) -> InventoryReport:
    return InventoryReport(
        host=host,
        request_id=request_id,
        agent_version=__version__,
        facts=scan_result.facts,
        files=file_entries(scan_result.files),
    )


def file_entries(entries: list[Entry]) -> list[FileEntry]:
    """The walk's entries as schema objects, validated in one call."""
    fields = Entry._fields
    return _FILES.validate_python([dict(zip(fields, e, strict=True)) for e in entries])
