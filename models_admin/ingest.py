"""Validate and store what agents report: the only writer of snapshots and host facts.

One pipeline, each step in one place and entered once (``ingest_report``):

    parse (workers.schema) -> authenticate (trust) -> apply (APPLY[kind]) -> record (audit)

and one exit for everything that is not taken (``refuse``). A new report kind registers its
apply function with one line in ``APPLY`` at the bottom of this module.

Invariants:
- A report id is processed at most once. The ReceivedReport row is claimed (INSERT ... ON
  CONFLICT DO NOTHING) inside the same transaction as everything the report changes, so a
  redelivered message (acks_late, a worker lost mid-task, an agent that re-sends) changes nothing.
- A report is stored under a lock on its host's row: two reports of one host never interleave,
  so "is this inventory the same as the current snapshot" is decided on a stable snapshot.
- Every report must be signed by the key enrolled for the host it names (trust.py), checked
  before anything is stored; one that is not changes nothing and becomes a security audit event.
- Anything that cannot be accepted (malformed, unknown version, unknown or retired host) is
  kept as a rejected ReceivedReport with a readable reason and an audit event, never raised.
- Few statements per report: the host row is written by one UPDATE of the columns that
  changed, a new inventory's files by one INSERT (PostgreSQL: columns as arrays), its use by
  one upsert, the models summary by one statement, and an inventory
  identical to the current snapshot writes no audit event (it changed nothing: the snapshot's
  ``seen_count`` and ``last_seen_at`` say it was seen again).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import DataError, IntegrityError, connection, transaction
from django.db.models import Exists, F, OuterRef
from django.urls import reverse
from django.utils import timezone

from workers.schema import (
    ErrorReport,
    FileEntry,
    FreeReport,
    HeartbeatReport,
    InventoryReport,
    ProgressReport,
    PruneReport,
    PurgeReport,
    RestoreReport,
    SchemaError,
    parse_report,
)
from workers.signing.envelope import SIGNATURE_FIELD

from .approvals import workflow
from .capacity import usage as capacity_usage
from .fleet import feedback, hosts, presence, trust
from .inventory import lifecycle, rollup, summary
from .models import AuditEvent, Host, HostKey, ModelFile, PruneRequest, ReceivedReport, Snapshot
from .notifications import Event, notify
from .quarantine import purge as quarantine
from .security import roles

log = logging.getLogger(__name__)
Action = AuditEvent.Action

# A rejected report keeps this much of what arrived: enough to debug the sender, never the
# megabytes of a 100,000-file inventory.
MAX_STORED_PAYLOAD_CHARS = 16_000
_MAX_LIST_ITEMS = 20
_MAX_STRING_CHARS = 1_000
# ModelFile rows per INSERT where there is no unnest (SQLite): a few statements, not one per file.
BULK_BATCH = 2_000

AnyReport = (
    InventoryReport
    | PruneReport
    | RestoreReport
    | PurgeReport
    | FreeReport
    | HeartbeatReport
    | ProgressReport
    | ErrorReport
)


@dataclass(frozen=True)
class IngestResult:
    status: str  # "accepted", "rejected" or "duplicate"
    report_id: str | None
    reason: str = ""
    snapshot_id: int | None = None


class Refused(Exception):
    """Why a report is not taken: the one error of the pipeline, handled only by ``refuse``.

    ``security`` marks a sender that could not be trusted: its row keeps no report id (the id
    is only a claim, and storing it would let a forgery take a real report's id first).
    """

    def __init__(self, reason: str, *, security: bool = False, host: str = "", fingerprint: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.security = security
        self.host = host
        self.fingerprint = fingerprint


@dataclass
class Applied:
    """What applying one report changed: read by the host update and by ``record``."""

    # Host columns the report sets, written in one UPDATE with last_seen.
    host_fields: dict[str, Any] = field(default_factory=dict)
    # Small details for the REPORT_INGESTED event.
    details: dict[str, Any] = field(default_factory=dict)
    # Events of the report's own kind (resources freed, quarantine purged, agent error).
    events: list[AuditEvent] = field(default_factory=list)
    snapshot_id: int | None = None
    # False when the report changed nothing worth an audit event (an unchanged inventory).
    audit: bool = True


# apply(host locked by the caller, report, now) -> Applied. Runs inside the report's transaction.
Applier = Callable[[Host, Any, datetime], Applied]


def snapshot_digest(files: Iterable[FileEntry | ModelFile]) -> str:
    """sha256 over the sorted file rows: equal digests mean the same files, byte for byte.

    The one definition used both to decide "seen again" and to store Snapshot.digest; it
    covers every column a ModelFile keeps, so a seen-again snapshot loses nothing.
    """
    # The store joins a row only outside the LLM folder, so digests of one-store inventories
    # stay what they were and an unchanged host is not recorded as changed.
    rows = sorted(
        (f.path, f.size, f.mtime_ns, f.sha256 or "", bool(f.known_to_aspose), bool(f.is_symlink))
        + (() if str(f.store) == "llm" else (str(f.store),))
        for f in files
    )
    digest = hashlib.sha256()
    for row in rows:
        digest.update(json.dumps(row, separators=(",", ":")).encode())
        digest.update(b"\n")
    return digest.hexdigest()


# ---------------------------------------------------------------- the pipeline


def ingest_report(data: Any, received_at: datetime | None = None) -> IngestResult:
    """Store one signed report dict as it came off the queue. Never raises for bad input.

    ``received_at`` is when the report first arrived (a retry passes it on): its freshness
    is checked against that moment, once, never against a retry's clock.

    The signature is checked against the process's cached key of the host when it has one
    (no query); whatever the report's kind, the statement that applies it confirms that key
    is still the host's active one, and a report whose cached key was revoked or replaced
    since is checked again against the database.
    """
    report, problem = parse(data)
    authenticated = False
    try:
        auth = authenticate(data, received_at, cached=report is not None)
        authenticated = True
        if report is None:
            raise Refused(problem)
        if report.kind in UNCLAIMED:
            status, reason = UNCLAIMED[report.kind](report, timezone.now(), auth.key)
            if status != "accepted" and auth.cached:
                # The cached key may be revoked or replaced by now: ask the database, once.
                trust.forget(report.host)
                auth = authenticate(data, received_at)
                status, reason = UNCLAIMED[report.kind](report, timezone.now(), auth.key)
            return IngestResult(status, report.report_id, reason)
        try:
            return _apply_claimed(report, auth)
        except _StaleKey:
            trust.forget(report.host)
            return _apply_claimed(report, authenticate(data, received_at))
    except Refused as exc:
        return refuse(data, exc, report if authenticated else None)


class _StaleKey(Exception):
    """The cached key that verified a report is no longer the host's active key (the host lock
    says so): the report's transaction is rolled back and its signature checked again."""


