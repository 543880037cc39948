"""The messages the dashboard and the host agents exchange, versioned.

This module is the contract between the two sides. The agent builds and validates orders
and reports with it; the dashboard imports it (never the other way round) to validate what
arrives on ``ocrdash.ingest`` and to build orders. Everything crosses the broker as plain
JSON (``model_dump(mode="json")``), so no pickled object ever reaches a worker.

Why pydantic: every field gets checked on arrival with a readable reason ("files.3.size:
Input should be greater than or equal to 0"), which the dashboard stores and shows for a
rejected report instead of crashing a worker.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

SCHEMA_VERSION = 1

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
    MAINTAIN = "ocrdash.agent.maintain"


# A host name becomes part of a queue name and of URLs: keep it to DNS-like characters.
HOST_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
SHA256_PATTERN = r"^[0-9a-f]{64}$"

# Host labels (``env=prod``): keys and values kept to characters that read the same in a URL,
# a selector (``env=prod,region=eu``) and a page. One definition for the agent and the dashboard.
LABEL_KEY_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,62}$"
LABEL_VALUE_PATTERN = r"^[A-Za-z0-9._-]{0,63}$"
MAX_LABELS = 32

HostName = Annotated[str, Field(pattern=HOST_NAME_PATTERN)]
Sha256 = Annotated[str, Field(pattern=SHA256_PATTERN)]
# Relative POSIX path inside the model root. Its safety (no "..", not absolute, no symlink
# on the way) is decided on the host by workers.prune, the one place that opens it; the
# schema only bounds its size so a report cannot carry megabytes of path.
RelPath = Annotated[str, Field(min_length=1, max_length=4096)]
NonNegative = Annotated[int, Field(ge=0)]


def host_queue(host: str) -> str:
    """The queue a host's agent consumes."""
    return f"{HOST_QUEUE_PREFIX}{host}"


def new_id() -> str:
    return uuid.uuid4().hex


def utcnow() -> datetime:
    return datetime.now(UTC)


class _Message(BaseModel):
    # Unknown fields are an error, not silently dropped: a typo in a producer must show up.
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = SCHEMA_VERSION
    host: HostName
    sent_at: datetime = Field(default_factory=utcnow)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


# ---------------------------------------------------------------- orders (dashboard → agent)


class FileIdentity(BaseModel):
    """A file as the approver saw it. The agent acts only if the file on disk still matches."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: RelPath
    size: NonNegative
    mtime_ns: NonNegative
    sha256: Sha256


class PruneMode(StrEnum):
    QUARANTINE = "quarantine"  # restorable; purged after the retention period
    DELETE = "delete"  # unlink at once


class _Order(_Message):
    request_id: Annotated[str, Field(min_length=1, max_length=64)]
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
    """Move back what ``prune_request_id`` quarantined (all of it, or the listed paths)."""

    kind: Literal["restore"] = "restore"
    prune_request_id: Annotated[str, Field(min_length=1, max_length=64)]
    paths: list[RelPath] | None = None


class PurgeOrder(_Order):
    kind: Literal["purge"] = "purge"
    retention_days: Annotated[float, Field(ge=0)] = 7


class MaintainOrder(_Order):
    """The tutorial's whole script as one order: inventory, prune the items, free, inventory."""

    kind: Literal["maintain"] = "maintain"
    mode: PruneMode = PruneMode.QUARANTINE
    items: Annotated[list[FileIdentity], Field(max_length=10_000)] = []


Order = Annotated[
    InventoryOrder | FreeOrder | PruneOrder | RestoreOrder | PurgeOrder | MaintainOrder,
    Field(discriminator="kind"),
]
_ORDER = TypeAdapter(Order)

ORDER_TASKS: dict[str, AgentTask] = {
    "inventory": AgentTask.INVENTORY,
    "free": AgentTask.FREE,
    "prune": AgentTask.PRUNE,
    "restore": AgentTask.RESTORE,
    "purge": AgentTask.PURGE,
    "maintain": AgentTask.MAINTAIN,
}


# ---------------------------------------------------------------- reports (agent → dashboard)


class ModelDirState(StrEnum):
    OK = "ok"
    MISSING = "missing"
    UNREADABLE = "unreadable"


