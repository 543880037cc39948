"""Validate and store what agents report: the only writer of snapshots and host facts.

Invariants:
- A report id is processed at most once. The ReceivedReport row is inserted inside the same
  transaction as everything the report changes, so a redelivered message (acks_late, a
  worker lost mid-task, an agent that re-sends) hits the unique constraint and changes nothing.
- A report is stored under a lock on its host's row: two reports of one host never interleave,
  so "is this inventory the same as the latest snapshot" is decided on a stable latest snapshot.
- Anything that cannot be accepted (malformed, unknown version, unknown or retired host) is
  kept as a rejected ReceivedReport with a readable reason and an audit event, never raised.
- Every report must be signed by the key enrolled for the host it names (trust.py), checked
  before anything else; one that is not changes nothing and becomes a security audit event.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from workers.schema import (
    ErrorReport,
    FileEntry,
    FreeReport,
    InventoryReport,
    PruneReport,
    PurgeReport,
    RestoreReport,
    SchemaError,
    parse_report,
)

from . import trust, workflow
from .models import AuditEvent, Host, ModelFile, PruneRequest, ReceivedReport, Snapshot

log = logging.getLogger(__name__)
Action = AuditEvent.Action

# A rejected report keeps this much of what arrived: enough to debug the sender, never the
# megabytes of a 100,000-file inventory.
MAX_STORED_PAYLOAD_CHARS = 16_000
_MAX_LIST_ITEMS = 20
_MAX_STRING_CHARS = 1_000
# ModelFile rows per INSERT: large inventories go in a few statements, not one per file.
BULK_BATCH = 2_000

AnyReport = InventoryReport | PruneReport | RestoreReport | PurgeReport | FreeReport | ErrorReport


@dataclass(frozen=True)
class IngestResult:
    status: str  # "accepted", "rejected" or "duplicate"
    report_id: str | None
    reason: str = ""
    snapshot_id: int | None = None


class _Rejected(Exception):
    """A valid report the dashboard will not take (unknown or retired host, foreign request)."""


def snapshot_digest(files: Iterable[FileEntry | ModelFile]) -> str:
    """sha256 over the sorted file rows: equal digests mean the same files, byte for byte.

    The one definition used both to decide "seen again" and to store Snapshot.digest; it
    covers every column a ModelFile keeps, so a seen-again snapshot loses nothing.
    """
    rows = sorted(
        (f.path, f.size, f.mtime_ns, f.sha256 or "", bool(f.known_to_aspose), bool(f.is_symlink))
        for f in files
    )
    digest = hashlib.sha256()
    for row in rows:
        digest.update(json.dumps(row, separators=(",", ":")).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def ingest_report(data: Any) -> IngestResult:
    """Store one signed report dict as it came off the queue. Never raises for bad input."""
    try:
        auth = trust.authenticate(data)
    except trust.Untrusted as exc:
        return reject_untrusted(data, exc)
    try:
        report = parse_report(auth.body)
    except SchemaError as exc:
        return reject(data, str(exc))
    try:
        with transaction.atomic():
            host, created = _host_for(report)
            try:
                # A savepoint of its own: the IntegrityError of a duplicate must not poison
                # the outer transaction, which then simply ends without changing anything.
                with transaction.atomic():
                    ReceivedReport.objects.create(
                        report_id=report.report_id,
                        host_name=report.host,
                        host=host,
                        kind=report.kind,
                        status=ReceivedReport.Status.ACCEPTED,
                    )
            except IntegrityError:
                transaction.set_rollback(True)  # undo a host registered for a duplicate
                log.info("report %s from %s already processed", report.report_id, report.host)
                return IngestResult("duplicate", report.report_id)
            if created:
                AuditEvent.record(
                    Action.HOST_REGISTERED,
                    actor=_agent(report.host),
                    host=report.host,
                    obj=host,
                    report_id=report.report_id,
                )
            if auth.enrollment is not None:
                key = trust.enroll(host, auth.enrollment, report_id=report.report_id)
                if key is not None and key.candidate:
                    # Signed by a key nobody accepted yet: the enrollment is kept for the
                    # approver, the report's content is not (it could be a takeover's).
                    reason = "new key enrolled; its reports are taken once an approver accepts it"
                    ReceivedReport.objects.filter(report_id=report.report_id).update(reason=reason)
                    return IngestResult("accepted", report.report_id, reason=reason)
            snapshot_id, details = _apply(host, report)
            AuditEvent.record(
                Action.REPORT_INGESTED,
                actor=_agent(report.host),
                host=report.host,
                kind=report.kind,
                report_id=report.report_id,
                request_id=report.request_id or "",
                **details,
            )
    except _Rejected as exc:
        return reject(data, str(exc), report=report)
    except trust.Untrusted as exc:
        return reject_untrusted(data, exc)
    return IngestResult("accepted", report.report_id, snapshot_id=snapshot_id)


def reject_untrusted(data: Any, exc: trust.Untrusted) -> IngestResult:
    """Keep a report whose sender could not be trusted, and raise a security audit event.

    The row has no report id: the id is only a claim, and storing it would let a forgery take
    a real report's id before the real one arrives. The claimed id is kept in the details.
    """
    fields = data if isinstance(data, dict) else {}
    host_name = exc.host or _short_str(fields.get("host"), 255)
    claimed_id = _short_str(fields.get("report_id"), 64)
    kind = _short_str(fields.get("kind"), 32)
    reason = f"security: {exc.reason}"
    log.warning("refused report %s claiming host %s: %s", claimed_id or "?", host_name or "?", exc.reason)
    with transaction.atomic():
        row = _store_rejected(data, None, host_name, kind, reason)
        AuditEvent.record(
            Action.SECURITY_REJECTED,
            host=host_name[:128],
            obj=row,
            reason=exc.reason[:500],
            claimed_host=host_name,
            claimed_report_id=claimed_id,
            kind=kind,
            signer=trust.claimed_signer(data),
            fingerprint=exc.fingerprint,
        )
    return IngestResult("rejected", None, reason)


def reject(data: Any, reason: str, report: AnyReport | None = None) -> IngestResult:
    """Keep a report the dashboard will not take, with its reason, for the rejected-reports page."""
    if report is not None:
        report_id, host_name, kind = report.report_id, report.host, report.kind
    else:
        fields = data if isinstance(data, dict) else {}
        report_id = _short_str(fields.get("report_id"), 64) or None
        host_name = _short_str(fields.get("host"), 255)
        kind = _short_str(fields.get("kind"), 32)
    log.warning("rejected report %s from %s: %s", report_id, host_name or "?", reason)
    try:
        with transaction.atomic():
            row = _store_rejected(data, report_id, host_name, kind, reason)
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
    return IngestResult("rejected", report_id, reason)


def _store_rejected(
    data: Any, report_id: str | None, host_name: str, kind: str, reason: str
) -> ReceivedReport:
    return ReceivedReport.objects.create(
        report_id=report_id,
        host_name=host_name,
        host=Host.objects.filter(name=host_name).first() if host_name else None,
        kind=kind,
        status=ReceivedReport.Status.REJECTED,
        reason=reason[:4000],
        payload=bounded_payload(data),
    )


def bounded_payload(data: Any) -> Any:
    """A JSON-storable, size-bounded copy of a payload for a rejected report.

    Lists are cut to their first items and long strings shortened; NUL characters are dropped
    because PostgreSQL's jsonb cannot hold them (a hostile payload must not crash the store).
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
    if value is None or isinstance(value, bool | int | float):
        return value
    return _clean(repr(value))[:_MAX_STRING_CHARS]


