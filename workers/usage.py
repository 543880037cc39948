"""When a model file was last used: its atime, how far its mount lets us trust that, and who holds it now.

Three sources, each with its own trust, because none is enough alone:

* **atime** from the walk's stat. Worth only what the mount records: ``noatime`` never
  updates it, ``relatime`` (Linux's default) at most once a day, ``strictatime`` on every
  read. ``atime_mode`` reads the mount's options from ``/proc/self/mountinfo``.
* **Open now**: who holds a file under a store root, by an open descriptor
  (``/proc/<pid>/fd``) or a memory map (``/proc/<pid>/maps``: GGUF loaders mmap the model and
  close the descriptor). An inventory asks the kernel first: a write lease on a file is
  granted only while nobody else has it open or mapped, in any process or namespace, so a
  few dozen models cost a few dozen lease tests, and /proc is read only when some file is
  held, and then only until each held file has a holder named. Without the file list (or for
  a store with many more files than processes) one pass reads every process.
* **Last seen open**: each look's sightings are kept in the agent's state database, so an
  inventory can say "last seen in use 3 days ago by python3" about a file nobody holds now.

The look matches by path: the kernel names an open file by its current path (renames
included), and a path under a store's root maps straight back to (store, relative path)
without walking the store, which keeps the heartbeat's look cheap. A process in another
mount namespace sees other paths and is not matched; ``workers.prune`` checks by inode
before it moves anything, so this look is never the safety check, only the record.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from workers import procs
from workers.prune import QUARANTINE_DIR
from workers.schema import AtimeMode, Holder, Store, fs_path, wire_path
from workers.state import StateDB

MOUNTINFO = "/proc/self/mountinfo"
_MAX_HOLDERS = 16


# ---------------------------------------------------------------- mount atime mode


@dataclass(frozen=True)
class Mount:
    mount_point: str
    options: frozenset[str]
    fstype: str

    @property
    def atime_mode(self) -> AtimeMode:
        # The kernel prints "noatime" or "relatime" among the per-mount options, and nothing
        # for strictatime (the absence of both is strictatime).
        if "noatime" in self.options:
            return AtimeMode.NOATIME
        if "relatime" in self.options:
            return AtimeMode.RELATIME
        return AtimeMode.STRICTATIME


def _unescape(field_: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \\ooo octal.
    out, i = [], 0
    while i < len(field_):
        if field_[i] == "\\" and i + 4 <= len(field_) and field_[i + 1 : i + 4].isdigit():
            out.append(chr(int(field_[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field_[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> list[Mount]:
    """The mounts of a mountinfo text, in file order (a later mount on the same point covers an earlier)."""
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        try:
            sep = fields.index("-", 6)
        except ValueError:
            continue  # not a mountinfo line
        mounts.append(
            Mount(
                mount_point=_unescape(fields[4]),
                options=frozenset(fields[5].split(",")),
                fstype=fields[sep + 1] if len(fields) > sep + 1 else "",
            )
        )
    return mounts


def mount_of(path: str | Path, mounts: Iterable[Mount]) -> Mount | None:
    """The mount a path lives on: the longest mount point that is a folder prefix of its real path."""
    real = os.path.realpath(path)
    best: Mount | None = None
    for mount in mounts:
        point = mount.mount_point.rstrip("/") or "/"
        inside = point == "/" or real == point or real.startswith(point + "/")
        # ">=": of two mounts on the same point, the later one is on top.
        if inside and (best is None or len(point) >= len(best.mount_point.rstrip("/") or "/")):
            best = mount
    return best


def atime_mode(path: str | Path, mountinfo: str | None = None) -> tuple[AtimeMode, str]:
    """(how the mount of ``path`` records atime, its mount point); UNKNOWN if it cannot be told."""
    if mountinfo is None:
        try:
            mountinfo = Path(MOUNTINFO).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return AtimeMode.UNKNOWN, ""
    mount = mount_of(path, parse_mountinfo(mountinfo))
    if mount is None:
        return AtimeMode.UNKNOWN, ""
    return mount.atime_mode, mount.mount_point


# ---------------------------------------------------------------- who holds model files now


@dataclass
class Look:
    """One pass through /proc: the holders of files under the store roots."""

    at: datetime
    holders: dict[tuple[Store, str], list[Holder]] = field(default_factory=dict)
    processes: int = 0
    error: str = ""
    # How the look went: "proc" (every process read), "lease" (the kernel said nobody holds
    # any of the files: /proc not read), "lease+proc" (/proc read for the files held).
    method: str = "proc"
    # Files the kernel says are held but whose holder no readable process showed (another
    # user's process, another PID namespace): in use, by someone the agent cannot name.
    held_unnamed: set[tuple[Store, str]] = field(default_factory=set)


def _relative(path: str, roots: list[tuple[str, Store]]) -> tuple[Store, str] | None:
    """(store, wire-form relative path) of a path under one of the roots, else None."""
    for root, store in roots:
        if path.startswith(root):
            rel = path[len(root) :]
            if rel and not rel.startswith(QUARANTINE_DIR + "/") and rel != QUARANTINE_DIR:
                return store, wire_path(rel)
    return None


# The lease test costs one open and three fcntl calls per file; reading a process's fd links
# and maps costs tens of times that. Below this many files per process the files are asked
# first; above it (a store of 10,000 small files on a quiet host) one pass over /proc is cheaper.
LEASE_FILES_PER_PROCESS = 10
# Opening reads nothing, so atime stays; O_NONBLOCK: a FIFO planted there must not hang the look.
_LEASE_OPEN = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def _held_by_anyone(
    roots: Mapping[Store, str], files: Mapping[Store, list[str]]
) -> tuple[set[tuple[Store, str]], set[tuple[Store, str]]]:
    """(files some process holds, files the kernel cannot tell about), by (store, wire path).

    A write lease is granted only while no other open file of the inode exists anywhere (a
    memory map keeps its file open), so each file costs one open and a lease taken and
    given back (``procs.nobody_else_has_open``), whatever the number of processes.
    """
    held: set[tuple[Store, str]] = set()
    unknown: set[tuple[Store, str]] = set()
    for store, paths in files.items():
        root = roots[store]
        for wire in paths:
            key = (store, wire)
            try:
                fd = os.open(os.path.join(root, fs_path(wire)), _LEASE_OPEN)
            except PermissionError:
                unknown.add(key)  # not ours to open: the kernel cannot be asked about it
                continue
            except BlockingIOError:
                held.add(key)  # someone else holds a lease on it: held
                continue
            except (OSError, ValueError):
                continue  # gone since the walk (or a link now): nobody holds it under this name
            try:
                alone = procs.nobody_else_has_open(fd)
            finally:
                os.close(fd)
            if alone is False:
                held.add(key)
            elif alone is None:
                unknown.add(key)
    return held, unknown


def look(
    roots: Mapping[Store, str | Path],
    proc: str = "/proc",
    files: Mapping[Store, Iterable[str]] | None = None,
) -> Look:
    """Every process (but this one) holding a file under one of ``roots``; see the module docstring.

    ``files`` (the regular files of each store, wire form) lets the kernel answer first: when
    the lease test says nobody holds any of them, /proc is not read at all; otherwise /proc is
    read only until every held file has a holder named (descriptors of every process first,
    then maps for the files no descriptor showed). A file then lists the holders found first,
    not necessarily all. Without ``files``, or with more files than the lease test is worth,
    every process is read: all holders, the files found by path.
    """
    now = datetime.now(UTC)
    real_roots = {s: os.path.realpath(r) for s, r in roots.items()}
    prefixes = sorted(
        ((r.rstrip("/") + "/", s) for s, r in real_roots.items()),
        key=lambda p: -len(p[0]),  # nested roots: the deeper one wins
    )
    result = Look(at=now)
    try:
        pids = [p for p in os.listdir(proc) if p.isdigit()]
    except OSError as exc:
        result.error = f"cannot list {proc}: {exc.strerror}"
        return result
    wanted: set[tuple[Store, str]] | None = None
    if files is not None:
        lists = {s: list(paths) for s, paths in files.items() if s in real_roots}
        if sum(len(p) for p in lists.values()) <= LEASE_FILES_PER_PROCESS * len(pids):
            held, unknown = _held_by_anyone(real_roots, lists)
            if not held and not unknown:
                result.method = "lease"
                return result
            result.method = "lease+proc"
            wanted = held | unknown
            # Files the lease could not judge need every process read; held ones only a holder.
            must_finish = bool(unknown)
            _scan(proc, pids, prefixes, result, wanted, must_finish)
            result.held_unnamed = held - set(result.holders)
            return result
    _scan(proc, pids, prefixes, result, None, True)
    return result


def _scan(
    proc: str,
    pids: list[str],
    prefixes: list[tuple[str, Store]],
    result: Look,
    wanted: set[tuple[Store, str]] | None,
    must_finish: bool,
) -> None:
    """Read processes' fd links (and maps) into ``result.holders``; see ``look``.

    ``wanted`` None: every file under the roots, every process, descriptors and maps. Else
    only those files, and (unless ``must_finish``) stop as soon as each has a holder named:
    descriptors of every process first, fewest descriptors first, then maps for the files
    still unnamed.
    """
    me = str(os.getpid())
    str_prefixes = tuple(p for p, _ in prefixes)
    byte_prefixes = [p.encode() for p in str_prefixes]
    unnamed = set(wanted) if wanted is not None else None
    programs: dict[str, str] = {}

    def add(pid: str, key: tuple[Store, str], how: Literal["fd", "mmap"]) -> None:
        if wanted is not None and key not in wanted:
            return
        holders = result.holders.setdefault(key, [])
        if len(holders) < _MAX_HOLDERS and not any(h.pid == int(pid) for h in holders):
            if pid not in programs:
                programs[pid] = wire_path(_comm(proc, pid))
            holders.append(Holder(pid=int(pid), program=programs[pid], how=how))
        if unnamed is not None:
            unnamed.discard(key)

    def done() -> bool:
        return unnamed is not None and not unnamed and not must_finish

    early_stop = wanted is not None and not must_finish
    # Pass 1: descriptors (and, for a full look, maps in the same visit).
    for pid, count in _fewest_descriptors_first(proc, pids) if early_stop else ((p, None) for p in pids):
        if pid == me:
            continue
        if done():
            return
        result.processes += 1
        if count == 0:
            continue  # the kernel says it holds no descriptor (a kernel thread, a zombie)
        for target in _fd_targets(f"{proc}/{pid}/fd"):
            # One C call rules out sockets, pipes and files outside every root.
            if target.startswith(str_prefixes) and (key := _relative(target, prefixes)) is not None:
                add(pid, key, "fd")
        if wanted is None:
            _maps(proc, pid, prefixes, byte_prefixes, add)
    if wanted is None or done():
        return
    # Pass 2: maps, for the files no descriptor showed (a loader that mapped and closed).
    for pid in pids:
        if pid == me:
            continue
        if done():
            return
        _maps(proc, pid, prefixes, byte_prefixes, add)


def _fewest_descriptors_first(proc: str, pids: list[str]) -> list[tuple[str, int | None]]:
    """``pids`` with their count of open descriptors, fewest first; None where it is not known.

    A look that stops once every held file is named costs the descriptors it reads: a
    database server's hundreds of descriptors are read only if the processes holding few
    have not named every file yet. The count is one stat: Linux (6.2 on) gives the number
    of open descriptors as the size of ``/proc/<pid>/fd``. Older kernels give 0 for every
    process, so a 0 is believed only when some other process shows a count; otherwise every
    count is None and the order is /proc's own.
    """
    sized: list[tuple[str, int | None]] = []
    for pid in pids:
        try:
            sized.append((pid, os.stat(f"{proc}/{pid}/fd").st_size))
        except OSError:
            sized.append((pid, None))  # gone (or not ours): reading it will say so, at no cost
    if not any(size for _, size in sized):
        return [(pid, None) for pid in pids]
    sized.sort(key=lambda item: item[1] or 0)  # stable: /proc's order among equals
    return sized


def _fd_targets(fd_dir: str) -> list[str]:
    """The link targets of a process's descriptors; [] if it is gone or not ours to see.

    Each link is read relative to the folder's descriptor, so the kernel does not walk
    ``/proc/<pid>/fd`` again for every descriptor.
    """
    try:
        dir_fd = os.open(fd_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return []  # gone, or another user's without CAP_SYS_PTRACE
    targets = []
    try:
        for fd in os.listdir(dir_fd):
            try:
                targets.append(os.readlink(fd, dir_fd=dir_fd))
            except OSError:
                continue  # closed meanwhile
    except OSError:
        return []
    finally:
        os.close(dir_fd)
    return targets


def _maps(
    proc: str,
    pid: str,
    prefixes: list[tuple[str, Store]],
    byte_prefixes: list[bytes],
    add: Callable[[str, tuple[Store, str], Literal["fd", "mmap"]], None],
) -> None:
    """The mapped files of ``pid`` under the roots: maps read once, only the lines naming a root parsed.

    A maps line ends with the path, which starts at the line's first "/" (the fields before
    it hold none); so each occurrence of a root is taken back to its line's start and the
    line parsed, and the search goes on after that line.
    """
    data = _read(f"{proc}/{pid}/maps")
    if not data:
        return
    seen: set[int] = set()  # line starts already parsed (nested roots find a line twice)
    for raw in byte_prefixes:
        at = data.find(raw)
        while at != -1:
            start = data.rfind(b"\n", 0, at) + 1
            end = data.find(b"\n", at)
            if end == -1:
                end = len(data)
            if start not in seen:
                seen.add(start)
                fields = data[start:end].split(maxsplit=5)
                if len(fields) == 6:
                    path = fields[5].decode("utf-8", "surrogateescape")
                    if not path.endswith(" (deleted)") and (key := _relative(path, prefixes)):
                        add(pid, key, "mmap")
            at = data.find(raw, end)


def _comm(proc: str, pid: str) -> str:
    data = _read(f"{proc}/{pid}/comm")
    return (data or b"").decode("utf-8", "replace").strip()[:64] or "?"


def _read(path: str) -> bytes | None:
    """A /proc file's bytes, None if it cannot be read.

    Plain ``os.read`` calls: a Python file object costs several times the syscalls' own time
    for a file of a few bytes, and the look reads one per holder and one per process.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)


def record(db: StateDB, result: Look) -> None:
    """Keep this look's sightings as each file's "last seen open" (the agent's state database)."""
    if result.error or not result.holders:
        return
    at = result.at.timestamp()
    db.record_uses(
        (store.value, path, at, holders[0].label()) for (store, path), holders in result.holders.items()
    )


def last_seen(db: StateDB) -> dict[tuple[Store, str], tuple[datetime, str]]:
    """(store, path) -> (when it was last seen held, by whom), over every look kept."""
    out = {}
    for store, path, at, who in db.uses():
        try:
            out[(Store(store), path)] = (datetime.fromtimestamp(at, UTC), who)
        except ValueError:
            continue  # a store this agent version does not know
    return out
