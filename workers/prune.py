"""Safe removal of model files: the one place that turns a relative path from an order into a file.

An order names a file by identity (relative path, size, mtime_ns, sha256). Between the
approver's look and this code, anything may have happened to that path: the file replaced,
a folder on the way swapped for a symlink to ``/etc``, a hard link planted to a system file.
So nothing here resolves a path as a string. Every component is opened relative to the
previous directory's file descriptor with O_NOFOLLOW, the file itself is opened with
O_NOFOLLOW and checked through its descriptor (fstat, hash of the descriptor's bytes), and
the move names source and target by directory descriptors (renameat2 with RENAME_NOREPLACE),
so no symlink swapped in after a check can redirect it. After the move we check that what
landed in quarantine is the inode we checked; if a swap got in between, it is moved back.

Default mode is quarantine: ``<root>/.ocrdash-quarantine/<request-id>/<relative path>``,
restorable, purged after the retention period. Delete mode goes through the same move and
then unlinks from quarantine, so the unlink can only ever hit the inode that was checked.
Every item's outcome is recorded per request id; a redelivered order reports the recorded
outcomes and touches nothing.

A host has two stores (``Store``: AsposeAI's LLM folder and the OCR engine's resources
folder). Each is a root of its own with its own quarantine inside it (same file system, so a
move is a rename), and every rule above applies to both alike: ``prune_stores``,
``restore_stores`` and ``purge_stores`` only send each item to its store's root. Outcomes are
recorded per store (``record_kind``), so the same relative path in both stores never shares
a record.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import shutil
import stat
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import ExitStack, contextmanager, suppress
from enum import StrEnum
from pathlib import Path

from workers import procs
from workers.hashing import HashCache
from workers.schema import (
    FileIdentity,
    ItemOutcome,
    KeptQuarantine,
    MissingFile,
    Outcome,
    PruneMode,
    PurgedRequest,
    Store,
    fs_path,
    wire_path,
)
from workers.state import StateDB
from workers.walk import walk

QUARANTINE_DIR = ".ocrdash-quarantine"
REQUEST_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO planted in place of a model must not hang the agent.
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_RENAME_NOREPLACE = 1


# Each store's root; None for a store this host or command does not have.
StoreRoots = Mapping[Store, Path | None]
STORE_LABELS = {Store.LLM: "model folder", Store.OCR: "OCR resources folder"}


def record_kind(kind: str, store: Store) -> str:
    """The state-database kind of a store's item records: the LLM store keeps the plain kind
    (records written before there were two stores stay valid), others get ``kind:store``."""
    return kind if store is Store.LLM else f"{kind}:{store.value}"


class _Stop(Exception):
    """Ends one item with an outcome (not a failure of the whole order)."""

    def __init__(self, outcome: Outcome, detail: str) -> None:
        super().__init__(detail)
        self.outcome = outcome
        self.detail = detail


def _refuse(detail: str) -> _Stop:
    return _Stop(Outcome.REFUSED, detail)


# The journal of a purge (item_outcomes, kind "purge" per store): one row per request folder
# and purge order, written before rmtree starts: request_id the folder, path the purge order's
# request id, detail the number of files, bytes what the folder held.
PURGE_KIND = "purge"
PURGING = "purging"


def check_request_id(request_id: str) -> str:
    """The request id becomes a folder name in quarantine: only plain names are accepted."""
    if not re.fullmatch(REQUEST_ID_PATTERN, request_id) or request_id in {".", ".."}:
        raise ValueError(f"request id {request_id!r} is not usable as a folder name")
    return request_id


def split_relpath(wire: str) -> list[str]:
    """The components of a path from an order, or _Stop(REFUSED) for anything but a plain relative path.

    ``wire`` is the schema's wire form; the components are os's str form of the real byte
    names (surrogateescape), ready for ``os`` calls relative to a directory descriptor.
    """
    try:
        path = fs_path(wire)
    except ValueError as exc:
        raise _refuse(f"path {exc}") from None
    if "\x00" in path:
        raise _refuse("path contains a NUL byte")
    if path.startswith("/"):
        raise _refuse("absolute path")
    parts = path.split("/")
    if ".." in parts:
        raise _refuse("path contains '..'")
    if any(p in {"", "."} for p in parts):
        raise _refuse("path is not in normal form (empty or '.' component)")
    if parts[0] == QUARANTINE_DIR:
        raise _refuse("path is inside the quarantine folder")
    return parts


# ---------------------------------------------------------------- descriptor helpers


def _open_dir(name: str, dir_fd: int) -> int:
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        raise _Stop(Outcome.SKIPPED_MISSING, f"folder '{wire_path(name)}' does not exist") from None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise _refuse(f"'{wire_path(name)}' on the path is a symlink or not a folder") from None
        raise


@contextmanager
def _dir_chain(root_fd: int, parts: Iterable[str], *, create: bool = False) -> Iterator[int]:
    """The descriptor of the folder ``parts`` under ``root_fd``, never through a symlink."""
    root_st = os.fstat(root_fd)
    with ExitStack() as stack:
        fd = root_fd
        for name in parts:
            if create:
                with suppress(FileExistsError):
                    os.mkdir(name, 0o700, dir_fd=fd)
            fd = _open_dir(name, fd)
            stack.callback(os.close, fd)
            if os.fstat(fd).st_dev != root_st.st_dev:
                raise _refuse(f"folder '{wire_path(name)}' is on another file system")
        yield fd


def _libc_renameat2():  # type: ignore[no-untyped-def]
    try:
        return ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None


_renameat2 = _libc_renameat2()


def rename_noreplace(src_dir_fd: int, src: str, dst_dir_fd: int, dst: str) -> None:
    """Move ``src`` to ``dst`` (both relative to directory descriptors); never overwrite ``dst``.

    Raises FileExistsError if ``dst`` exists and OSError(EXDEV) across file systems: a move
    that would need copy-then-delete is not done.
    """
    if _renameat2 is not None:
        if _renameat2(src_dir_fd, os.fsencode(src), dst_dir_fd, os.fsencode(dst), _RENAME_NOREPLACE) == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOSYS):
            raise OSError(err, os.strerror(err), src)
    # File system without RENAME_NOREPLACE: link() also refuses an existing target, atomically.
    os.link(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd, follow_symlinks=False)
    os.unlink(src, dir_fd=src_dir_fd)


# ---------------------------------------------------------------- prune


class InUseCheck(StrEnum):
    """What a prune does when some processes cannot be inspected (``OCRDASH_IN_USE_CHECK``)."""

    # Refuse every item while any process is hidden: "cannot tell" is not "not in use".
    STRICT = "strict"
    # Check the processes the agent can see and prune; for hosts where an admin knows the
    # hidden ones (other users' daemons) never touch the models.
    VISIBLE_ONLY = "visible-only"


# A look at /proc serves the items that follow it for this long: a prune of 10,000 small
# files reads /proc once, and a file opened while a large one was being hashed is still seen.
LOOK_MAX_AGE = 10.0


class Pruner:
    """Prunes the items of one request under ``root``; see the module docstring for the rules."""

    def __init__(
        self,
        root: Path,
        db: StateDB,
        cache: HashCache | None = None,
        in_use: InUseCheck = InUseCheck.STRICT,
        store: Store = Store.LLM,
    ) -> None:
        self.root = Path(root)
        self.db = db
        self.cache = cache or HashCache(db)
        self.in_use = in_use
        self.store = store
        self.kind = record_kind("prune", store)
        self._look: procs.OpenFiles | None = None

    def _open_files(self, dev: int) -> procs.OpenFiles:
        if self._look is None or self._look.age() > LOOK_MAX_AGE:
            self._look = procs.open_files(devices={dev})
        return self._look

    def _check_not_in_use(self, fd: int, st: os.stat_result) -> None:
        """Raise _Stop(SKIPPED_IN_USE) unless the file is known to be open nowhere else.

        /proc names the holders it can see; the kernel's lease test (procs.nobody_else_has_open)
        covers the processes /proc cannot show. Only if neither can vouch for the file and an
        admin chose visible-only does an unseen holder go unchecked.
        """
        look = self._open_files(st.st_dev)
        holders = look.holders(st.st_dev, st.st_ino)
        if holders:
            raise _Stop(Outcome.SKIPPED_IN_USE, "open in " + ", ".join(str(h) for h in holders[:10]))
        alone = procs.nobody_else_has_open(fd)
        if alone is False:
            raise _Stop(
                Outcome.SKIPPED_IN_USE,
                "open in a process the agent cannot inspect (the kernel refused a lease on it)",
            )
        if alone is None and not look.complete and self.in_use is InUseCheck.STRICT:
            raise _Stop(
                Outcome.SKIPPED_IN_USE,
                f"{look.hidden_reason()}, or set OCRDASH_IN_USE_CHECK={InUseCheck.VISIBLE_ONLY.value}",
            )

    def prune(
        self,
        request_id: str,
        items: list[FileIdentity],
        mode: PruneMode,
        on_item: Callable[[], None] | None = None,
    ) -> list[ItemOutcome]:
        """One outcome per item; ``on_item`` (progress) is called after each item is done."""
        check_request_id(request_id)
        self._look = None  # one look per prune, not one per Pruner
        recorded = self.db.item_outcomes(self.kind, request_id)
        outcomes = []
        try:
            root_fd: int | None = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            root_fd, root_error = None, f"model folder cannot be opened: {exc.strerror}"
        try:
            for item in items:
                if item.path in recorded:
                    outcome, detail, size = recorded[item.path]
                    outcomes.append(
                        ItemOutcome(
                            path=item.path,
                            outcome=Outcome(outcome),
                            detail=detail,
                            bytes_reclaimed=size,
                            store=self.store,
                        )
                    )
                    continue
                if root_fd is None:
                    result = ItemOutcome(
                        path=item.path, outcome=Outcome.ERROR, detail=root_error, store=self.store
                    )
                else:
                    result = self._one(root_fd, request_id, item, mode)
                self.db.record_item(
                    self.kind, request_id, item.path, result.outcome, result.detail, result.bytes_reclaimed
                )
                recorded[item.path] = (result.outcome, result.detail, result.bytes_reclaimed)
                outcomes.append(result)
                if on_item is not None:
                    on_item()
        finally:
            self.cache.flush()
            if root_fd is not None:
                os.close(root_fd)
        return outcomes

    def _one(self, root_fd: int, request_id: str, item: FileIdentity, mode: PruneMode) -> ItemOutcome:
        try:
            outcome, detail, size = self._checked_move(root_fd, request_id, item, mode)
        except _Stop as stop:
            outcome, detail, size = stop.outcome, stop.detail, 0
        except OSError as exc:
            outcome, detail, size = Outcome.ERROR, f"{exc.strerror or exc}", 0
        return ItemOutcome(
            path=item.path, outcome=outcome, detail=detail[:2000], bytes_reclaimed=size, store=self.store
        )

    def _checked_move(
        self, root_fd: int, request_id: str, item: FileIdentity, mode: PruneMode
    ) -> tuple[Outcome, str, int]:
        parts = split_relpath(item.path)
        *folders, name = parts
        quarantine = [QUARANTINE_DIR, request_id, *folders]
        with _dir_chain(root_fd, folders) as parent_fd:
            try:
                st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
            except FileNotFoundError:
                return self._already_moved(root_fd, quarantine, name, item, mode)
            if stat.S_ISLNK(st.st_mode):
                raise _refuse("the file is a symlink")
            if not stat.S_ISREG(st.st_mode):
                raise _refuse("not a regular file")
            try:
                fd = os.open(name, _FILE_FLAGS, dir_fd=parent_fd)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise _refuse("the file is a symlink") from None
                raise
            try:
                st = self._verify(fd, root_fd, item)
                self._check_not_in_use(fd, st)
                with _dir_chain(root_fd, quarantine, create=True) as q_fd:
                    self._move(parent_fd, q_fd, name, st)
                    if mode is PruneMode.DELETE:
                        os.unlink(name, dir_fd=q_fd)
                        return Outcome.DELETED, "", st.st_size
                    return Outcome.QUARANTINED, f"{QUARANTINE_DIR}/{request_id}/{item.path}", st.st_size
            finally:
                os.close(fd)

    def _verify(self, fd: int, root_fd: int, item: FileIdentity) -> os.stat_result:
        """fstat and hash the open file against the ordered identity."""
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _refuse("not a regular file")
        if st.st_dev != os.fstat(root_fd).st_dev:
            raise _refuse("the file is on another file system than the model folder")
        if st.st_nlink > 1:
            # Another name for the same bytes may live anywhere (even outside the root).
            raise _refuse(f"the file is hard-linked ({st.st_nlink} links)")
        if (st.st_size, st.st_mtime_ns) != (item.size, item.mtime_ns):
            raise _Stop(
                Outcome.SKIPPED_CHANGED,
                f"size/mtime now {st.st_size}/{st.st_mtime_ns}, ordered {item.size}/{item.mtime_ns}",
            )
        digest = self.cache.sha256_fd(fd)
        if digest is None:
            raise _Stop(Outcome.SKIPPED_CHANGED, "the file changed while it was being hashed")
        if digest != item.sha256:
            raise _Stop(Outcome.SKIPPED_CHANGED, "content differs from the ordered sha256")
        return st

    def _move(self, parent_fd: int, q_fd: int, name: str, st: os.stat_result) -> None:
        try:
            rename_noreplace(parent_fd, name, q_fd, name)
        except FileExistsError:
            raise _Stop(Outcome.ERROR, "the quarantine already holds a file at this path") from None
        except OSError as exc:
            if exc.errno == errno.EXDEV:
                raise _refuse("the move would cross file systems") from None
            raise
        moved = os.stat(name, dir_fd=q_fd, follow_symlinks=False)
        if (moved.st_dev, moved.st_ino) != (st.st_dev, st.st_ino):
            # The name was swapped between our checks and the rename: put the stranger back.
            try:
                rename_noreplace(q_fd, name, parent_fd, name)
            except OSError as exc:
                raise _Stop(
                    Outcome.ERROR, f"the file was replaced during the move and could not be put back: {exc}"
                ) from None
            raise _Stop(Outcome.SKIPPED_CHANGED, "the file was replaced during the move")

    def _already_moved(
        self, root_fd: int, quarantine: list[str], name: str, item: FileIdentity, mode: PruneMode
    ) -> tuple[Outcome, str, int]:
        """The original is gone: an interrupted earlier run of this request may have moved it."""
        try:
            with _dir_chain(root_fd, quarantine) as q_fd:
                fd = os.open(name, _FILE_FLAGS, dir_fd=q_fd)
                try:
                    self._verify(fd, root_fd, item)
                finally:
                    os.close(fd)
                if mode is PruneMode.DELETE:
                    os.unlink(name, dir_fd=q_fd)
                    return Outcome.DELETED, "", item.size
                return Outcome.QUARANTINED, f"{'/'.join(quarantine[:2])}/{item.path}", item.size
        except (_Stop, FileNotFoundError):
            return Outcome.SKIPPED_MISSING, "the file no longer exists", 0


# ---------------------------------------------------------------- accounting (no move)


def _exists(root_fd: int, parts: list[str]) -> bool:
    """A regular file is at ``parts`` under the root (never following a symlink on the way)."""
    *folders, name = parts
    try:
        with _dir_chain(root_fd, folders) as fd:
            return stat.S_ISREG(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode)
    except (_Stop, OSError):
        return False


def account_prune(
    root: Path,
    db: StateDB | None,
    request_id: str,
    items: list[FileIdentity],
    reason: str,
    store: Store = Store.LLM,
) -> list[ItemOutcome]:
    """What became of each item of a prune that will not run (given up, crashed, out of time).

    Moves nothing: the recorded outcome where there is one, else what the disk shows. A
    file still at its path was not touched (``error``, with ``reason``); one found in this
    request's quarantine was moved before the run ended (``quarantined``: it must stay
    restorable, never be shown as an error); one in neither place is ``skipped_missing``.
    ``db`` None: the state database cannot be read (a full state folder).
    """
    check_request_id(request_id)
    try:
        recorded = db.item_outcomes(record_kind("prune", store), request_id) if db is not None else {}
    except Exception:  # the state folder is broken: the disk alone decides
        recorded = {}
    outcomes = []
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for item in items:
            if item.path in recorded:
                outcome, detail, size = recorded[item.path]
                outcomes.append(
                    ItemOutcome(
                        path=item.path,
                        outcome=Outcome(outcome),
                        detail=detail,
                        bytes_reclaimed=size,
                        store=store,
                    )
                )
                continue
            try:
                parts = split_relpath(item.path)
            except _Stop as stop:
                outcomes.append(
                    ItemOutcome(path=item.path, outcome=stop.outcome, detail=stop.detail, store=store)
                )
                continue
            if _exists(root_fd, parts):
                result = ItemOutcome(
                    path=item.path, outcome=Outcome.ERROR, detail=f"not done: {reason}"[:2000], store=store
                )
            elif _exists(root_fd, [QUARANTINE_DIR, request_id, *parts]):
                result = ItemOutcome(
                    path=item.path,
                    outcome=Outcome.QUARANTINED,
                    detail=f"{QUARANTINE_DIR}/{request_id}/{item.path}",
                    bytes_reclaimed=item.size,
                    store=store,
                )
            else:
                result = ItemOutcome(
                    path=item.path,
                    outcome=Outcome.SKIPPED_MISSING,
                    detail="the file no longer exists",
                    store=store,
                )
            outcomes.append(result)
    finally:
        os.close(root_fd)
    return outcomes


def account_restore(
    root: Path,
    db: StateDB | None,
    request_id: str,
    prune_request_id: str,
    paths: list[str] | None,
    reason: str,
    store: Store = Store.LLM,
) -> list[ItemOutcome]:
    """What became of each item of a restore that will not run; moves nothing (see account_prune)."""
    check_request_id(request_id)
    check_request_id(prune_request_id)
    try:
        recorded = db.item_outcomes(record_kind("restore", store), request_id) if db is not None else {}
    except Exception:
        recorded = {}
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if paths is None:
            try:
                with _dir_chain(root_fd, [QUARANTINE_DIR, prune_request_id]) as q_fd:
                    paths = _quarantined_files(q_fd)
            except (_Stop, OSError):
                paths = []
            paths = sorted(set(paths) | set(recorded))
        outcomes = []
        for path in paths:
            if path in recorded:
                outcome, detail, _ = recorded[path]
                outcomes.append(ItemOutcome(path=path, outcome=Outcome(outcome), detail=detail, store=store))
                continue
            try:
                parts = split_relpath(path)
            except _Stop as stop:
                outcomes.append(ItemOutcome(path=path, outcome=stop.outcome, detail=stop.detail, store=store))
                continue
            if _exists(root_fd, [QUARANTINE_DIR, prune_request_id, *parts]):
                result = ItemOutcome(
                    path=path, outcome=Outcome.ERROR, detail=f"not restored: {reason}"[:2000], store=store
                )
            elif _exists(root_fd, parts):
                result = ItemOutcome(
                    path=path, outcome=Outcome.RESTORED, detail="found back at its path", store=store
                )
            else:
                result = ItemOutcome(
                    path=path,
                    outcome=Outcome.SKIPPED_MISSING,
                    detail="not in this request's quarantine",
                    store=store,
                )
            outcomes.append(result)
    finally:
        os.close(root_fd)
    return outcomes


# ---------------------------------------------------------------- restore


def _quarantined_files(dir_fd: int) -> list[str]:
    """Wire-form paths of everything but folders under a request's quarantine folder (links not followed)."""
    found: list[str] = []
    for folder in walk(dir_fd):
        prefix = f"{folder.path}/" if folder.path else ""
        found.extend(wire_path(prefix + name) for name, _ in folder.entries)
    return sorted(found)


