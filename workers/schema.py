"""The messages the dashboard and the host agents exchange, versioned.

This module is the contract between the two sides. The agent builds and validates orders
and reports with it; the dashboard imports it (never the other way round) to validate what
arrives on ``ocrdash.ingest`` and to build orders. Everything crosses the broker as plain
JSON (``model_dump(mode="json")``), so no pickled object ever reaches a worker.

Why pydantic: every field gets checked on arrival with a readable reason ("files.3.size:
Input should be greater than or equal to 0"), which the dashboard stores and shows for a
rejected report instead of crashing a worker.

Version 2 (file names are bytes): a Linux file name is any bytes but ``/`` and NUL, not
text, so a path crosses the broker in its *wire form*: the name decoded as UTF-8, with every
byte that is not part of valid UTF-8, every control character (U+0000-U+001F, U+007F) and the
backslash itself written as an escape (``\\xNN`` for a byte, ``\\\\`` for a backslash).
``caf\\xe9_model.bin`` is the Latin-1 ``café_model.bin`` of an old zip file. The form is
lossless (``path_bytes`` gives the exact name back), injective (one name, one wire form: a
non-canonical escape is refused), readable on a page as it is, and it is plain Unicode that
JSON, PostgreSQL text and sqlite hold without surprises. Hostile input is refused with a
reason naming the field: lone surrogates, NUL, non-finite numbers, integers outside int64,
and paths that are absolute, contain ``.`` or ``..`` components or end in ``/``.
"""

from __future__ import annotations

import os
import re
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Final, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

# Final, so that mypy reads it as the literal the messages declare (schema_version: Literal[...]).
SCHEMA_VERSION: Final = 2

# Queues and task names: sent by name, so neither side imports the other's task code.
INGEST_QUEUE = "ocrdash.ingest"
HOST_QUEUE_PREFIX = "ocrdash.host."
INGEST_TASK = "ocrdash.ingest.report"


class AgentTask(StrEnum):
    """Task names the agent registers on its host queue."""

    INVENTORY = "ocrdash.agent.inventory"
    PRUNE = "ocrdash.agent.prune"
    RESTORE = "ocrdash.agent.restore"
    PURGE = "ocrdash.agent.purge"
    FREE = "ocrdash.agent.free"


# A host name becomes part of a queue name and of URLs: keep it to DNS-like characters.
HOST_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
SHA256_PATTERN = r"^[0-9a-f]{64}$"

# Host labels (``env=prod``): keys and values kept to characters that read the same in a URL,
# a selector (``env=prod,region=eu``) and a page. One definition for the agent and the dashboard.
# A key starts with a letter: a key of digits alone would read as an array index in a JSON path.
LABEL_KEY_PATTERN = r"^[a-z][a-z0-9._-]{0,62}$"
LABEL_VALUE_PATTERN = r"^[A-Za-z0-9._-]{0,63}$"
MAX_LABELS = 32

HostName = Annotated[str, Field(pattern=HOST_NAME_PATTERN)]
Sha256 = Annotated[str, Field(pattern=SHA256_PATTERN)]
# PostgreSQL's bigint, sqlite's INTEGER and every JSON reader we care about stop here.
INT64_MAX = 2**63 - 1
NonNegative = Annotated[int, Field(ge=0, le=INT64_MAX)]
# The longest path Linux opens (PATH_MAX), in bytes of the real name.
MAX_PATH_BYTES = 4096

# ---------------------------------------------------------------- file names (wire form)

# Characters the wire form never holds literally: controls, backslash (both escaped) and the
# surrogates that Python's surrogateescape uses for undecodable bytes.
_NEEDS_ESCAPE = re.compile(r"[\x00-\x1f\x7f\\\ud800-\udfff]")
_ESCAPE_TOKEN = re.compile(r"\\(?:x([0-9a-f]{2})|(\\))")


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    if char == "\\":
        return "\\\\"
    code = ord(char)
    # A surrogate here is an undecodable byte carried by surrogateescape (U+DC80-U+DCFF).
    return f"\\x{code - 0xDC00 if code >= 0xDC80 else code:02x}"


