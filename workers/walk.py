"""The one walk of a folder tree: ``os.fwalk`` under a directory descriptor, links never followed.

The inventory, the quarantine listing of a restore and the purge's count of what it frees all
walk a tree that someone else can change while we walk it. So the walk works through
directory descriptors (``os.fwalk``: every folder is opened relative to its parent's
descriptor, and a folder is entered only if what was opened is what ``lstat`` saw, so a
folder swapped for a symlink is not entered) and never follows a symlink: a symlink, to a
folder or anything else, is reported as an entry with its own ``lstat``, and fwalk is not
even asked to open it. A loop of links is therefore never walked, and a link to ``/etc``
is a link, not a way out of the root.

Per folder the walk yields its path relative to the root (in ``os``'s str form: undecodable
bytes as surrogateescape, as fwalk gives them), its descriptor (valid until the next step),
and its non-folder entries with their ``lstat``, sorted by name; the folders below follow in
name order, depth first. An entry or folder that vanishes meanwhile is left out, as if the
walk had come a moment later. A folder that cannot be opened or read is either raised (the
default) or, with ``problems``, recorded as ``"relative/path: reason"`` and skipped.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Collection, Iterator
from stat import S_ISDIR
from typing import NamedTuple


class Folder(NamedTuple):
    path: str  # relative to the root, "" for the root itself, no trailing "/"
    fd: int  # the folder's descriptor: valid only until the walk takes its next step
    entries: list[tuple[str, os.stat_result]]  # everything but folders (links included), by name
    depth: int  # 0 for the root, 1 for its folders, ...


def _rel(dirpath: str) -> str:
    # fwalk joins onto top=".": "." is the root, "./a/b" is a/b.
    return "" if dirpath == "." else dirpath[2:]


def walk(
    root_fd: int, *, skip_top: Collection[str] = (), problems: list[str] | None = None
) -> Iterator[Folder]:
    """Walk the tree under the open folder ``root_fd``; see the module docstring.

    ``skip_top``: names left out at the root, whatever they are (the quarantine folder).
    ``problems``: where to record folders that could not be read; None raises the OSError.
    """
    # The folders fwalk is about to try, per open level: fwalk's onerror names only the
    # entry, so a failure is matched to the next pending folder of that name.
    pending: list[deque[str]] = []
    started = False

    def failed(exc: OSError) -> None:
        if not started:
            raise exc  # the root itself cannot be read: that is the caller's failure, not an entry's
        name = exc.filename if isinstance(exc.filename, str) else ""
        rel = name
        while pending:
            if not pending[-1]:
                pending.pop()
                continue
            candidate = pending[-1].popleft()
            if candidate.rsplit("/", 1)[-1] == name:
                rel = candidate
                break
        if isinstance(exc, FileNotFoundError):
            return  # removed while we walked
        if problems is None:
            raise exc
        problems.append(f"{rel}: {exc.strerror}")

    for dirpath, dirnames, filenames, fd in os.fwalk(".", dir_fd=root_fd, onerror=failed):
        started = True
        rel = _rel(dirpath)
        # Sync with fwalk: folders it skipped silently (swapped for something else after our
        # lstat) are dropped from the pending lists on the way to this one.
        while pending:
            if not pending[-1]:
                pending.pop()
                continue
            if pending[-1].popleft() == rel:
                break
        depth = rel.count("/") + 1 if rel else 0
        if depth == 0 and skip_top:
            dirnames[:] = [d for d in dirnames if d not in skip_top]
            filenames = [f for f in filenames if f not in skip_top]
        entries = []
        folders = []
        for name in dirnames:
            # fwalk put links to folders among the folders; take them out before it opens them.
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                continue  # removed while we walked
            except OSError as exc:
                if problems is None:
                    raise
                problems.append(f"{_join(rel, name)}: {exc.strerror}")
                continue
            if S_ISDIR(st.st_mode):
                folders.append(name)
            else:
                entries.append((name, st))
        for name in filenames:
            try:
                entries.append((name, os.stat(name, dir_fd=fd, follow_symlinks=False)))
            except FileNotFoundError:
                continue  # removed while we walked
            except OSError as exc:
                if problems is None:
                    raise
                problems.append(f"{_join(rel, name)}: {exc.strerror}")
        folders.sort()
        dirnames[:] = folders
        entries.sort()  # by name: two entries of a folder never share one, so no stat is compared
        pending.append(deque(_join(rel, name) for name in folders))
        yield Folder(rel, fd, entries, depth)


def _join(rel: str, name: str) -> str:
    return f"{rel}/{name}" if rel else name