def restore(
    root: Path,
    db: StateDB,
    request_id: str,
    prune_request_id: str,
    paths: list[str] | None = None,
    store: Store = Store.LLM,
) -> list[ItemOutcome]:
    """Move files quarantined by ``prune_request_id`` back to where they were; never overwrite."""
    check_request_id(request_id)
    check_request_id(prune_request_id)
    kind = record_kind("restore", store)
    recorded = db.item_outcomes(kind, request_id)
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if paths is None:
            try:
                with _dir_chain(root_fd, [QUARANTINE_DIR, prune_request_id]) as q_fd:
                    paths = _quarantined_files(q_fd)
            except _Stop:
                paths = []
            paths = sorted(set(paths) | set(recorded))
        outcomes = []
        for path in paths:
            if path in recorded:
                outcome, detail, _ = recorded[path]
                outcomes.append(ItemOutcome(path=path, outcome=Outcome(outcome), detail=detail, store=store))
                continue
            try:
                outcome, detail = _restore_one(root_fd, prune_request_id, path)
            except _Stop as stop:
                outcome, detail = stop.outcome, stop.detail
            except OSError as exc:
                outcome, detail = Outcome.ERROR, str(exc.strerror or exc)
            db.record_item(kind, request_id, path, outcome, detail, 0)
            recorded[path] = (outcome, detail, 0)
            outcomes.append(ItemOutcome(path=path, outcome=outcome, detail=detail[:2000], store=store))
        return outcomes
    finally:
        os.close(root_fd)