def wire_path(name: str | bytes) -> str:
    """The wire form of a file name or path: from the raw bytes, or from a str as ``os`` gives it.

    A str is taken as Python's file system form (undecodable bytes as surrogateescape
    surrogates), which is what ``os.scandir``/``os.fwalk`` return for str arguments.
    """
    text = os.fsdecode(name) if isinstance(name, bytes) else name
    if not _NEEDS_ESCAPE.search(text):
        return text
    if isinstance(name, str):
        # Through the bytes, so that the wire form depends on the name alone; a surrogate
        # that surrogateescape did not make (only hostile text has one) goes as its 3 bytes.
        try:
            raw = text.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            raw = text.encode("utf-8", "surrogatepass")
        text = raw.decode("utf-8", "surrogateescape")
    return _NEEDS_ESCAPE.sub(_escape_char, text)


def path_bytes(wire: str) -> bytes:
    """The exact bytes of the name behind a wire form; ValueError for a malformed one."""
    if "\\" not in wire:
        if _NEEDS_ESCAPE.search(wire):
            raise ValueError("holds a control character or a lone surrogate; escape it as \\xNN")
        return wire.encode("utf-8")
    out = bytearray()
    pos = 0
    for match in _ESCAPE_TOKEN.finditer(wire):
        chunk = wire[pos : match.start()]
        if "\\" in chunk:
            raise ValueError("holds a backslash that is not an escape (write \\\\ or \\xNN)")
        out += chunk.encode("utf-8", "strict")
        out += bytes([int(match.group(1), 16)]) if match.group(1) else b"\\"
        pos = match.end()
    rest = wire[pos:]
    if "\\" in rest:
        raise ValueError("holds a backslash that is not an escape (write \\\\ or \\xNN)")
    out += rest.encode("utf-8", "strict")
    raw = bytes(out)
    if wire_path(raw) != wire:
        raise ValueError("is not in canonical wire form (escape only what must be escaped)")
    return raw


def fs_path(wire: str) -> str:
    """The str that ``os`` functions take for the name behind a wire form (surrogateescape)."""
    return os.fsdecode(path_bytes(wire))


# A plain path (no escape, no control character, no empty component, not absolute) of at
# most 1024 characters (4 bytes each at most): the common case, checked with one regex.
_PLAIN_PATH = re.compile(r"[^\x00-\x1f\x7f\\/\ud800-\udfff]+(?:/[^\x00-\x1f\x7f\\/\ud800-\udfff]+)*")


def _check_relpath(wire: str) -> str:
    if len(wire) <= MAX_PATH_BYTES // 4 and _PLAIN_PATH.fullmatch(wire):
        framed = f"/{wire}/"
        if "/./" not in framed and "/../" not in framed:
            return wire
    try:
        raw = path_bytes(wire)
    except UnicodeEncodeError:
        raise ValueError("holds a lone surrogate (not valid Unicode)") from None
    if len(raw) > MAX_PATH_BYTES:
        raise ValueError(f"is longer than {MAX_PATH_BYTES} bytes")
    if b"\x00" in raw:
        raise ValueError("holds a NUL byte")
    if raw.startswith(b"/"):
        raise ValueError("is absolute; a path is relative to the model folder")
    parts = raw.split(b"/")
    if b".." in parts:
        raise ValueError("holds a '..' component")
    if raw.endswith(b"/"):
        raise ValueError("ends in '/'; a path names a file")
    if b"" in parts or b"." in parts:
        raise ValueError("is not in normal form (an empty or '.' component)")
    return wire


def _check_text(text: str) -> str:
    if "\x00" in text:
        raise ValueError("holds a NUL character")
    return text


# Relative POSIX path inside the model root, in wire form: checked here to be plain (relative,
# no '..', no empty component, no NUL), and checked again on the host by workers.prune, the one
# place that opens it component by component without following symlinks.
RelPath = Annotated[str, Field(min_length=1, max_length=4 * MAX_PATH_BYTES), AfterValidator(_check_relpath)]


