"""When a model file was last used: its atime, how far its mount lets us trust that, and who holds it now.

Three sources, each with its own trust, because none is enough alone:

* **atime** from the walk's stat. Worth only what the mount records: ``noatime`` never
  updates it, ``relatime`` (Linux's default) at most once a day, ``strictatime`` on every
  read. ``atime_mode`` reads the mount's options from ``/proc/self/mountinfo``.
* **Open now**: one look through ``/proc`` for processes that hold a file under a store root,
  by an open descriptor (``/proc/<pid>/fd``) or a memory map (``/proc/<pid>/maps``: GGUF
  loaders mmap the model and close the descriptor). One pass over every process per look,
  whatever the number of files, so an inventory of 50 or 50,000 files costs the same.
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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from workers.prune import QUARANTINE_DIR
from workers.schema import AtimeMode, Holder, Store, wire_path
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


def _relative(path: str, roots: list[tuple[str, Store]]) -> tuple[Store, str] | None:
    """(store, wire-form relative path) of a path under one of the roots, else None."""
    for root, store in roots:
        if path.startswith(root):
            rel = path[len(root) :]
            if rel and not rel.startswith(QUARANTINE_DIR + "/") and rel != QUARANTINE_DIR:
                return store, wire_path(rel)
    return None


def look(roots: Mapping[Store, str | Path], proc: str = "/proc") -> Look:
    """Every process (but this one) holding a file under one of ``roots``, in one pass.

    Per process: the names of its descriptors (``readlink`` of each ``fd`` entry) and its
    ``maps`` read once as bytes; a maps file is parsed only if it mentions a root at all, so
    the cost is one read per process plus one substring search per root.
    """
    now = datetime.now(UTC)
    prefixes = sorted(
        ((os.path.realpath(r).rstrip("/") + "/", s) for s, r in roots.items()),
        key=lambda p: -len(p[0]),  # nested roots: the deeper one wins
    )
    result = Look(at=now)
    try:
        pids = [p for p in os.listdir(proc) if p.isdigit()]
    except OSError as exc:
        result.error = f"cannot list {proc}: {exc.strerror}"
        return result
    me = str(os.getpid())
    byte_prefixes = [(p.encode(), p, s) for p, s in prefixes]
    for pid in pids:
        if pid == me:
            continue
        result.processes += 1
        found: dict[tuple[Store, str], Literal["fd", "mmap"]] = {}
        fd_dir = f"{proc}/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            fds = []  # gone, or not ours to see (another user without CAP_SYS_PTRACE)
        for fd in fds:
            try:
                target = os.readlink(f"{fd_dir}/{fd}")
            except OSError:
                continue
            if target.startswith("/") and (key := _relative(target, prefixes)) is not None:
                found.setdefault(key, "fd")
        try:
            with open(f"{proc}/{pid}/maps", "rb") as maps:
                data = maps.read()
        except OSError:
            data = b""
        for raw, _, _ in byte_prefixes:
            if raw in data:
                for line in data.splitlines():
                    if raw in line:
                        path = line.split(maxsplit=5)[-1].decode("utf-8", "surrogateescape")
                        if not path.endswith(" (deleted)") and (key := _relative(path, prefixes)):
                            found.setdefault(key, "mmap")
                break  # every line was checked against every root already
        if found:
            program = wire_path(_comm(proc, pid))
            for key, how in found.items():
                holders = result.holders.setdefault(key, [])
                if len(holders) < _MAX_HOLDERS:
                    holders.append(Holder(pid=int(pid), program=program, how=how))
    return result


def _comm(proc: str, pid: str) -> str:
    try:
        with open(f"{proc}/{pid}/comm", encoding="utf-8", errors="replace") as comm:
            return comm.read().strip()[:64] or "?"
    except OSError:
        return "?"


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