def _apply_claimed(report: AnyReport, auth: trust.Authenticated) -> IngestResult:
    """A report with a ReceivedReport row and an audit trail, in one transaction under the
    host's row lock (which revocation and acceptance take too, so the key confirmed here
    stays the host's key until the report commits)."""
    with transaction.atomic():
        host, created = _lock_host(report, auth.key if auth.cached else None)
        if not _claim(report, host):
            transaction.set_rollback(True)  # undo a host registered for a duplicate
            log.info("report %s from %s already processed", report.report_id, report.host)
            return IngestResult("duplicate", report.report_id)
        registered = _registered_event(report, host) if created else None
        if auth.enrollment is not None:
            key = _enroll(host, auth.enrollment, report.report_id)
            if key is not None and key.candidate:
                # Signed by a key nobody accepted yet: the enrollment is kept for the
                # approver, the report's content is not (it could be a takeover's).
                reason = "new key enrolled; its reports are taken once an approver accepts it"
                ReceivedReport.objects.filter(report_id=report.report_id).update(reason=reason)
                return IngestResult("accepted", report.report_id, reason=reason)
        now = timezone.now()
        applied = APPLY[report.kind](host, report, now)
        feedback.answered(host, report)
        _update_host(host, report, applied, now)
        record(report, host, applied, registered)
    return IngestResult("accepted", report.report_id, snapshot_id=applied.snapshot_id)