class FileEntry(BaseModel):
    """One file under the model root, as the walk found it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: RelPath
    size: NonNegative
    mtime_ns: NonNegative
    # None for a symlink (reported, never followed) or a file that could not be read.
    sha256: Sha256 | None
    known_to_aspose: bool = False
    is_symlink: bool = False


class HostFacts(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    hostname: str = Field(max_length=255)
    model_dir: str = Field(max_length=4096)
    model_dir_state: ModelDirState
    model_dir_error: str = Field(default="", max_length=2000)
    disk_total: NonNegative | None = None
    disk_free: NonNegative | None = None
    aspose_version: str = Field(default="", max_length=64)
    agent_version: str = Field(default="", max_length=64)


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
    model_config = ConfigDict(extra="forbid", frozen=True)

    path: RelPath
    outcome: Outcome
    detail: str = Field(default="", max_length=2000)
    bytes_reclaimed: NonNegative = 0


class _Report(_Message):
    report_id: Annotated[str, Field(min_length=1, max_length=64)] = Field(default_factory=new_id)
    agent_version: str = Field(default="", max_length=64)
    # The order this report answers, if any.
    request_id: Annotated[str, Field(max_length=64)] | None = None


class Enrollment(BaseModel):
    """A host asking to have its key enrolled: the key, and proof it holds a one-time token.

    The token itself never travels; ``proof`` is bound to the host name, this public key and
    the report id (see ``workers.signing.enrollment_proof``), so it enrolls nothing else.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    public_key: str = Field(min_length=1, max_length=200)
    proof: str = Field(min_length=1, max_length=200)


class InventoryReport(_Report):
    kind: Literal["inventory"] = "inventory"
    facts: HostFacts
    files: Annotated[list[FileEntry], Field(max_length=100_000)]
    # Present while the agent holds an enrollment token; ignored once its key is enrolled.
    enrollment: Enrollment | None = None


class PruneReport(_Report):
    kind: Literal["prune"] = "prune"
    mode: PruneMode
    outcomes: list[ItemOutcome]
    freed: bool


class RestoreReport(_Report):
    kind: Literal["restore"] = "restore"
    prune_request_id: str
    outcomes: list[ItemOutcome]
    freed: bool


class PurgeReport(_Report):
    kind: Literal["purge"] = "purge"
    purged_requests: list[str]
    bytes_purged: NonNegative
    freed: bool


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


class ErrorReport(_Report):
    """An order the agent could not carry out (malformed, expired, crashed)."""

    kind: Literal["error"] = "error"
    task: str = Field(max_length=200)
    reason: str = Field(max_length=4000)


Report = Annotated[
    InventoryReport | PruneReport | RestoreReport | PurgeReport | FreeReport | HeartbeatReport | ErrorReport,
    Field(discriminator="kind"),
]
_REPORT = TypeAdapter(Report)


class SchemaError(ValueError):
    """A message that does not match the schema; ``str()`` is a reason fit to show a person."""


def _explain(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or "message"
        parts.append(f"{loc}: {err['msg']}")
    more = exc.error_count() - 5
    if more > 0:
        parts.append(f"and {more} more")
    return "; ".join(parts)


def _parse(adapter: TypeAdapter[Any], data: Any, what: str) -> Any:
    if not isinstance(data, dict):
        raise SchemaError(f"{what} must be a JSON object, got {type(data).__name__}")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise SchemaError(f"unsupported schema_version {version!r} (this side speaks {SCHEMA_VERSION})")
    try:
        return adapter.validate_python(data)
    except ValidationError as exc:
        raise SchemaError(_explain(exc)) from None


def parse_order(
    data: Any,
) -> InventoryOrder | FreeOrder | PruneOrder | RestoreOrder | PurgeOrder | MaintainOrder:
    """Validate an order dict; raises SchemaError with a readable reason."""
    return _parse(_ORDER, data, "order")


def parse_report(
    data: Any,
) -> InventoryReport | PruneReport | RestoreReport | PurgeReport | FreeReport | HeartbeatReport | ErrorReport:
    """Validate a report dict; raises SchemaError with a readable reason."""
    return _parse(_REPORT, data, "report")