# Text fields refuse NUL (PostgreSQL text cannot hold it) and are bounded; pydantic itself
# refuses lone surrogates.
_NO_NUL = AfterValidator(_check_text)
Id = Annotated[str, Field(min_length=1, max_length=64), _NO_NUL]
Short = Annotated[str, Field(max_length=64), _NO_NUL]
Name = Annotated[str, Field(max_length=255), _NO_NUL]
Detail = Annotated[str, Field(max_length=2000), _NO_NUL]
Reason = Annotated[str, Field(max_length=4000), _NO_NUL]
Key = Annotated[str, Field(min_length=1, max_length=200), _NO_NUL]
DirPath = Annotated[str, Field(max_length=4 * MAX_PATH_BYTES), _NO_NUL]


class Store(StrEnum):
    """The two model stores of an Aspose.OCR host; a file's identity includes its store.

    Each store has its own root and its own quarantine inside that root, so the same relative
    path may exist in both and names two different files.
    """

    LLM = "llm"  # AsposeAI's LLM folder (Aspose.AI.LLM/models): GGUF files
    OCR = "ocr"  # aspose.ocr.Resources: the OCR engine's recognition models (.OCR files)


class AtimeMode(StrEnum):
    """How the mount of a store records access times (from /proc/self/mountinfo)."""

    STRICTATIME = "strictatime"  # every read updates atime: trustworthy
    RELATIME = "relatime"  # updated at most once a day (or when older than mtime): "about"
    NOATIME = "noatime"  # never updated: atime says nothing about use
    UNKNOWN = "unknown"  # the mount could not be found


def host_queue(host: str) -> str:
    """The queue a host's agent consumes."""
    return f"{HOST_QUEUE_PREFIX}{host}"


def new_id() -> str:
    return uuid.uuid4().hex


def utcnow() -> datetime:
    return datetime.now(UTC)


# Unknown fields are an error, not silently dropped: a typo in a producer must show up.
# NaN and infinities have no JSON form and no place in a size or a retention.
_STRICT = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class _Message(BaseModel):
    model_config = _STRICT

    schema_version: Literal[2] = SCHEMA_VERSION
    host: HostName
    sent_at: datetime = Field(default_factory=utcnow)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


# ---------------------------------------------------------------- orders (dashboard → agent)


class FileIdentity(BaseModel):
    """A file as the approver saw it. The agent acts only if the file on disk still matches."""

    model_config = _STRICT

    path: RelPath
    size: NonNegative
    mtime_ns: NonNegative
    sha256: Sha256
    store: Store = Store.LLM


class PruneMode(StrEnum):
    QUARANTINE = "quarantine"  # restorable; purged after the retention period
    DELETE = "delete"  # unlink at once


class _Order(_Message):
    request_id: Id
    # Orders carry their own deadline besides the broker expiry: a host that comes back
    # after a week must not act on a week of stale orders, whatever the transport did.
    expires_at: datetime | None = None


class InventoryOrder(_Order):
    kind: Literal["inventory"] = "inventory"


class FreeOrder(_Order):
    kind: Literal["free"] = "free"


class PruneOrder(_Order):
    kind: Literal["prune"] = "prune"
    mode: PruneMode = PruneMode.QUARANTINE
    items: Annotated[list[FileIdentity], Field(min_length=1, max_length=10_000)]


class RestoreOrder(_Order):
    """Move back what ``prune_request_id`` quarantined (all of it, or the listed paths).

    ``paths`` name files of the LLM store, ``ocr_paths`` files of the OCR resources store.
    Both None: everything the request quarantined in both stores; otherwise exactly the
    listed files (a None list then means none of that store).
    """

    kind: Literal["restore"] = "restore"
    prune_request_id: Id
    paths: list[RelPath] | None = None
    ocr_paths: list[RelPath] | None = None