def _restore_one(root_fd: int, prune_request_id: str, path: str) -> tuple[Outcome, str]:
    *folders, name = split_relpath(path)
    with _dir_chain(root_fd, [QUARANTINE_DIR, prune_request_id, *folders]) as q_fd:
        try:
            st = os.stat(name, dir_fd=q_fd, follow_symlinks=False)
        except FileNotFoundError:
            raise _Stop(Outcome.SKIPPED_MISSING, "not in this request's quarantine") from None
        if not stat.S_ISREG(st.st_mode):
            raise _refuse("not a regular file")
        with _dir_chain(root_fd, folders, create=True) as dst_fd:
            try:
                rename_noreplace(q_fd, name, dst_fd, name)
            except FileExistsError:
                raise _refuse("a file now exists at the original path; it is not overwritten") from None
    return Outcome.RESTORED, ""


# ---------------------------------------------------------------- purge


def _tree_size(dir_fd: int) -> tuple[int, int]:
    """(bytes, files) of the regular files under ``dir_fd``, never following a symlink."""
    total = count = 0
    for folder in walk(dir_fd):
        for _, st in folder.entries:
            if stat.S_ISREG(st.st_mode):
                total, count = total + st.st_size, count + 1
    return total, count


def _missing_from(dir_fd: int, db: StateDB, request_id: str, store: Store) -> list[MissingFile]:
    """The files recorded as moved into this request's quarantine folder (``dir_fd``) that it
    no longer holds. A file a restore moved back is among them; the dashboard, which knows
    the restores, leaves those alone."""
    try:
        recorded = db.item_outcomes(record_kind("prune", store), request_id)
    except Exception:  # the state folder is broken: nothing to compare with
        return []
    wanted = sorted(path for path, (outcome, _, _) in recorded.items() if outcome == Outcome.QUARANTINED)
    if not wanted:
        return []
    there = set(_quarantined_files(dir_fd))
    return [MissingFile(path=path, store=store) for path in wanted if path not in there]