def ingest_heartbeats(items: Sequence[tuple[Any, datetime | None]]) -> list[IngestResult]:
    """Several reports, heartbeats all or most of them, as ``ingest_report`` would store them one
    by one: each parsed and authenticated the same way, then one UPDATE for the beats
    (presence.apply_heartbeats) instead of one each. ``items`` are (report dict, received_at).

    Whatever is not a plain case goes the single way, which says why: a report of another
    kind, a beat the UPDATE did not take (retired host, a key revoked since it was cached, an
    older beat), the older beats of a host that sent several (one UPDATE changes a row once),
    and the beats that follow a report of another kind of their host (it may enroll the key
    they are signed with). Their order among themselves is kept; they run after the grouped beats, which are
    gauges whose newest ``sent_at`` wins whatever the order.
    """
    results: list[IngestResult | None] = [None] * len(items)
    newest: dict[str, tuple[int, HeartbeatReport, HostKey | None]] = {}
    single: list[int] = []
    # Hosts with a report of another kind earlier in the batch: their later beats wait for it
    # (an enrolling inventory and the host's first beat arrive together on its first start).
    reported: set[str] = set()
    for i, (data, received_at) in enumerate(items):
        report, _problem = parse(data)
        if not isinstance(report, HeartbeatReport) or report.host in reported:
            if report is not None:
                reported.add(report.host)
            single.append(i)
            continue
        try:
            auth = authenticate(data, received_at, cached=True)
        except Refused as exc:
            results[i] = refuse(data, exc, None)
            continue
        held = newest.get(report.host)
        if held is not None and held[1].sent_at >= report.sent_at:
            single.append(i)
            continue
        if held is not None:
            single.append(held[0])
        newest[report.host] = (i, report, auth.key)
    grouped = list(newest.values())
    taken = presence.apply_heartbeats([(report, key) for _, report, key in grouped], timezone.now())
    capacity_usage.record_heartbeat_disks(
        [(r.host, r.disk_free, r.disk_total) for (_, r, _), ok in zip(grouped, taken, strict=True) if ok],
        timezone.now(),
    )
    for (i, report, _key), ok in zip(grouped, taken, strict=True):
        if ok:
            results[i] = IngestResult("accepted", report.report_id)
        else:
            single.append(i)
    for i in sorted(single):
        results[i] = ingest_report(*items[i])
    done = [result for result in results if result is not None]
    assert len(done) == len(items)
    return done


def parse(data: Any) -> tuple[AnyReport | None, str]:
    """The report in ``data`` (signature aside), or None and the schema's reason.

    A schema problem is held until the sender is known: of a trusted sender it is refused
    with the report's id, of an untrusted one the security refusal wins.
    """
    body = {k: v for k, v in data.items() if k != SIGNATURE_FIELD} if isinstance(data, Mapping) else data
    try:
        return parse_report(body), ""
    except SchemaError as exc:
        return None, str(exc)


def authenticate(
    data: Any, received_at: datetime | None = None, *, cached: bool = False
) -> trust.Authenticated:
    """Who signed ``data`` (trust.authenticate, reads only); an untrusted sender is Refused.

    ``cached`` (the UNCLAIMED kinds, whose one statement confirms the key): the process's
    cached key of the host, without a query."""
    try:
        return trust.authenticate(data, received_at, cached=cached)
    except trust.Untrusted as exc:
        raise Refused(exc.reason, security=True, host=exc.host, fingerprint=exc.fingerprint) from None


def record(report: AnyReport, host: Host, applied: Applied, registered: AuditEvent | None) -> None:
    """The audit events of an accepted report, in the report's transaction."""
    events = [e for e in (registered, *applied.events) if e is not None]
    if applied.audit:
        events.append(
            AuditEvent.build(
                Action.REPORT_INGESTED,
                actor=_agent(report.host),
                host=report.host,
                kind=report.kind,
                report_id=report.report_id,
                request_id=report.request_id or "",
                **applied.details,
            )
        )
    for event in events:
        event.save()