class PurgeOrder(_Order):
    """Empty the quarantine: of every request older than the retention, or of the listed ones.

    ``prune_request_ids`` is an approver's early purge: those requests' quarantine goes now,
    whatever its age, and nothing else does.
    """

    kind: Literal["purge"] = "purge"
    retention_days: Annotated[float, Field(ge=0, le=100_000)] = 7
    prune_request_ids: Annotated[list[Id], Field(min_length=1, max_length=10_000)] | None = None


Order = Annotated[
    InventoryOrder | FreeOrder | PruneOrder | RestoreOrder | PurgeOrder,
    Field(discriminator="kind"),
]
_ORDER = TypeAdapter(Order)

ORDER_TASKS: dict[str, AgentTask] = {
    "inventory": AgentTask.INVENTORY,
    "free": AgentTask.FREE,
    "prune": AgentTask.PRUNE,
    "restore": AgentTask.RESTORE,
    "purge": AgentTask.PURGE,
}


# ---------------------------------------------------------------- reports (agent → dashboard)


class Holder(BaseModel):
    """A process that holds a model file: by an open descriptor or a memory map."""

    model_config = _STRICT

    pid: Annotated[int, Field(ge=1, le=INT64_MAX)]
    program: Short  # /proc/<pid>/comm
    how: Literal["fd", "mmap"]

    def label(self) -> str:
        return f"{self.program} (pid {self.pid})"


class ModelDirState(StrEnum):
    OK = "ok"
    MISSING = "missing"
    UNREADABLE = "unreadable"


class FileEntry(BaseModel):
    """One file under the model root, as the walk found it."""

    model_config = _STRICT

    path: RelPath
    size: NonNegative
    mtime_ns: NonNegative
    # None for a symlink (reported, never followed) or a file that could not be read.
    sha256: Sha256 | None
    known_to_aspose: bool = False
    is_symlink: bool = False
    store: Store = Store.LLM
    # Last access as the file system recorded it; how far to trust it is the store's atime_mode.
    atime_ns: NonNegative | None = None
    # Processes holding the file (open descriptor or memory map) at this inventory's /proc look.
    open_by: Annotated[list[Holder], Field(max_length=16)] = []
    # The last time the agent saw it held, by any look (inventory or heartbeat), and by whom.
    last_open_at: datetime | None = None
    last_open_by: Annotated[str, Field(max_length=200), _NO_NUL] = ""


class StoreFacts(BaseModel):
    """One model store of a host as this inventory found it."""

    model_config = _STRICT

    store: Store
    root: DirPath
    state: ModelDirState
    error: Detail = ""
    atime_mode: AtimeMode = AtimeMode.UNKNOWN
    mount_point: DirPath = ""


class HostFacts(BaseModel):
    model_config = _STRICT

    hostname: Name
    # Absolute, in the same wire form as a path (the folder's name may not be UTF-8 either).
    model_dir: DirPath
    model_dir_state: ModelDirState
    model_dir_error: Detail = ""
    disk_total: NonNegative | None = None
    disk_free: NonNegative | None = None
    aspose_version: Short = ""
    agent_version: Short = ""
    # Every store walked (the LLM one repeats model_dir/model_dir_state above).
    stores: Annotated[list[StoreFacts], Field(max_length=8)] = []
    # When the /proc look for holders of model files ran, and why it could not (then open_by
    # says nothing: "not seen open" is not "not in use").
    open_checked_at: datetime | None = None
    open_check_error: Detail = ""


class Outcome(StrEnum):
    """How one prune or restore item ended. Exactly one per item."""

    QUARANTINED = "quarantined"
    DELETED = "deleted"
    RESTORED = "restored"
    SKIPPED_CHANGED = "skipped_changed"
    SKIPPED_MISSING = "skipped_missing"
    SKIPPED_IN_USE = "skipped_in_use"
    REFUSED = "refused"
    ERROR = "error"


# Outcomes that gave disk space back (or, for a restore, put the file back).
SUCCESS_OUTCOMES = frozenset({Outcome.QUARANTINED, Outcome.DELETED, Outcome.RESTORED})