def purge_requests(
    root: Path,
    db: StateDB,
    retention_days: float,
    now: float | None = None,
    only: Iterable[str] | None = None,
    store: Store = Store.LLM,
    order_id: str = "",
) -> list[PurgedRequest]:
    """Delete quarantine folders older than the retention (or exactly the ``only`` ones).

    ``order_id``: the purge order this runs for, journaled with each folder before it goes.

    The age of a request's quarantine is when its first item was recorded; without a record
    (another agent's state folder), the folder's mtime. ``only`` is an approver's early
    purge: those folders go whatever their age, and no other does.
    """
    now = time.time() if now is None else now
    wanted = None if only is None else {check_request_id(rid) for rid in only}
    purged: list[PurgedRequest] = []
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            with _dir_chain(root_fd, [QUARANTINE_DIR]) as base_fd:
                for name in sorted(os.listdir(base_fd)):
                    if wanted is not None and name not in wanted:
                        continue
                    st = os.stat(name, dir_fd=base_fd, follow_symlinks=False)
                    if not stat.S_ISDIR(st.st_mode):
                        continue
                    since = db.request_time(record_kind("prune", store), name) or st.st_mtime
                    if wanted is None and now - since < retention_days * 86400:
                        continue
                    sub = os.open(name, _DIR_FLAGS, dir_fd=base_fd)
                    try:
                        size, files = _tree_size(sub)
                        missing = _missing_from(sub, db, name, store)
                    finally:
                        os.close(sub)
                    # Journaled before the first file goes: an agent killed inside rmtree
                    # knows at restart what the folder held (``account_purge``).
                    db.record_item(
                        record_kind(PURGE_KIND, store), wire_path(name), order_id, PURGING, str(files), size
                    )
                    # rmtree with dir_fd works through descriptors and does not follow symlinks.
                    shutil.rmtree(name, dir_fd=base_fd)
                    purged.append(
                        PurgedRequest(
                            request_id=wire_path(name)[:64], bytes_purged=size, files=files, missing=missing
                        )
                    )
        except _Stop:  # no quarantine folder (or it is a symlink): nothing of ours to purge
            return []
    finally:
        os.close(root_fd)
    return purged


