"""What is in the model folder: the walk (the truth about files) joined with Aspose's list_local().

The walk never follows a symlink: a link is reported as such (without a hash), so a link to
``/etc`` or to another disk can neither inflate the inventory nor be read by the agent. The
walk goes through directory file descriptors, so a folder swapped for a symlink while we walk
is met as a symlink (O_NOFOLLOW), not followed.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

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


@dataclass
class Scan:
    facts: HostFacts
    files: list[FileEntry]
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


def _walk(dir_fd: int, prefix: str, cache: HashCache, files: list[FileEntry], problems: list[str]) -> None:
    # Names are os's str form (undecodable bytes as surrogateescape); what leaves the walk is
    # the schema's wire form, which carries any byte name losslessly.
    with os.scandir(dir_fd) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        rel = f"{prefix}{entry.name}"
        if not prefix and entry.name == QUARANTINE_DIR:
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue  # removed while we walked
        if stat.S_ISLNK(st.st_mode):
            files.append(
                FileEntry(
                    path=wire_path(rel),
                    size=st.st_size,
                    mtime_ns=st.st_mtime_ns,
                    sha256=None,
                    is_symlink=True,
                )
            )
        elif stat.S_ISDIR(st.st_mode):
            try:
                sub = os.open(entry.name, _DIR_FLAGS, dir_fd=dir_fd)
            except OSError as exc:
                problems.append(f"{wire_path(rel)}: {exc.strerror}")
                continue
            try:
                _walk(sub, f"{rel}/", cache, files, problems)
            except OSError as exc:
                problems.append(f"{wire_path(rel)}: {exc.strerror}")
            finally:
                os.close(sub)
        elif stat.S_ISREG(st.st_mode):
            files.append(_file_entry(dir_fd, entry.name, rel, st, cache, problems))


def _file_entry(
    dir_fd: int, name: str, rel: str, st: os.stat_result, cache: HashCache, problems: list[str]
) -> FileEntry:
    sha256 = None
    try:
        fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        problems.append(f"{wire_path(rel)}: {exc.strerror}")
    else:
        try:
            fst = os.fstat(fd)
            if stat.S_ISREG(fst.st_mode):
                st = fst  # describe the file we hashed, not the directory entry seen a moment ago
                sha256 = cache.sha256_fd(fd)
        except OSError as exc:
            problems.append(f"{wire_path(rel)}: {exc.strerror}")
        finally:
            os.close(fd)
    return FileEntry(path=wire_path(rel), size=st.st_size, mtime_ns=st.st_mtime_ns, sha256=sha256)


def _mark_known(files: list[FileEntry], known: set[str]) -> list[FileEntry]:
    def is_known(entry: FileEntry) -> bool:
        if entry.path in known:
            return True
        # Aspose follows a symlinked folder; deleting that link would hide the model from it.
        return entry.is_symlink and any(k.startswith(entry.path + "/") for k in known)

    return [e.model_copy(update={"known_to_aspose": True}) if is_known(e) else e for e in files]


def scan(session: AsposeSession, db: StateDB, *, progress: ProgressCallback | None = None) -> Scan:
    """Walk the session's model folder, hash what changed, and join with Aspose's list_local()."""
    root = session.get_local_path()
    state, error = ModelDirState.OK, ""
    files: list[FileEntry] = []
    problems: list[str] = []
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
            _walk(root_fd, "", cache, files, problems)
        except OSError as exc:
            state, error = (
                ModelDirState.UNREADABLE,
                f"model folder cannot be read: {wire_path(str(root))}: {exc.strerror}",
            )
        finally:
            bar.close()
            os.close(root_fd)
    if state is ModelDirState.OK:
        try:
            files = _mark_known(files, {wire_path(k) for k in session.list_local()})
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
        files=scan_result.files,
    )