def refuse(data: Any, refusal: Refused, report: AnyReport | None = None) -> IngestResult:
    """The one exit for a report not taken: a rejected ReceivedReport with its reason and an event.

    ``report`` is given only once its sender was authenticated; a security refusal stores no
    report id (the claimed one goes into the event's details).
    """
    fields = data if isinstance(data, Mapping) else {}
    report_id: str | None
    kind: str
    if report is not None:
        report_id, host_name, kind = report.report_id, report.host, report.kind
    else:
        report_id = _short_str(fields.get("report_id"), 64) or None
        host_name = _short_str(fields.get("host"), 255)
        kind = _short_str(fields.get("kind"), 32)
    if refusal.security:
        host_name = refusal.host or host_name
        reason = storable(f"security: {refusal.reason}")
        log.warning(
            "refused report %s claiming host %s: %s", report_id or "?", host_name or "?", refusal.reason
        )
    else:
        reason = storable(refusal.reason)
        log.warning("rejected report %s from %s: %s", report_id, host_name or "?", reason)
    try:
        with transaction.atomic():
            row = _store_rejected(data, None if refusal.security else report_id, host_name, kind, reason)
            if refusal.security:
                AuditEvent.record(
                    Action.SECURITY_REJECTED,
                    host=host_name[:128],
                    obj=row,
                    reason=storable(refusal.reason)[:500],
                    claimed_host=host_name,
                    claimed_report_id=report_id or "",
                    kind=kind,
                    signer=storable(trust.claimed_signer(data)),
                    fingerprint=refusal.fingerprint,
                )
                notify(
                    Event.REPORT_REFUSED,
                    f"A report claiming to come from {host_name or 'an unknown host'} was refused",
                    path=reverse("ocrdash-rejected-reports"),
                    host=host_name[:128],
                    lines=[f"Why: {refusal.reason[:500]}", "Nothing was changed; the report is kept."],
                    role=roles.Action.MANAGE_HOSTS,
                )
            else:
                AuditEvent.record(
                    Action.REPORT_REJECTED,
                    actor=_agent(host_name) if host_name else "system",
                    host=host_name[:128],
                    obj=row,
                    kind=kind,
                    report_id=report_id or "",
                    reason=reason[:500],
                )
    except IntegrityError:
        # The same rejected report delivered twice: the first row already tells the story.
        return IngestResult("duplicate", report_id, reason)
    return IngestResult("rejected", None if refusal.security else report_id, reason)


def reject(data: Any, reason: str) -> IngestResult:
    """Keep ``data`` as rejected for ``reason`` (the ingest task's last resort after a bug)."""
    return refuse(data, Refused(reason))


def _store_rejected(
    data: Any, report_id: str | None, host_name: str, kind: str, reason: str
) -> ReceivedReport:
    fields = {
        "report_id": report_id,
        "host_name": host_name,
        "host": Host.objects.filter(name=host_name).first() if host_name else None,
        "kind": kind,
        "status": ReceivedReport.Status.REJECTED,
        "reason": reason[:4000],
    }
    try:
        with transaction.atomic():
            return ReceivedReport.objects.create(**fields, payload=bounded_payload(data))
    except DataError:
        # bounded_payload escapes all we know PostgreSQL refuses; should anything else slip
        # through, the rejection is still kept, with the payload's repr instead of its JSON.
        payload = {"unstorable": storable(repr(data))[:MAX_STORED_PAYLOAD_CHARS]}
        return ReceivedReport.objects.create(**fields, payload=payload)


# ---------------------------------------------------------------- rejected payloads


def bounded_payload(data: Any) -> Any:
    """A JSON-storable, size-bounded copy of a payload for a rejected report.

    Lists are cut to their first items and long strings shortened; what PostgreSQL's jsonb
    cannot hold (NUL, lone surrogates, NaN and infinities) is written as visible escapes, so
    a hostile payload is kept and shown instead of crashing the store.
    """
    trimmed = _trim(trust.redacted(data), depth=0)
    text = json.dumps(trimmed, default=str)
    if len(text) <= MAX_STORED_PAYLOAD_CHARS:
        return trimmed
    return {"truncated": True, "chars": len(text), "head": text[:MAX_STORED_PAYLOAD_CHARS]}


def _trim(value: Any, depth: int) -> Any:
    if depth > 8:
        return "…"
    if isinstance(value, dict):
        return {_clean(str(k))[:200]: _trim(v, depth + 1) for k, v in list(value.items())[:100]}
    if isinstance(value, list | tuple):
        items = [_trim(v, depth + 1) for v in value[:_MAX_LIST_ITEMS]]
        if len(value) > _MAX_LIST_ITEMS:
            items.append(f"… {len(value) - _MAX_LIST_ITEMS} more")
        return items
    if isinstance(value, str):
        value = _clean(value)
        return value if len(value) <= _MAX_STRING_CHARS else value[:_MAX_STRING_CHARS] + "…"
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    return _clean(repr(value))[:_MAX_STRING_CHARS]


def storable(text: str) -> str:
    """``text`` as PostgreSQL text and jsonb hold it: NUL and lone surrogates as visible escapes."""
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    if text.isascii():
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