def account_purge(
    root: Path,
    db: StateDB | None,
    order_id: str,
    request_ids: Iterable[str] | None,
    store: Store = Store.LLM,
) -> tuple[list[PurgedRequest], list[KeptQuarantine]]:
    """What became of the requests of purge order ``order_id`` that will not run to its end
    (killed, given up, an error).

    Deletes nothing. A request's folder that is gone while the journal says this order began
    purging it was purged (with the bytes and files it held then); one still there is kept,
    with what is left in it (all of it, or what rmtree had not reached yet). A folder neither
    there nor journaled was never in this store: nothing to say. ``request_ids`` None (a purge
    by age alone): the folders this order began to purge.
    """
    try:
        begun = db.purge_marks(record_kind(PURGE_KIND, store), order_id) if db is not None else {}
    except Exception:  # the state folder is broken: only the disk can say
        begun = {}
    purged: list[PurgedRequest] = []
    kept: list[KeptQuarantine] = []
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for rid in sorted(begun) if request_ids is None else request_ids:
            check_request_id(rid)
            try:
                with _dir_chain(root_fd, [QUARANTINE_DIR, rid]) as fd:
                    size, files = _tree_size(fd)
                kept.append(KeptQuarantine(request_id=rid, store=store, bytes_left=size, files_left=files))
                continue
            except (_Stop, FileNotFoundError, NotADirectoryError):
                pass
            if rid in begun:
                files, size = begun[rid]
                purged.append(PurgedRequest(request_id=rid, bytes_purged=size, files=files))
    finally:
        os.close(root_fd)
    return purged, kept