class ItemOutcome(BaseModel):
    model_config = _STRICT

    path: RelPath
    outcome: Outcome
    detail: Detail = ""
    bytes_reclaimed: NonNegative = 0
    store: Store = Store.LLM


class _Report(_Message):
    report_id: Id = Field(default_factory=new_id)
    agent_version: Short = ""
    # The order this report answers, if any.
    request_id: Short | None = None


class Enrollment(BaseModel):
    """A host asking to have its key enrolled: the key, and proof it holds a one-time token.

    The token itself never travels; ``proof`` is bound to the host name, this public key and
    the report id (see ``workers.signing.enrollment.enrollment_proof``), so it enrolls nothing else.
    """

    model_config = _STRICT

    public_key: Key
    proof: Key


class InventoryReport(_Report):
    kind: Literal["inventory"] = "inventory"
    facts: HostFacts
    files: Annotated[list[FileEntry], Field(max_length=100_000)]
    # Present while the agent holds an enrollment token; ignored once its key is enrolled.
    enrollment: Enrollment | None = None


class PruneReport(_Report):
    kind: Literal["prune"] = "prune"
    mode: PruneMode
    outcomes: Annotated[list[ItemOutcome], Field(max_length=100_000)]
    freed: bool


class RestoreReport(_Report):
    kind: Literal["restore"] = "restore"
    prune_request_id: Id
    outcomes: Annotated[list[ItemOutcome], Field(max_length=100_000)]
    freed: bool


class MissingFile(BaseModel):
    """A file the agent had moved into a request's quarantine and did not find there when it
    purged that folder (deleted by hand, lost with a disk): not freed by the purge, and not in
    quarantine any more either."""

    model_config = _STRICT

    path: RelPath
    store: Store = Store.LLM


class PurgedRequest(BaseModel):
    """What one request's quarantine gave back to the disk when it was purged."""

    model_config = _STRICT

    request_id: Id
    bytes_purged: NonNegative
    files: NonNegative = 0
    # Of the files the agent recorded moving there, those the folder no longer held (empty when
    # it has no record of the request: another agent's state folder, or a purge accounted for
    # after a restart).
    missing: Annotated[list[MissingFile], Field(max_length=100_000)] = []


class KeptQuarantine(BaseModel):
    """What a purge that did not run to its end left of one request's quarantine in one store:
    still on the disk (perhaps only part of it), still in quarantine."""

    model_config = _STRICT

    request_id: Id
    store: Store = Store.LLM
    bytes_left: NonNegative
    files_left: NonNegative


class PurgeReport(_Report):
    kind: Literal["purge"] = "purge"
    purged_requests: Annotated[list[Id], Field(max_length=100_000)]
    bytes_purged: NonNegative
    freed: bool
    # Per request, for the request page's "freed on disk"; the two lists name the same requests.
    purged: Annotated[list[PurgedRequest], Field(max_length=100_000)] = []
    # A purge that ended before its end (killed and restarted, given up, an error): the
    # requests' folders still there, per store, and why. A request may be in both lists when
    # one store's folder went and the other's did not.
    kept: Annotated[list[KeptQuarantine], Field(max_length=100_000)] = []
    detail: Detail = ""


class FreeReport(_Report):
    kind: Literal["free"] = "free"
    freed: bool


class HeartbeatReport(_Report):
    """A host saying "still here", every ``interval_seconds``: small on purpose.

    No file list (that is the inventory's job): the dashboard turns it into one UPDATE of the
    host's row, so 10,000 hosts every 30 s cost no snapshot and no audit event. ``labels`` are
    what the host's own configuration says about it (``OCRDASH_HOST_LABELS``); the dashboard
    shows them apart and never lets them alone put a host into a campaign.
    """

    kind: Literal["heartbeat"] = "heartbeat"
    interval_seconds: Annotated[int, Field(ge=1, le=86_400)]
    model_dir_state: ModelDirState
    disk_total: NonNegative | None = None
    disk_free: NonNegative | None = None
    aspose_version: str = Field(default="", max_length=64)
    # Orders waiting on the host's own queue, when the broker could say (None otherwise).
    backlog: NonNegative | None = None
    labels: Annotated[
        dict[
            Annotated[str, Field(pattern=LABEL_KEY_PATTERN)],
            Annotated[str, Field(pattern=LABEL_VALUE_PATTERN)],
        ],
        Field(max_length=MAX_LABELS),
    ] = {}