_clean = storable


def _short_str(value: Any, limit: int) -> str:
    return _clean(value)[:limit] if isinstance(value, str) else ""


def _agent(host_name: str) -> str:
    return f"agent:{host_name}"[:150]


# ---------------------------------------------------------------- steps inside the transaction


def _lock_host(report: AnyReport, cached_key: HostKey | None = None) -> tuple[Host, bool]:
    """The reporting host, locked, with its current snapshot. Only an inventory may introduce a
    new host (as pending).

    ``cached_key``: the cached key the report was verified with, confirmed in the same
    statement (still this host's, unrevoked, not a candidate); _StaleKey if it is not."""
    locked = Host.objects.select_for_update(of=("self",)).select_related("current_snapshot")
    query = locked.filter(name=report.host)
    if cached_key is not None:
        active = HostKey.objects.filter(
            pk=cached_key.pk, host=OuterRef("pk"), revoked_at__isnull=True, candidate=False
        )
        query = query.annotate(cached_key_active=Exists(active))
    host = query.first()
    if host is None:
        if cached_key is not None:
            raise _StaleKey  # the host the key was cached for is gone
        if not isinstance(report, InventoryReport):
            raise Refused(f"unknown host {report.host!r}: a new host must first send an inventory")
        # get_or_create: two first inventories of one host racing both end on the same row.
        host, created = Host.objects.get_or_create(name=report.host, defaults={"status": Host.Status.PENDING})
        return locked.get(pk=host.pk), created
    if cached_key is not None and not host.cached_key_active:  # type: ignore[attr-defined]  # annotated above
        raise _StaleKey
    if host.status == Host.Status.RETIRED:
        raise Refused(f"host {report.host!r} is retired: accept it again to take its reports")
    return host, False


def _claim(report: AnyReport, host: Host) -> bool:
    """Insert the report's ReceivedReport row; False if its id was already processed.

    ON CONFLICT instead of a savepoint around an INSERT that may fail: one statement, and a
    redelivery racing the first delivery waits on the unique index, then sees the conflict.
    """
    table = ReceivedReport._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (received_at, report_id, host_name, host_id, kind, status, reason)"
            " VALUES (%s, %s, %s, %s, %s, %s, '') ON CONFLICT (report_id) DO NOTHING RETURNING id",
            [
                connection.ops.adapt_datetimefield_value(timezone.now()),
                *(report.report_id, report.host, host.pk, report.kind, ReceivedReport.Status.ACCEPTED),
            ],
        )
        return cursor.fetchone() is not None


def _registered_event(report: AnyReport, host: Host) -> AuditEvent:
    return AuditEvent.build(
        Action.HOST_REGISTERED,
        actor=_agent(report.host),
        host=report.host,
        obj=host,
        report_id=report.report_id,
    )


def _enroll(host: Host, pending: trust.PendingEnrollment, report_id: str) -> HostKey | None:
    try:
        return hosts.enroll(host, pending, report_id=report_id)
    except trust.Untrusted as exc:
        raise Refused(exc.reason, security=True, host=exc.host, fingerprint=exc.fingerprint) from None


def _update_host(host: Host, report: AnyReport, applied: Applied, now: datetime) -> None:
    """One UPDATE of the host columns whose value this report changes (never a full-row save,
    which would also write columns other writers own, like status and acceptance)."""
    fields: dict[str, Any] = {"last_seen": now}
    if report.agent_version:
        fields["agent_version"] = report.agent_version
    fields.update(applied.host_fields)
    changed = {name: value for name, value in fields.items() if getattr(host, name) != value}
    Host.objects.filter(pk=host.pk).update(**changed)
    for name, value in changed.items():
        setattr(host, name, value)


# ---------------------------------------------------------------- apply, one function per kind