def purge(
    root: Path, db: StateDB, retention_days: float, now: float | None = None, store: Store = Store.LLM
) -> tuple[list[str], int]:
    """``purge_requests`` by retention only, as (request ids, bytes freed)."""
    done = purge_requests(root, db, retention_days, now=now, store=store)
    return [p.request_id for p in done], sum(p.bytes_purged for p in done)


# ---------------------------------------------------------------- both stores


def _missing_store(store: Store, path: str) -> ItemOutcome:
    return ItemOutcome(
        path=path, outcome=Outcome.ERROR, detail=f"this host has no {STORE_LABELS[store]}", store=store
    )


def prune_stores(
    roots: StoreRoots,
    db: StateDB,
    request_id: str,
    items: list[FileIdentity],
    mode: PruneMode,
    on_item: Callable[[], None] | None = None,
    in_use: InUseCheck = InUseCheck.STRICT,
) -> list[ItemOutcome]:
    """Prune each item in its own store's root; outcomes in the order of ``items``."""
    by_store: dict[Store, list[FileIdentity]] = {}
    for item in items:
        by_store.setdefault(item.store, []).append(item)
    done: dict[tuple[Store, str], ItemOutcome] = {}
    for store, its in by_store.items():
        root = roots.get(store)
        results = (
            [_missing_store(store, i.path) for i in its]
            if root is None
            else Pruner(root, db, in_use=in_use, store=store).prune(request_id, its, mode, on_item=on_item)
        )
        done.update(((store, o.path), o) for o in results)
    return [done[(i.store, i.path)] for i in items]