class ProgressReport(_Report):
    """How far a long order has got (the first hashing of large files, a prune of many files).

    Sent while the work runs, rate-limited by the agent (``workers.progress``); the dashboard
    keeps only the latest one per order and shows it as a progress bar. Best effort: a lost
    one is replaced by the next, and the order's final report says how it ended.
    """

    kind: Literal["progress"] = "progress"
    phase: Literal["hashing", "pruning", "restoring", "purging"]
    done_bytes: NonNegative = 0
    total_bytes: NonNegative | None = None
    done_items: NonNegative = 0
    total_items: NonNegative | None = None
    # Estimated seconds left, from the rate so far; None until there is a rate.
    eta_seconds: Annotated[float, Field(ge=0)] | None = None


class ErrorReport(_Report):
    """An order the agent could not carry out (malformed, expired, crashed)."""

    kind: Literal["error"] = "error"
    task: Annotated[str, Field(max_length=200), _NO_NUL]
    reason: Reason


Report = Annotated[
    InventoryReport
    | PruneReport
    | RestoreReport
    | PurgeReport
    | FreeReport
    | HeartbeatReport
    | ProgressReport
    | ErrorReport,
    Field(discriminator="kind"),
]
_REPORT = TypeAdapter(Report)


class SchemaError(ValueError):
    """A message that does not match the schema; ``str()`` is a reason fit to show a person."""


# pydantic's wording for these says what failed, not why it matters.
_MESSAGES = {
    "string_unicode": "holds a lone surrogate (not valid Unicode)",
    "finite_number": "must be a finite number (NaN and infinities are refused)",
}


def _explain(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False, include_input=False)[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or "message"
        msg = _MESSAGES.get(err["type"], err["msg"])
        if err["type"] == "value_error":
            msg = msg.removeprefix("Value error, ")
        # A field name of an unknown key is the sender's text: show it escaped, bounded.
        parts.append(f"{wire_path(loc)[:200]}: {msg}")
    more = exc.error_count() - 5
    if more > 0:
        parts.append(f"and {more} more")
    return "; ".join(parts)


def _parse(adapter: TypeAdapter[Any], data: Any, what: str) -> Any:
    if not isinstance(data, dict):
        raise SchemaError(f"{what} must be a JSON object, got {type(data).__name__}")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION or isinstance(version, bool):
        shown = (
            repr(version)[:40] if isinstance(version, int | float | str | None) else type(version).__name__
        )
        raise SchemaError(
            f"unsupported schema_version {wire_path(shown)} (this side speaks {SCHEMA_VERSION}); "
            "update the older side"
        )
    try:
        return adapter.validate_python(data)
    except ValidationError as exc:
        raise SchemaError(_explain(exc)) from None
    except (RecursionError, ValueError, TypeError) as exc:
        # Never a traceback for hostile input: nesting too deep, or a value pydantic chokes on.
        raise SchemaError(f"{what} cannot be read: {type(exc).__name__}") from None


def parse_order(
    data: Any,
) -> InventoryOrder | FreeOrder | PruneOrder | RestoreOrder | PurgeOrder:
    """Validate an order dict; raises SchemaError with a readable reason."""
    return _parse(_ORDER, data, "order")


def parse_report(
    data: Any,
) -> (
    InventoryReport
    | PruneReport
    | RestoreReport
    | PurgeReport
    | FreeReport
    | HeartbeatReport
    | ProgressReport
    | ErrorReport
):
    """Validate a report dict; raises SchemaError with a readable reason."""
    return _parse(_REPORT, data, "report")