def apply_inventory(host: Host, report: InventoryReport, now: datetime) -> Applied:
    """A new snapshot, or the current one seen again when nothing on disk changed."""
    facts = report.facts
    paths = [(f.store, f.path) for f in report.files]
    if len(set(paths)) != len(paths):
        raise Refused("inventory lists the same path more than once")
    dir_state = facts.model_dir_state.value
    fields: dict[str, Any] = {
        "hostname": facts.hostname,
        "model_dir": facts.model_dir,
        "model_dir_state": dir_state,
        "disk_total": facts.disk_total,
        "disk_free": facts.disk_free,
        "aspose_version": facts.aspose_version,
        "agent_version": facts.agent_version or report.agent_version or host.agent_version,
    }
    if dir_state != Host.DirState.OK:
        state_label = Host.DirState(dir_state).label
        fields["last_error"] = (
            f"{state_label}: {facts.model_dir_error}" if facts.model_dir_error else state_label
        )
        fields["last_error_at"] = now
        if host.model_dir_state == Host.DirState.OK:
            notify(
                Event.MODEL_DIR_GONE,
                f"{host.name}: {state_label.lower()}",
                path=reverse("ocrdash-host", args=[host.name]),
                host=host.name,
                lines=[fields["last_error"]],
                role=roles.Action.MANAGE_HOSTS,
            )
    elif host.model_dir_state != Host.DirState.OK and host.last_error_at is not None:
        # The folder is back: its old complaint no longer describes the host.
        fields["last_error"], fields["last_error_at"] = "", None
    # Use changes with every read, so it is stored beside the snapshot, seen again or not.
    fields.update(capacity_usage.record_inventory(host, report, now))

    digest = snapshot_digest(report.files)
    current = host.current_snapshot
    if current is not None and current.digest == digest and current.model_dir_state == dir_state:
        Snapshot.objects.filter(pk=current.pk).update(last_seen_at=now, seen_count=F("seen_count") + 1)
        return Applied(
            host_fields=fields,
            snapshot_id=current.pk,
            details={"snapshot": current.pk, "files": current.file_count, "seen_again": True},
            audit=False,
        )
    snapshot = Snapshot.objects.create(
        host=host,
        taken_at=now,
        last_seen_at=now,
        digest=digest,
        file_count=len(report.files),
        total_bytes=sum(f.size for f in report.files),
        model_dir_state=dir_state,
        report_id=report.report_id,
    )
    insert_files(snapshot, report.files)
    # The models pages' summary follows the host's current files.
    summary.snapshot_changed(current.pk if current is not None else None, snapshot.pk)
    # Each model's lifecycle on this host: the names and contents that came or went.
    lifecycle.snapshot_changed(current.pk if current is not None else None, snapshot.pk)
    # The reports' daily fleet rollup: this snapshot's change against the one it replaces.
    rollup.record(snapshot, current)
    fields.update(current_snapshot=snapshot, file_count=snapshot.file_count, total_bytes=snapshot.total_bytes)
    return Applied(
        host_fields=fields,
        snapshot_id=snapshot.pk,
        details={
            "snapshot": snapshot.pk,
            "files": snapshot.file_count,
            "bytes": snapshot.total_bytes,
            "seen_again": False,
            "model_dir_state": dir_state,
        },
    )


def insert_files(snapshot: Snapshot, files: list[FileEntry]) -> None:
    """The snapshot's file rows: on PostgreSQL one INSERT of columns sent as arrays (``unnest``),
    whatever the number of files; elsewhere ``bulk_create`` in batches."""
    names = [f.path.rsplit("/", 1)[-1][:255] for f in files]
    if connection.vendor != "postgresql":
        ModelFile.objects.bulk_create(
            (
                ModelFile(
                    snapshot=snapshot,
                    path=f.path,
                    name=name,
                    size=f.size,
                    mtime_ns=f.mtime_ns,
                    sha256=f.sha256 or "",
                    known_to_aspose=f.known_to_aspose,
                    is_symlink=f.is_symlink,
                    store=f.store.value,
                )
                for f, name in zip(files, names, strict=True)
            ),
            batch_size=BULK_BATCH,
        )
        return
    with connection.cursor() as cursor:
        cursor.execute(
            _INSERT_FILES_SQL,
            [
                snapshot.pk,
                [f.path for f in files],
                names,
                [f.size for f in files],
                [f.mtime_ns for f in files],
                [f.sha256 or "" for f in files],
                [f.known_to_aspose for f in files],
                [f.is_symlink for f in files],
                [f.store.value for f in files],
            ],
        )


_INSERT_FILES_SQL = f"""
INSERT INTO {ModelFile._meta.db_table}
    (snapshot_id, path, name, size, mtime_ns, sha256, known_to_aspose, is_symlink, store)
SELECT %s, * FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::bigint[], %s::text[],
                         %s::boolean[], %s::boolean[], %s::text[])
"""