def restore_stores(
    roots: StoreRoots,
    db: StateDB,
    request_id: str,
    prune_request_id: str,
    paths: Mapping[Store, list[str] | None] | None = None,
) -> list[ItemOutcome]:
    """Restore what ``prune_request_id`` quarantined, store by store.

    ``paths`` None: everything of the request in every store this host has. Otherwise the
    listed paths of each store (a store missing from the mapping, or None: nothing of it).
    """
    outcomes: list[ItemOutcome] = []
    for store in Store:
        root = roots.get(store)
        wanted = None if paths is None else paths.get(store)
        if paths is not None and not wanted:
            continue
        if root is None or not os.path.isdir(root):
            if wanted:  # asked by name for a store that is not there: say so per file
                outcomes.extend(_missing_store(store, p) for p in wanted)
            continue
        outcomes.extend(restore(root, db, request_id, prune_request_id, wanted, store=store))
    return outcomes


def purge_stores(
    roots: StoreRoots,
    db: StateDB,
    retention_days: float,
    now: float | None = None,
    only: Iterable[str] | None = None,
    order_id: str = "",
) -> list[PurgedRequest]:
    """Purge every store's quarantine; one entry per request, its bytes and files summed over the stores."""
    merged: dict[str, PurgedRequest] = {}
    only = None if only is None else list(only)
    for store in Store:
        root = roots.get(store)
        if root is None or not os.path.isdir(root):
            continue  # no such store here: nothing of ours to purge
        for done in purge_requests(root, db, retention_days, now, only=only, store=store, order_id=order_id):
            _merge_purged(merged, done)
    return [merged[k] for k in sorted(merged)]