def _clean(text: str) -> str:
    return text.replace("\x00", "")


def _short_str(value: Any, limit: int) -> str:
    return _clean(value)[:limit] if isinstance(value, str) else ""


def _agent(host_name: str) -> str:
    return f"agent:{host_name}"[:150]


def _host_for(report: AnyReport) -> tuple[Host, bool]:
    """The reporting host, locked. Only an inventory may introduce a new host (as pending)."""
    host = Host.objects.select_for_update().filter(name=report.host).first()
    if host is None:
        if not isinstance(report, InventoryReport):
            raise _Rejected(f"unknown host {report.host!r}: a new host must first send an inventory")
        # get_or_create: two first inventories of one host racing both end on the same row.
        host, created = Host.objects.get_or_create(name=report.host, defaults={"status": Host.Status.PENDING})
        host = Host.objects.select_for_update().get(pk=host.pk)
        return host, created
    if host.status == Host.Status.RETIRED:
        raise _Rejected(f"host {report.host!r} is retired: accept it again to take its reports")
    return host, False


def _apply(host: Host, report: AnyReport) -> tuple[int | None, dict]:
    """Change what the report changes; returns (snapshot id, small details for the audit)."""
    now = timezone.now()
    host.last_seen = now
    update = ["last_seen"]
    if report.agent_version:
        host.agent_version = report.agent_version
        update.append("agent_version")
    snapshot_id = None
    details: dict[str, Any] = {}
    match report:
        case InventoryReport():
            snapshot_id, details = _store_inventory(host, report, now)
            update = None  # _store_inventory set many fields: save them all
        case PruneReport() | RestoreReport():
            _check_request_of_host(host, report.request_id)
            request = workflow.record_outcomes(report.request_id, report.outcomes, report_id=report.report_id)
            details = {"outcomes": len(report.outcomes), "freed": report.freed}
            if request is not None:
                details["state"] = request.state
        case PurgeReport():
            AuditEvent.record(
                Action.QUARANTINE_PURGED,
                actor=_agent(host.name),
                host=host.name,
                obj=host,
                purged_requests=report.purged_requests[:50],
                bytes_purged=report.bytes_purged,
            )
            details = {"purged_requests": len(report.purged_requests), "bytes_purged": report.bytes_purged}
        case FreeReport():
            AuditEvent.record(
                Action.RESOURCES_FREED,
                actor=_agent(host.name),
                host=host.name,
                obj=host,
                freed=report.freed,
                request_id=report.request_id or "",
            )
            details = {"freed": report.freed}
        case ErrorReport():
            host.last_error = f"{report.task}: {report.reason}"
            host.last_error_at = now
            update += ["last_error", "last_error_at"]
            AuditEvent.record(
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
    host.save(update_fields=update)
    return snapshot_id, details


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
        raise _Rejected(f"request {request_id!r} is not a request of host {host.name!r}")


def _store_inventory(host: Host, report: InventoryReport, now) -> tuple[int, dict]:
    facts = report.facts
    paths = [f.path for f in report.files]
    if len(set(paths)) != len(paths):
        raise _Rejected("inventory lists the same path more than once")
    was_ok = host.model_dir_state == Host.DirState.OK
    host.hostname = facts.hostname
    host.model_dir = facts.model_dir
    host.model_dir_state = facts.model_dir_state.value
    host.disk_total = facts.disk_total
    host.disk_free = facts.disk_free
    host.aspose_version = facts.aspose_version
    host.agent_version = facts.agent_version or report.agent_version or host.agent_version
    if facts.model_dir_state.value != Host.DirState.OK:
        state_label = Host.DirState(facts.model_dir_state.value).label
        host.last_error = f"{state_label}: {facts.model_dir_error}" if facts.model_dir_error else state_label
        host.last_error_at = now
    elif not was_ok and host.last_error_at is not None:
        # The folder is back: its old complaint no longer describes the host.
        host.last_error, host.last_error_at = "", None

    digest = snapshot_digest(report.files)
    latest = host.snapshots.order_by("-taken_at", "-id").first()
    if latest is not None and latest.digest == digest and latest.model_dir_state == facts.model_dir_state:
        Snapshot.objects.filter(pk=latest.pk).update(last_seen_at=now, seen_count=F("seen_count") + 1)
        snapshot, seen_again = latest, True
    else:
        snapshot = Snapshot.objects.create(
            host=host,
            taken_at=now,
            last_seen_at=now,
            digest=digest,
            file_count=len(report.files),
            total_bytes=sum(f.size for f in report.files),
            model_dir_state=facts.model_dir_state.value,
            report_id=report.report_id,
        )
        ModelFile.objects.bulk_create(
            (
                ModelFile(
                    snapshot=snapshot,
                    path=f.path,
                    name=f.path.rsplit("/", 1)[-1][:255],
                    size=f.size,
                    mtime_ns=f.mtime_ns,
                    sha256=f.sha256 or "",
                    known_to_aspose=f.known_to_aspose,
                    is_symlink=f.is_symlink,
                )
                for f in report.files
            ),
            batch_size=BULK_BATCH,
        )
        seen_again = False
    host.current_snapshot = snapshot
    host.file_count = snapshot.file_count
    host.total_bytes = snapshot.total_bytes
    return snapshot.pk, {
        "snapshot": snapshot.pk,
        "files": snapshot.file_count,
        "bytes": snapshot.total_bytes,
        "seen_again": seen_again,
        "model_dir_state": facts.model_dir_state.value,
    }