def apply_outcomes(host: Host, report: PruneReport | RestoreReport, now: datetime) -> Applied:
    """Per-item outcomes of a prune or restore order: the workflow finishes the request."""
    _check_request_of_host(host, report.request_id)
    request = workflow.record_outcomes(report.request_id, report.outcomes, report_id=report.report_id)
    details: dict[str, Any] = {"outcomes": len(report.outcomes), "freed": report.freed}
    if request is not None:
        details["state"] = request.state
    return Applied(details=details)


def apply_purge(host: Host, report: PurgeReport, now: datetime) -> Applied:
    event = AuditEvent.build(
        Action.QUARANTINE_PURGED,
        actor=_agent(host.name),
        host=host.name,
        obj=host,
        purged_requests=report.purged_requests[:50],
        bytes_purged=report.bytes_purged,
        # A purge cut short (agent killed, given up, an error): what is still in quarantine.
        **(
            {
                "kept_requests": sorted({k.request_id for k in report.kept})[:50],
                "bytes_kept": sum(k.bytes_left for k in report.kept),
                "detail": report.detail,
            }
            if report.kept or report.detail
            else {}
        ),
    )
    details: dict[str, Any] = {
        "purged_requests": len(report.purged_requests),
        "bytes_purged": report.bytes_purged,
    }
    if report.kept or report.detail:
        details.update(kept_requests=len({k.request_id for k in report.kept}), detail=report.detail)
    return Applied(details=details, events=[event, *quarantine.record_purge(host, report, now)])


def apply_free(host: Host, report: FreeReport, now: datetime) -> Applied:
    event = AuditEvent.build(
        Action.RESOURCES_FREED,
        actor=_agent(host.name),
        host=host.name,
        obj=host,
        freed=report.freed,
        request_id=report.request_id or "",
    )
    return Applied(details={"freed": report.freed}, events=[event])


def apply_error(host: Host, report: ErrorReport, now: datetime) -> Applied:
    """An order the agent could not carry out: marks the host and fails the request it names."""
    event = AuditEvent.build(
        Action.AGENT_ERROR,
        actor=_agent(host.name),
        host=host.name,
        obj=host,
        task=report.task,
        reason=report.reason[:500],
        request_id=report.request_id or "",
    )
    if report.request_id and _request_of_host(host, report.request_id):
        workflow.record_agent_error(report.request_id, report.reason)
    return Applied(
        host_fields={"last_error": f"{report.task}: {report.reason}", "last_error_at": now}, events=[event]
    )


def _request_of_host(host: Host, request_id: str | None) -> bool:
    try:
        rid = uuid.UUID(hex=request_id or "")
    except ValueError:
        return False
    return PruneRequest.objects.filter(id=rid, host=host).exists()


def _check_request_of_host(host: Host, request_id: str | None) -> None:
    # A host answers only for its own orders: outcomes naming another host's request are
    # refused rather than allowed to finish it.
    if not _request_of_host(host, request_id):
        raise Refused(f"request {request_id!r} is not a request of host {host.name!r}")


def apply_heartbeat(report: HeartbeatReport, now: datetime, key: HostKey | None) -> tuple[str, str]:
    """The beat's UPDATE (presence), then its free space as the day's disk point (capacity)."""
    status, reason = presence.apply_heartbeat(report, now, key)
    if status == "accepted":
        capacity_usage.record_heartbeat_disks([(report.host, report.disk_free, report.disk_total)], now)
    return status, reason


# Report kind -> its apply function. A new kind is one line here (and its class in workers.schema).
APPLY: dict[str, Applier] = {
    "inventory": apply_inventory,
    "prune": apply_outcomes,
    "restore": apply_outcomes,
    "purge": apply_purge,
    "free": apply_free,
    "error": apply_error,
}

# Kinds applied without a ReceivedReport row, a host lock or an audit event, after the same
# parse and authentication (against the process's cached key of the host, which their write
# confirms): a heartbeat is one UPDATE, idempotent by its own signed send time
# (fleet/presence.py). apply(report, now, signing key) -> (status, reason).
# A progress report is a gauge likewise: only a newer one moves its order's bar (feedback.py).
UNCLAIMED: dict[str, Callable[[Any, datetime, HostKey | None], tuple[str, str]]] = {
    "heartbeat": apply_heartbeat,
    "progress": feedback.apply_progress,
}