def _merge_purged(merged: dict[str, PurgedRequest], done: PurgedRequest) -> None:
    seen = merged.get(done.request_id)
    merged[done.request_id] = (
        done
        if seen is None
        else PurgedRequest(
            request_id=done.request_id,
            bytes_purged=seen.bytes_purged + done.bytes_purged,
            files=seen.files + done.files,
            missing=[*seen.missing, *done.missing],
        )
    )


def account_purge_stores(
    roots: StoreRoots, db: StateDB | None, order_id: str, request_ids: Iterable[str] | None
) -> tuple[list[PurgedRequest], list[KeptQuarantine]]:
    """``account_purge`` in every store this host has: purged requests summed over the
    stores, and each store's folder that is still there."""
    request_ids = None if request_ids is None else list(request_ids)
    merged: dict[str, PurgedRequest] = {}
    kept: list[KeptQuarantine] = []
    for store in Store:
        root = roots.get(store)
        if root is None or not os.path.isdir(root):
            continue
        purged, left = account_purge(root, db, order_id, request_ids, store=store)
        for done in purged:
            _merge_purged(merged, done)
        kept.extend(left)
    return [merged[k] for k in sorted(merged)], kept


def account_prune_stores(
    roots: StoreRoots, db: StateDB | None, request_id: str, items: list[FileIdentity], reason: str
) -> list[ItemOutcome]:
    """``account_prune`` for each item in its own store's root (as ``prune_stores`` runs them)."""
    by_store: dict[Store, list[FileIdentity]] = {}
    for item in items:
        by_store.setdefault(item.store, []).append(item)
    done: dict[tuple[Store, str], ItemOutcome] = {}
    for store, its in by_store.items():
        root = roots.get(store)
        results = (
            [_missing_store(store, i.path) for i in its]
            if root is None or not os.path.isdir(root)
            else account_prune(root, db, request_id, its, reason, store=store)
        )
        done.update(((store, o.path), o) for o in results)
    return [done[(i.store, i.path)] for i in items]


def account_restore_stores(
    roots: StoreRoots,
    db: StateDB | None,
    request_id: str,
    prune_request_id: str,
    paths: Mapping[Store, list[str] | None] | None,
    reason: str,
) -> list[ItemOutcome]:
    """``account_restore`` store by store, with ``restore_stores``' reading of ``paths``."""
    outcomes: list[ItemOutcome] = []
    for store in Store:
        root = roots.get(store)
        wanted = None if paths is None else paths.get(store)
        if paths is not None and not wanted:
            continue
        if root is None or not os.path.isdir(root):
            if wanted:
                outcomes.extend(_missing_store(store, p) for p in wanted)
            continue
        outcomes.extend(account_restore(root, db, request_id, prune_request_id, wanted, reason, store=store))
    return outcomes
