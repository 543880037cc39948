"""What is in the model folder: the walk (the truth about files) joined with Aspose's list_local().

The walk (``workers.walk``, shared with the quarantine listing and the purge) never follows a
symlink: a link is reported as such (without a hash), so a link to ``/etc`` or to another disk
can neither inflate the inventory nor be read by the agent. It goes through directory file
descriptors, so a folder swapped for a symlink while we walk is met as a symlink, not followed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from stat import S_ISLNK, S_ISREG
from typing import Any, Literal, NamedTuple

from pydantic import TypeAdapter, ValidationError

from workers import __version__, usage
from workers.aspose_backend import AsposeSession, ModelDirNotFound, aspose_version
from workers.hashing import HashCache, HashStats
from workers.prune import QUARANTINE_DIR
from workers.schema import (
    AtimeMode,
    FileEntry,
    Holder,
    HostFacts,
    InventoryReport,
    ModelDirState,
    SchemaError,
    Store,
    StoreFacts,
    parse_report,
    utcnow,
    wire_path,
)
from workers.state import StateDB
from workers.usage import atime_mode
from workers.walk import walk

# O_NONBLOCK: a FIFO that replaced a file between scandir and open must not hang the walk.
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_NOATIME = getattr(os, "O_NOATIME", 0)

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
    store: Store = Store.LLM
    # Last access as the file system recorded it (before our hashing, which does not move it).
    atime_ns: int | None = None
    # Who holds it at this inventory's /proc look, and when it was last seen held (usage.py).
    open_by: tuple[Holder, ...] = ()
    last_open_at: datetime | None = None
    last_open_by: str = ""


_FILES = TypeAdapter(list[FileEntry])
# Entry(...) goes through a Python-level __new__; the walk makes one per file.
_new = tuple.__new__


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
    root_fd: int,
    cache: HashCache,
    files: list[Entry],
    problems: list[str],
    seen_by_aspose: list[str] | None = None,
    store: Store = Store.LLM,
) -> None:
    # The hot loop of every inventory: one lstat per entry (the shared walk's, relative to the
    # folder's descriptor), one cache query per folder, and a file is opened only when its
    # hash is not cached. Kept flat on purpose: every call per entry shows on a 100k-file rescan.
    # ``seen_by_aspose`` (root and first level only) collects what list_local() reads.
    # Names are os's str form (undecodable bytes as surrogateescape) for the os calls; what
    # leaves the walk is the schema's wire form, which carries any byte name.
    append = files.append
    hits = 0
    for folder in walk(root_fd, skip_top=(QUARANTINE_DIR,), problems=problems):
        dir_fd = folder.fd
        prefix = wire_path(folder.path) + "/" if folder.path else ""
        dir_st = os.fstat(dir_fd)
        aspose = seen_by_aspose if folder.depth <= 1 else None
        if aspose is not None:
            aspose.append(f"{prefix}:{dir_st.st_ino}:{dir_st.st_mtime_ns}:{dir_st.st_ctime_ns}")
        found = folder.entries
        # One query for the folder's files; regular files share the folder's device.
        known = cache.cached_many(dir_st.st_dev, [st.st_ino for _, st in found if S_ISREG(st.st_mode)])
        # Names that are printable ASCII without a backslash are their own wire form: one
        # check per folder instead of one wire_path call per file.
        joined = "".join([name for name, _ in found])
        plain = joined.isascii() and joined.isprintable() and "\\" not in joined
        for name, st in found:
            mode = st.st_mode
            rel = prefix + name if plain else prefix + wire_path(name)
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
                    append(
                        _new(
                            Entry,
                            (
                                rel,
                                st.st_size,
                                st.st_mtime_ns,
                                row[4],
                                False,
                                False,
                                store,
                                st.st_atime_ns,
                                (),
                                None,
                                "",
                            ),
                        )
                    )
                else:
                    append(_file_entry(dir_fd, name, rel, st, cache, problems, store))
            elif S_ISLNK(mode):
                append(Entry(rel, st.st_size, st.st_mtime_ns, None, False, True, store))
                if aspose is not None:  # Aspose follows links: what they point at counts too
                    aspose.append(f"{rel}->{_target(dir_fd, name)}")
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


def _open_noatime(name: str, dir_fd: int) -> int:
    """Open for hashing without touching atime: the agent reading a model is not a use of it.

    O_NOATIME is allowed only to the file's owner (or with CAP_FOWNER); otherwise the read
    goes ahead with a normal open and may move atime (on relatime, at most once a day).
    """
    try:
        return os.open(name, _FILE_FLAGS | _NOATIME, dir_fd=dir_fd)
    except PermissionError:
        if not _NOATIME:
            raise
        return os.open(name, _FILE_FLAGS, dir_fd=dir_fd)


def _file_entry(
    dir_fd: int,
    name: str,
    rel: str,
    st: os.stat_result,
    cache: HashCache,
    problems: list[str],
    store: Store = Store.LLM,
) -> Entry:
    sha256 = None
    try:
        fd = _open_noatime(name, dir_fd)
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
    # atime from the stat taken before hashing: what the last reader (not we) left there.
    return Entry(rel, st.st_size, st.st_mtime_ns, sha256, False, False, store, st.st_atime_ns)


def _mark_known(files: list[Entry], known: set[str]) -> None:
    """Flag the entries Aspose would load (a handful: looked up, not compared with every file)."""
    if not known:
        return
    for i, entry in enumerate(files):
        # Aspose follows a symlinked folder; deleting that link would hide the model from it.
        if entry.path in known or (entry.is_symlink and any(k.startswith(entry.path + "/") for k in known)):
            files[i] = entry._replace(known_to_aspose=True)


_STORE_LABEL = {Store.LLM: "model folder", Store.OCR: "OCR resources folder"}


@dataclass
class _StoreScan:
    facts: StoreFacts
    files: list[Entry]
    problems: list[str]
    root: Path  # the real folder (facts.root is its wire form)


def _scan_store(
    store: Store, root: Path, session: AsposeSession, db: StateDB, cache: HashCache
) -> _StoreScan:
    """Walk one store and join it with what Aspose lists there; a missing folder is a state, not a crash."""
    label = _STORE_LABEL[store]
    shown = wire_path(str(root))
    state, error = ModelDirState.OK, ""
    files: list[Entry] = []
    problems: list[str] = []
    seen_by_aspose: list[str] = []
    try:
        root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        state, error = ModelDirState.MISSING, f"{label} does not exist: {shown}"
    except OSError as exc:
        state, error = ModelDirState.UNREADABLE, f"{label} cannot be opened: {shown}: {exc.strerror}"
    else:
        try:
            _walk(root_fd, cache, files, problems, seen_by_aspose if store is Store.LLM else None, store)
        except OSError as exc:
            state, error = ModelDirState.UNREADABLE, f"{label} cannot be read: {shown}: {exc.strerror}"
        finally:
            cache.flush()  # what was hashed counts even if the walk failed half-way
            os.close(root_fd)
    if state is ModelDirState.OK:
        try:
            listed = (
                _aspose_listing(session, db, seen_by_aspose)
                if store is Store.LLM
                else session.ocr_list_local()
            )
            _mark_known(files, {wire_path(k) for k in listed})
        except ModelDirNotFound:
            state, error = ModelDirState.MISSING, f"{label} vanished during the scan: {shown}"
        if problems:
            error = "; ".join(problems)[:2000]
    mode, mount_point = atime_mode(root) if state is ModelDirState.OK else (AtimeMode.UNKNOWN, "")
    facts = StoreFacts(
        store=store, root=shown, state=state, error=error, atime_mode=mode, mount_point=wire_path(mount_point)
    )
    return _StoreScan(facts, files, problems, root)


def _with_usage(files: list[Entry], seen: usage.Look, db: StateDB) -> list[Entry]:
    """Each file with who holds it now and when it was last seen held (this look included)."""
    usage.record(db, seen)
    last = usage.last_seen(db)
    if not seen.holders and not last:
        return files
    out = []
    for entry in files:
        key = (entry.store, entry.path)
        held = seen.holders.get(key)
        when = last.get(key)
        if held is None and when is None:
            out.append(entry)
            continue
        out.append(
            entry._replace(
                open_by=tuple(held or ()),
                last_open_at=when[0] if when else None,
                last_open_by=when[1] if when else "",
            )
        )
    return out


def scan(
    session: AsposeSession, db: StateDB, *, progress: ProgressCallback | None = None, proc: str = "/proc"
) -> Scan:
    """Walk the session's stores, hash what changed, join each with what Aspose lists, look who holds what.

    The LLM folder (``AsposeAI.list_local``) always; the OCR resources folder
    (``Resources.list_local``) when the session has one. One /proc look covers both.
    """
    cache = HashCache(db, progress=None)
    bar = _Progress(progress, desc="hashing models")
    cache.progress = bar
    stores = [(Store.LLM, session.get_local_path())]
    if session.ocr_dir is not None:
        stores.append((Store.OCR, session.ocr_dir))
    try:
        scanned = [_scan_store(store, root, session, db, cache) for store, root in stores]
    finally:
        bar.close()
    llm = scanned[0]
    files = [f for s in scanned for f in s.files]
    problems = list(llm.problems) + [f"ocr: {p}" for s in scanned[1:] for p in s.problems]
    roots = {s.facts.store: s.root for s in scanned if s.facts.state is ModelDirState.OK}
    regular: dict[Store, list[str]] = {store: [] for store in roots}
    for f in files:
        if not f.is_symlink and f.store in regular:
            regular[f.store].append(f.path)
    seen = usage.look(roots, proc=proc, files=regular) if roots else usage.Look(at=utcnow())
    files = _with_usage(files, seen, db)
    facts = host_facts(
        llm.root,
        llm.facts.state,
        llm.facts.error,
        stores=[s.facts for s in scanned],
        open_checked_at=seen.at if roots and not seen.error else None,
        open_check_error=seen.error,
    )
    return Scan(facts=facts, files=files, stats=cache.stats, problems=problems)


def host_facts(
    root: Path,
    state: ModelDirState,
    error: str = "",
    *,
    stores: list[StoreFacts] | None = None,
    open_checked_at: datetime | None = None,
    open_check_error: str = "",
) -> HostFacts:
    total = free = None
    if state is ModelDirState.OK:
        disk = shutil.disk_usage(root)
        total, free = disk.total, disk.free
    return HostFacts(
        hostname=socket.gethostname(),
        model_dir=wire_path(str(root)),
        model_dir_state=state,
        model_dir_error=error,
        disk_total=total,
        disk_free=free,
        aspose_version=aspose_version(),
        agent_version=__version__,
        stores=stores or [],
        open_checked_at=open_checked_at,
        open_check_error=open_check_error[:2000],
    )


# Files validated per chunk when a report is built: every entry is checked against the schema,
# and no more than a chunk of validated objects is alive at a time.
_CHECK_CHUNK = 2000


def wire_file(entry: Entry) -> dict[str, Any]:
    """One entry as it crosses the broker: ``schema.FileEntry``'s JSON form, defaults left out.

    At 100,000 files the fields that are almost always at their default (not known to Aspose,
    not a link, the LLM store, held by nobody) would be a third of the report; the dashboard's
    parse fills them in.
    """
    out: dict[str, Any] = {
        "path": entry.path,
        "size": entry.size,
        "mtime_ns": entry.mtime_ns,
        "sha256": entry.sha256,
    }
    if entry.atime_ns is not None:
        out["atime_ns"] = entry.atime_ns
    if entry.known_to_aspose:
        out["known_to_aspose"] = True
    if entry.is_symlink:
        out["is_symlink"] = True
    if entry.store is not Store.LLM:
        out["store"] = entry.store.value
    if entry.open_by:
        out["open_by"] = [h.model_dump(mode="json") for h in entry.open_by]
    if entry.last_open_at is not None:
        out["last_open_at"] = _DATETIME.dump_python(entry.last_open_at, mode="json")
    if entry.last_open_by:
        out["last_open_by"] = entry.last_open_by
    return out


_DATETIME: TypeAdapter[datetime] = TypeAdapter(datetime)


@dataclass(frozen=True)
class ScannedInventory:
    """An inventory report as the agent sends it: a validated header and the files in wire form.

    A pydantic ``FileEntry`` per file cost about 1.3 KB, so a 100,000-file report held as a
    model graph (and dumped to JSON beside it) was twice the memory of the scan itself. Here
    each file is a small dict made straight from the walk's entry, checked against the schema
    chunk by chunk when the report is built (``inventory_report``) and never held as a model.
    ``header`` is an ``InventoryReport`` with no files; ``model_copy`` and ``to_json`` give
    what the outbox and the signer need, ``files`` the validated entries on demand (it
    builds them all: for tests and the command line, not for the send path).
    """

    header: InventoryReport
    wire_files: list[dict[str, Any]]
    kind: Literal["inventory"] = "inventory"

    @property
    def report_id(self) -> str:
        return self.header.report_id

    @property
    def request_id(self) -> str | None:
        return self.header.request_id

    @property
    def host(self) -> str:
        return self.header.host

    @property
    def facts(self) -> HostFacts:
        return self.header.facts

    @property
    def files(self) -> list[FileEntry]:
        return _FILES.validate_python(self.wire_files)

    def model_copy(self, *, update: dict[str, Any]) -> ScannedInventory:
        """The same files under a header with ``update`` applied (``sent_at``, ``enrollment``)."""
        return ScannedInventory(self.header.model_copy(update=update), self.wire_files)

    def to_json(self) -> dict[str, Any]:
        body = self.header.to_json()
        body["files"] = self.wire_files
        return body

    def parse(self) -> InventoryReport:
        """The whole report as the dashboard will read it (every file a model: costs memory)."""
        return InventoryReport.model_validate(self.to_json())

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> ScannedInventory:
        """A stored inventory body (the outbox's), its header validated and its files checked by chunk."""
        files = body.get("files")
        if not isinstance(files, list):
            raise SchemaError("report: files: a list is required")
        header = parse_report({**body, "files": []})
        if not isinstance(header, InventoryReport):
            raise SchemaError("report: not an inventory")
        _check_files(files)
        return cls(header, files)


def _check_files(files: list[dict[str, Any]]) -> None:
    """Validate ``files`` against ``schema.FileEntry`` a chunk at a time, keeping nothing."""
    if len(files) > _MAX_FILES:
        raise SchemaError(f"report: files: at most {_MAX_FILES} files")
    for start in range(0, len(files), _CHECK_CHUNK):
        try:
            _FILES.validate_python(files[start : start + _CHECK_CHUNK])
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            if first["loc"] and isinstance(first["loc"][0], int):
                where = ".".join(str(p) for p in (start + first["loc"][0], *first["loc"][1:]))
            raise SchemaError(f"report: files.{where}: {first['msg']}") from None


# The schema's own bound (InventoryReport.files), checked here since the files skip its model.
_MAX_FILES = next(
    m.max_length for m in InventoryReport.model_fields["files"].metadata if getattr(m, "max_length", None)
)


def inventory_report(host: str, scan_result: Scan, request_id: str | None = None) -> ScannedInventory:
    """The report of ``scan_result``: its header validated, its files in wire form and checked."""
    header = InventoryReport(
        host=host,
        request_id=request_id,
        agent_version=__version__,
        facts=scan_result.facts,
        files=[],
    )
    files = [wire_file(e) for e in scan_result.files]
    _check_files(files)
    return ScannedInventory(header, files)


def file_entries(entries: list[Entry]) -> list[FileEntry]:
    """The walk's entries as schema objects, validated in one call."""
    fields = Entry._fields
    return _FILES.validate_python([dict(zip(fields, e, strict=True)) for e in entries])
