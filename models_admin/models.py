"""The dashboard's domain: hosts, their inventory history, prune requests, and the audit trail.

Transitions of a PruneRequest live in ``approvals/workflow.py`` (the one place); ingestion of agent
reports in ``models_admin/ingest.py``. These classes hold data, invariants and small read helpers.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import models
from django.utils import timezone

from workers.schema import HOST_NAME_PATTERN, AtimeMode, Outcome, PruneMode, Store

from .masking import mask_url

# A file's store (workers.schema.Store): AsposeAI's LLM folder or the OCR engine's resources.
StoreChoices = models.TextChoices(  # type: ignore[call-overload]  # functional API, as PruneRequest.Mode
    "StoreChoices", [("LLM", ("llm", "LLM folder")), ("OCR", ("ocr", "OCR resources"))]
)
assert {c.value for c in StoreChoices} == {s.value for s in Store}, (
    "StoreChoices must follow workers.schema.Store"
)


class Host(models.Model):
    """An OCR host running the agent. Known by its name, which is also its queue's suffix."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending approval"  # reported itself; no order is sent to it
        ACTIVE = "active", "Active"
        RETIRED = "retired", "Retired"  # hidden from the overview; its history stays

    class DirState(models.TextChoices):
        OK = "ok", "OK"
        MISSING = "missing", "Model folder missing"
        UNREADABLE = "unreadable", "Model folder unreadable"
        UNKNOWN = "unknown", "Not reported yet"

    name = models.CharField(max_length=128, unique=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    first_seen = models.DateTimeField(default=timezone.now)
    last_seen = models.DateTimeField(null=True, blank=True)
    hostname = models.CharField(max_length=255, blank=True)
    agent_version = models.CharField(max_length=64, blank=True)
    aspose_version = models.CharField(max_length=64, blank=True)
    model_dir = models.CharField(max_length=4096, blank=True)
    model_dir_state = models.CharField(max_length=16, choices=DirState.choices, default=DirState.UNKNOWN)
    disk_total = models.BigIntegerField(null=True, blank=True)
    disk_free = models.BigIntegerField(null=True, blank=True)
    # Days until the disk is full from the fit over the daily series (capacity/forecast.py),
    # stored when a day's sample is recorded so the fleet page sorts a column; null with a note.
    forecast_days = models.FloatField(null=True, blank=True)
    forecast_note = models.CharField(max_length=40, blank=True)
    # Capacity alerts already told (capacity/alerts.py), so a crossing is told once and not at
    # every report: set when told, cleared once the condition no longer holds.
    forecast_alerted = models.BooleanField(default=False)
    watermark_alerted = models.BooleanField(default=False)
    # Denormalised from the current snapshot so the overview is one query for any fleet size.
    current_snapshot = models.ForeignKey(
        "Snapshot", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    file_count = models.PositiveIntegerField(default=0)
    total_bytes = models.BigIntegerField(default=0)
    last_error = models.TextField(blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.CharField(max_length=150, blank=True)
    accepted_at = models.DateTimeField(null=True, blank=True)
    # Presence (fleet/presence.py), written by one UPDATE per heartbeat. ``heartbeat_sent_at`` is
    # the agent's own send time of the newest beat taken: an older or replayed beat changes nothing.
    heartbeat_seconds = models.PositiveIntegerField(null=True, blank=True)
    last_heartbeat_at = models.DateTimeField(null=True, blank=True)
    heartbeat_sent_at = models.DateTimeField(null=True, blank=True)
    backlog = models.PositiveIntegerField(null=True, blank=True)
    # Labels (fleet/labels.py). ``labels`` are set by approvers and the API and are what campaigns
    # target; ``reported_labels`` are what the host's own configuration says, shown apart, never
    # enough on their own to put a host into a campaign.
    labels = models.JSONField(default=dict, blank=True)
    reported_labels = models.JSONField(default=dict, blank=True)
    # Every store of the last inventory (workers.schema.StoreFacts as JSON: store, root, state,
    # error, atime_mode, mount_point), shown side by side on the host page.
    stores = models.JSONField(default=list, blank=True)
    # When the agent last looked through /proc for holders of model files ("in use now").
    open_checked_at = models.DateTimeField(null=True, blank=True)
    open_check_error = models.TextField(blank=True)
    # Digest of the last inventory's usage (capacity.usage): unchanged use writes no usage row.
    usage_digest = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["name"]
        indexes = [
            # Groups page: the labels in use, read from the labeled hosts alone (a fleet that
            # labels few of its 10,000 hosts scanned them all for nothing).
            models.Index(fields=["name"], condition=~models.Q(labels={}), name="host_labeled"),
            # Reports: the 30 biggest hosts (and the fleet page sorted by size) read off the top.
            models.Index(models.F("total_bytes").desc(), name="host_size"),
        ]

    def __str__(self) -> str:
        return self.name

    NAME_PATTERN = HOST_NAME_PATTERN

    # A host that heartbeats is offline once this many beats in a row did not arrive.
    MISSED_BEATS_OFFLINE = 3

    def offline_after(self) -> timedelta:
        """Silence after which this host counts as offline.

        A host that heartbeats (``heartbeat_seconds`` set by its beats): three missed beats.
        An agent too old to heartbeat reports only on inventories and answers, so it keeps the
        longer OCRDASH["HOST_OFFLINE_AFTER_MINUTES"] (above the inventory interval, or a healthy
        host would blink offline).
        """
        if self.heartbeat_seconds:
            return timedelta(seconds=self.MISSED_BEATS_OFFLINE * self.heartbeat_seconds)
        return timedelta(minutes=settings.OCRDASH["HOST_OFFLINE_AFTER_MINUTES"])

    def presence(self, now=None) -> str:
        """never (registered, no report yet), online, offline or missing, by silence since
        anything was last heard from it (a heartbeat or any other report)."""
        if self.last_seen is None:
            return "never"
        silent = (now or timezone.now()) - self.last_seen
        if silent > timedelta(minutes=settings.OCRDASH["HOST_MISSING_AFTER_MINUTES"]):
            return "missing"
        if silent > self.offline_after():
            return "offline"
        return "online"

    def is_missing(self, now=None) -> bool:
        return self.presence(now) == "missing"

    @property
    def accepts_orders(self) -> bool:
        return self.status == self.Status.ACTIVE

    @property
    def active_key(self) -> HostKey | None:
        """The key this host's reports must be signed with, if it has one (trust.py)."""
        return self.keys.filter(revoked_at__isnull=True, candidate=False).first()

    @property
    def candidate_key(self) -> HostKey | None:
        """A new key enrolled over an active one, waiting for an approver (hosts.accept_new_key)."""
        return self.keys.filter(revoked_at__isnull=True, candidate=True).first()


class Snapshot(models.Model):
    """One distinct inventory of a host.

    An inventory identical to the host's previous one (same digest) is not stored again: the
    latest snapshot's ``last_seen_at`` and ``seen_count`` move instead, so history grows with
    change, not with time. A snapshot is therefore valid from ``taken_at`` until the next
    snapshot's ``taken_at``.
    """

    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="snapshots")
    taken_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)
    seen_count = models.PositiveIntegerField(default=1)
    # sha256 over the sorted (path, size, mtime_ns, sha256, known_to_aspose, is_symlink) rows.
    digest = models.CharField(max_length=64)
    file_count = models.PositiveIntegerField(default=0)
    total_bytes = models.BigIntegerField(default=0)
    model_dir_state = models.CharField(max_length=16, choices=Host.DirState.choices, default=Host.DirState.OK)
    report_id = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["-taken_at", "-id"]
        indexes = [
            # Host page history and "what did host X hold at time T": latest taken_at <= T.
            models.Index(fields=["host", "-taken_at"], name="snapshot_host_time"),
        ]

    def __str__(self) -> str:
        return f"{self.host.name} @ {self.taken_at:%Y-%m-%d %H:%M}"


class ModelFile(models.Model):
    """One file in one snapshot, named by identity (path, size, mtime_ns, sha256)."""

    snapshot = models.ForeignKey(Snapshot, on_delete=models.CASCADE, related_name="files")
    path = models.CharField(max_length=4096)
    # The file name without folders: the "model" users look for across the fleet.
    name = models.CharField(max_length=255)
    size = models.BigIntegerField()
    mtime_ns = models.BigIntegerField()
    sha256 = models.CharField(max_length=64, blank=True)
    known_to_aspose = models.BooleanField(default=False)
    is_symlink = models.BooleanField(default=False)
    store = models.CharField(max_length=8, choices=StoreChoices.choices, default=Store.LLM.value)

    class Meta:
        ordering = ["store", "path"]
        constraints = [
            models.UniqueConstraint(fields=["snapshot", "store", "path"], name="modelfile_unique_store_path")
        ]
        indexes = [
            # Model page: which hosts hold this name / this hash.
            models.Index(fields=["name"], name="modelfile_name"),
            # A model's page: each host's current snapshot probed for the name, one row each,
            # in host-name order until the page is full (instead of reading all 50 files).
            models.Index(fields=["snapshot", "name"], name="modelfile_snapshot_name"),
            models.Index(fields=["sha256"], name="modelfile_sha256"),
        ]

    def __str__(self) -> str:
        return self.path

    @property
    def mtime(self) -> datetime:
        return datetime.fromtimestamp(self.mtime_ns / 1e9, tz=UTC)

    def identity(self) -> dict:
        return {
            "path": self.path,
            "size": self.size,
            "mtime_ns": self.mtime_ns,
            "sha256": self.sha256,
            "store": self.store,
        }


def request_rank() -> models.Case:
    """Where a request sorts on the requests page: waiting for a person (0), in flight (1),
    history (2). The view orders by it and an index is built on it: both must be this one
    expression, to the letter, for PostgreSQL to read the page off the index."""
    return models.Case(
        models.When(state="proposed", then=models.Value(0)),
        models.When(state__in=["approved", "dispatched"], then=models.Value(1)),
        default=models.Value(2),
        output_field=models.IntegerField(),
    )


class PruneRequest(models.Model):
    """A request to prune (or restore) files on one host. Transitions: see workflow.py."""

    class Kind(models.TextChoices):
        PRUNE = "prune", "Prune"
        RESTORE = "restore", "Restore"

    class State(models.TextChoices):
        PROPOSED = "proposed", "Proposed"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"
        EXPIRED = "expired", "Expired"
        WITHDRAWN = "withdrawn", "Withdrawn"  # by its proposer, before anyone decided
        DISPATCHED = "dispatched", "Dispatched"
        COMPLETED = "completed", "Completed"
        PARTIAL = "partial", "Partially completed"
        FAILED = "failed", "Failed"

    OPEN_STATES = (State.PROPOSED, State.APPROVED, State.DISPATCHED)

    # Django's functional form, built from the schema's enum so the two cannot drift; the stubs
    # know only its one-member form.
    Mode = models.TextChoices("Mode", [(m.name, m.value) for m in PruneMode])  # type: ignore[call-overload]

    # UUIDs in public URLs and in orders: nothing to enumerate, nothing to guess.
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    host = models.ForeignKey(Host, on_delete=models.PROTECT, related_name="prune_requests")
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.PRUNE)
    state = models.CharField(max_length=16, choices=State.choices, default=State.PROPOSED)
    mode = models.CharField(max_length=16, choices=Mode.choices, default=PruneMode.QUARANTINE.value)
    reason = models.TextField()
    policy = models.CharField(max_length=64, default="manual")
    # The snapshot whose identities the items carry (what the approver saw).
    snapshot = models.ForeignKey(Snapshot, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # For a restore: the prune request whose quarantine it moves back.
    restore_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="restores"
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_comment = models.TextField(blank=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    dispatch_attempts = models.PositiveSmallIntegerField(default=0)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Moved out of the model folder (quarantined) or deleted at once; still on the disk while quarantined.
    bytes_reclaimed = models.BigIntegerField(default=0)
    # A host's part of a campaign (campaigns/): approved once for every host, then an ordinary
    # request, so identity checks, outcomes, restore and audit are the same code.
    campaign = models.ForeignKey(
        "Campaign", null=True, blank=True, on_delete=models.PROTECT, related_name="requests"
    )
    # Given back to the disk by a purge of this request's quarantine (models_admin.quarantine).
    bytes_purged = models.BigIntegerField(default=0)
    purged_at = models.DateTimeField(null=True, blank=True)
    # Of bytes_reclaimed: moved back to the model folder by restores of this request
    # (approvals.workflow counts it when a restore's answer arrives). A purge afterwards finds
    # those files gone from the quarantine folder and counts only what was still there.
    bytes_restored = models.BigIntegerField(default=0)
    # Of bytes_reclaimed: left the quarantine without a purge report counting it freed (a file
    # gone from the folder before the purge, or what a purge cut short deleted before it
    # stopped). Set by each purge report (quarantine.purge.record_purge) so that
    # bytes_in_quarantine is what the agent says is still there.
    bytes_gone = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # Requests page (pending first), sweeper of expired/unanswered requests.
            models.Index(fields=["state", "-created_at"], name="request_state_time"),
            models.Index(fields=["host", "state"], name="request_host_state"),
            # The requests page's order (``request_rank``), read as an index range: its page
            # of 50 is the first 50 entries, not a sort of every request ever made.
            models.Index(request_rank(), models.F("created_at").desc(), name="request_rank_time"),
            # The API's list, newest first.
            models.Index(models.F("created_at").desc(), name="request_time"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.short_id} on {self.host.name}"

    @property
    def short_id(self) -> str:
        return self.id.hex[:8]

    @property
    def is_open(self) -> bool:
        return self.state in self.OPEN_STATES

    @property
    def bytes_in_quarantine(self) -> int:
        """Moved aside by this prune and still on the host's disk: neither restored, nor purged,
        nor gone from the folder by the purge (``bytes_gone``)."""
        if self.kind != self.Kind.PRUNE or self.mode == PruneMode.DELETE.value:
            return 0
        return max(self.bytes_reclaimed - self.bytes_purged - self.bytes_restored - self.bytes_gone, 0)

    @property
    def bytes_freed(self) -> int:
        """Given back to the host's disk: deleted at once, or purged from quarantine since."""
        if self.kind != self.Kind.PRUNE:
            return 0
        return self.bytes_reclaimed if self.mode == PruneMode.DELETE.value else self.bytes_purged

    @property
    def requested_by_name(self) -> str:
        return self.requested_by.get_username() if self.requested_by else "policy"


def restored() -> models.Exists:
    """The item's file was moved back from quarantine by a restore of its request: the agent
    answered ``restored`` for the same (store, path) in a restore whose ``restore_of`` is the
    item's request. The prune's own item keeps ``quarantined`` (what that prune did); this says
    what happened since.

    Such a file gave no space back in the end: it counts in no reclaimed total, the deletions
    audit shows it as restored, and it is no longer in quarantine (``in_quarantine``). (A
    subquery, so the query count stays fixed.)
    """
    # By (store, path): the model folder and Aspose's OCR resources folder are two roots, and
    # the same relative path in both is two files (restoring one gives nothing of the other back).
    return models.Exists(
        PruneItem.objects.filter(
            request__restore_of=models.OuterRef("request"),
            store=models.OuterRef("store"),
            path=models.OuterRef("path"),
            outcome=Outcome.RESTORED.value,
        )
    )


class PruneItem(models.Model):
    """One file of a request, by identity, and how it ended on the host."""

    # "purged": the file was quarantined and its request's quarantine folder is gone since.
    # "missing": it was quarantined, and the purge found it no longer in that folder (deleted or
    # lost outside ocrdash): neither freed by the purge nor in quarantine.
    Outcome = models.TextChoices(  # type: ignore[call-overload]  # as Mode above
        "Outcome",
        [("PENDING", "pending")]
        + [(o.name, o.value) for o in Outcome]
        + [("PURGED", "purged"), ("MISSING", "missing")],
    )

    request = models.ForeignKey(PruneRequest, on_delete=models.CASCADE, related_name="items")
    path = models.CharField(max_length=4096)
    size = models.BigIntegerField()
    mtime_ns = models.BigIntegerField()
    sha256 = models.CharField(max_length=64)
    known_to_aspose = models.BooleanField(default=False)
    store = models.CharField(max_length=8, choices=StoreChoices.choices, default=Store.LLM.value)
    outcome = models.CharField(max_length=32, choices=Outcome.choices, default="pending")
    detail = models.TextField(blank=True)
    bytes_reclaimed = models.BigIntegerField(default=0)
    finished_at = models.DateTimeField(null=True, blank=True)
    # "A file is in at most one open prune request" is the database's to enforce: while the
    # item's prune request is open, open_on_host is its host (else NULL), and a partial unique
    # index covers (open_on_host, store, path_digest). The digest (sha256 of the path) stands for
    # the path because a btree entry cannot hold a 4096-byte path. workflow sets both.
    open_on_host = models.ForeignKey(
        "Host", null=True, blank=True, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    path_digest = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        ordering = ["store", "path"]
        constraints = [
            models.UniqueConstraint(fields=["request", "store", "path"], name="pruneitem_unique_store_path"),
            models.UniqueConstraint(
                fields=["open_on_host", "store", "path_digest"],
                condition=models.Q(open_on_host__isnull=False),
                name="pruneitem_one_open_request_per_file",
            ),
        ]

    def __str__(self) -> str:
        return self.path

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @staticmethod
    def in_quarantine() -> models.Q:
        """Items whose file is in their request's quarantine folder now: quarantined, and
        neither purged since (the outcome moves to ``purged``) nor moved back by a restore the
        agent confirmed (``restored``). The one rule for the request page's Restore and Purge
        buttons, for what a restore proposes and for what the purge picks and marks."""
        return models.Q(~restored(), outcome=Outcome.QUARANTINED.value)

    @staticmethod
    def with_restored(items: models.QuerySet[PruneItem] | None = None) -> models.QuerySet[PruneItem]:
        """``items`` (all by default) with ``restored`` read in the same query, for ``state_now``."""
        return (PruneItem.objects.all() if items is None else items).annotate(restored=restored())

    @property
    def state_now(self) -> str:
        """What is true of the file now, for every place that shows it: the item's outcome, but
        ``restored`` for a file this prune quarantined and a restore has moved back since. The
        outcome itself keeps what the prune did (its audit, the reports' reclaimed weeks)."""
        if self.outcome == Outcome.QUARANTINED.value and self._restored():
            return Outcome.RESTORED.value
        return self.outcome

    @property
    def is_in_quarantine(self) -> bool:
        """``in_quarantine`` for one item read ``with_restored``."""
        return self.outcome == Outcome.QUARANTINED.value and not self._restored()

    def _restored(self) -> bool:
        # Set by ``with_restored`` (the ``restored`` subquery). An item read without it raises
        # here (KeyError), so a page that forgot it fails instead of saying "quarantined".
        return bool(vars(self)["restored"])

    @staticmethod
    def digest_of(path: str) -> str:
        """The path's stand-in in the one-open-request index (``path_digest``)."""
        return hashlib.sha256(path.encode("utf-8")).hexdigest()


class ReceivedReport(models.Model):
    """Every report that reached ingest: accepted ones (for idempotency) and rejected ones
    (with the reason, shown in the UI). A report id is processed at most once."""

    class Status(models.TextChoices):
        ACCEPTED = "accepted", "Accepted"
        REJECTED = "rejected", "Rejected"

    received_at = models.DateTimeField(default=timezone.now)
    # Null only for a payload so malformed it carried no usable id.
    report_id = models.CharField(max_length=64, null=True, blank=True, unique=True)
    host_name = models.CharField(max_length=255, blank=True)
    host = models.ForeignKey(Host, null=True, blank=True, on_delete=models.SET_NULL, related_name="reports")
    kind = models.CharField(max_length=32, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices)
    reason = models.TextField(blank=True)
    # Rejected reports keep (a bounded part of) what arrived, to debug the sender.
    payload = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at"]
        indexes = [models.Index(fields=["status", "-received_at"], name="report_status_time")]

    def __str__(self) -> str:
        return f"{self.kind or 'report'} from {self.host_name or '?'} ({self.status})"


class AuditQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise PermissionDenied("audit events cannot be changed")

    def delete(self):
        raise PermissionDenied("audit events cannot be deleted")


class AuditEvent(models.Model):
    """Who did what, when, on which host. Append-only.

    No foreign keys on purpose: deleting a user or a host must not rewrite history (and
    on PostgreSQL a trigger refuses UPDATE and DELETE on this table, see migration 0002).
    """

    class Action(models.TextChoices):
        REPORT_INGESTED = "report_ingested", "Report ingested"
        REPORT_REJECTED = "report_rejected", "Report rejected"
        HOST_REGISTERED = "host_registered", "Host registered"
        HOST_ACCEPTED = "host_accepted", "Host accepted"
        HOST_RETIRED = "host_retired", "Host retired"
        REQUEST_PROPOSED = "request_proposed", "Request proposed"
        REQUEST_APPROVED = "request_approved", "Request approved"
        REQUEST_REJECTED = "request_rejected", "Request rejected"
        REQUEST_EXPIRED = "request_expired", "Request expired"
        REQUEST_WITHDRAWN = "request_withdrawn", "Request withdrawn"
        REQUEST_DISPATCHED = "request_dispatched", "Request dispatched"
        DISPATCH_FAILED = "dispatch_failed", "Dispatch failed"
        REQUEST_FINISHED = "request_finished", "Request finished"
        ITEM_OUTCOME = "item_outcome", "Item outcome"
        INVENTORY_ASKED = "inventory_asked", "Inventory asked"
        FREE_ASKED = "free_asked", "Free resources asked"
        RESOURCES_FREED = "resources_freed", "Resources freed"
        QUARANTINE_PURGED = "quarantine_purged", "Quarantine purged"
        PURGE_ASKED = "purge_asked", "Purge asked"
        LATE_ANSWER = "late_answer", "Late answer applied"
        AGENT_ERROR = "agent_error", "Agent error"
        LOGIN_FAILED = "login_failed", "Login failed"
        LOGIN_LOCKED_OUT = "login_locked_out", "Login locked out"
        SETTINGS_CHANGED = "settings_changed", "Settings changed"
        SNAPSHOTS_COMPACTED = "snapshots_compacted", "Snapshots compacted"
        # Trust (trust.py): a message whose signature, key, host or time did not check out.
        SECURITY_REJECTED = "security_rejected", "Security: message rejected"
        HOST_ENROLLED = "host_enrolled", "Host key enrolled"
        HOST_KEY_REVOKED = "host_key_revoked", "Host key revoked"
        HOST_KEY_ACCEPTED = "host_key_accepted", "New host key accepted"
        TOKEN_CREATED = "enrollment_token_created", "Enrollment token created"
        TOKEN_REVOKED = "enrollment_token_revoked", "Enrollment token revoked"
        API_TOKEN_ISSUED = "api_token_issued", "API token issued"
        API_TOKEN_REVOKED = "api_token_revoked", "API token revoked"
        # Labels and groups (fleet/labels.py).
        HOST_LABELED = "host_labeled", "Host labels changed"
        GROUP_SAVED = "group_saved", "Host group saved"
        GROUP_DELETED = "group_deleted", "Host group deleted"
        # Campaigns (campaigns/): decisions and wave transitions.
        CAMPAIGN_PROPOSED = "campaign_proposed", "Campaign proposed"
        CAMPAIGN_APPROVED = "campaign_approved", "Campaign approved"
        CAMPAIGN_REJECTED = "campaign_rejected", "Campaign rejected"
        CAMPAIGN_EXPIRED = "campaign_expired", "Campaign expired"
        CAMPAIGN_PAUSED = "campaign_paused", "Campaign paused"
        CAMPAIGN_RESUMED = "campaign_resumed", "Campaign resumed"
        CAMPAIGN_HALTED = "campaign_halted", "Campaign halted"
        CAMPAIGN_CANCELLED = "campaign_cancelled", "Campaign cancelled"
        CAMPAIGN_FINISHED = "campaign_finished", "Campaign finished"
        WAVE_STARTED = "campaign_wave_started", "Campaign wave started"
        WAVE_FINISHED = "campaign_wave_finished", "Campaign wave finished"
        # Capacity (capacity/scheduled.py): one scheduled policy run, what it proposed or why nothing.
        POLICY_RUN = "policy_run", "Scheduled policy run"

    at = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.CharField(max_length=150)  # a username, "system", or "agent:<host>"
    action = models.CharField(max_length=32, choices=Action.choices)
    host = models.CharField(max_length=128, blank=True)
    object_type = models.CharField(max_length=32, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    details = models.JSONField(default=dict, blank=True)

    objects = AuditQuerySet.as_manager()

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [
            # Audit page filters: by host, by user, by action, each newest first.
            models.Index(fields=["host", "-at"], name="audit_host_time"),
            models.Index(fields=["actor", "-at"], name="audit_actor_time"),
            models.Index(fields=["action", "-at"], name="audit_action_time"),
            models.Index(fields=["object_type", "object_id"], name="audit_object"),
        ]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor} {self.action} {self.host}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise PermissionDenied("audit events cannot be changed")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise PermissionDenied("audit events cannot be deleted")

    @classmethod
    def record(
        cls,
        action: str,
        *,
        actor: str = "system",
        host: str = "",
        obj: models.Model | None = None,
        **details,
    ) -> AuditEvent:
        """Append one event. Call it inside the transaction that made the change it records."""
        event = cls.build(action, actor=actor, host=host, obj=obj, **details)
        event.save()
        return event

    @classmethod
    def build(
        cls,
        action: str,
        *,
        actor: str = "system",
        host: str = "",
        obj: models.Model | None = None,
        **details,
    ) -> AuditEvent:
        """An unsaved event, for ``bulk_create`` where one change records many (item outcomes)."""
        return cls(
            action=action,
            actor=actor,
            host=host,
            object_type=(obj._meta.model_name or "") if obj is not None else "",
            object_id=str(obj.pk) if obj is not None else "",
            details=details,
        )


class EnrollmentToken(models.Model):
    """A one-time token an approver made so that one host can enroll its key.

    The token itself is never stored: it is shown once when made, and this row keeps only its
    *verifier* (the public half of a key pair derived from the token, see
    ``workers.signing.enrollment.enrollment_verifier``), which can check an agent's proof but
    not make one.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    label = models.CharField(max_length=200, blank=True)
    # If set, only a host of this name may use the token.
    host_name = models.CharField(max_length=128, blank=True)
    verifier = models.CharField(max_length=100, unique=True)
    fingerprint = models.CharField(max_length=64)
    created_by = models.CharField(max_length=150)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    used_by_host = models.ForeignKey(Host, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"enrollment token {self.fingerprint}"

    def state(self, now=None) -> str:
        if self.used_at is not None:
            return "used"
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at <= (now or timezone.now()):
            return "expired"
        return "open"


class HostKey(models.Model):
    """A host's enrolled public key: its reports are accepted only when signed with it.

    At most one key per host is active (not revoked), enforced by the database; a public key
    is enrolled at most once, ever, so a revoked key (or one copied to a second host) cannot
    come back through a new token.
    """

    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="keys")
    public_key = models.CharField(max_length=100, unique=True)
    fingerprint = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)
    enrolled_with = models.ForeignKey(
        EnrollmentToken, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.CharField(max_length=150, blank=True)
    # A key enrolled for a host that already had an active one: it signs nothing the dashboard
    # takes until an approver compared both fingerprints and accepted it (the old key stays
    # valid until then), so a leaked token cannot silently take over a live host.
    candidate = models.BooleanField(default=False)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["host"],
                condition=models.Q(revoked_at__isnull=True, candidate=False),
                name="hostkey_one_active",
            ),
            models.UniqueConstraint(
                fields=["host"],
                condition=models.Q(revoked_at__isnull=True, candidate=True),
                name="hostkey_one_candidate",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.host.name} {self.fingerprint}"


class ModelSummary(models.Model):
    """What the fleet holds now under one file name: hosts, copies, bytes.

    Over the current snapshots of every host that is not retired, kept up to date by ingest in
    the transaction that replaces a host's current snapshot (``inventory/summary.py``), so the
    models pages read one row per name instead of aggregating every current file row.
    """

    name = models.CharField(max_length=255, unique=True)
    hosts = models.IntegerField(default=0)
    copies = models.IntegerField(default=0)
    bytes = models.BigIntegerField(default=0)
    known = models.IntegerField(default=0)  # copies Aspose itself loads

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ModelSighting(models.Model):
    """One model (a file name, or a content by its sha256) on one host, over the host's whole
    history: when it first held it, whether it holds it now, and when it went.

    What a model's lifecycle page lists, a row per host, kept by ingest in the transaction
    that stores a host's new snapshot (``inventory/lifecycle.py``): only the keys that came
    or went change, so the page reads its hosts' rows instead of every file row of every
    snapshot that ever held the model. A row outlives the snapshots compaction thins: the
    first sighting stays the first, not the oldest snapshot kept.
    """

    class Kind(models.TextChoices):
        NAME = "name", "File name"
        SHA256 = "sha256", "Content"

    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="+")
    # The host's name again (names never change: they are the agent's identity and its
    # queue's), so that a page of the key's hosts by name is a range of the key's index.
    host_name = models.CharField(max_length=128)
    kind = models.CharField(max_length=6, choices=Kind.choices)
    key = models.CharField(max_length=255)
    first_seen = models.DateTimeField()  # taken_at of the first snapshot that held it
    present = models.BooleanField()  # the host's current snapshot holds it
    # While it is gone: the last inventory that held it was last seen at ``last_seen`` (while
    # present that is the current snapshot's last_seen_at, read from it); ``gone_since`` is
    # taken_at of the first snapshot without it.
    last_seen = models.DateTimeField(null=True, blank=True)
    gone_since = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            # Lifecycle page: the rows of one key, by host name (ingest's upsert is on it too).
            models.UniqueConstraint(fields=["kind", "key", "host_name"], name="sighting_key_host"),
        ]

    def __str__(self) -> str:
        return f"{self.key} on host {self.host_id}"


class DiskDay(models.Model):
    """How much the fleet's bytes and files on disk changed on one day, kept by ingest.

    The reports' fleet series, without a look at each host: a day's fleet value is the sum
    over hosts of their last snapshot on or before the day's end, which is the sum of every
    snapshot's change against the host's previous snapshot up to then. So a row holds the
    changes of the snapshots taken on ``day`` (in ``zone``, the dashboard's time zone when they
    were written) and the fleet at a day's end is the running sum (``inventory/rollup.py``).
    A day's changes are spread over ``shard`` (host id modulo a few) so that two ingest workers
    storing new inventories rarely wait for each other's commit on the same row.
    """

    zone = models.CharField(max_length=64)
    day = models.DateField()
    shard = models.PositiveSmallIntegerField()
    bytes_change = models.BigIntegerField(default=0)
    files_change = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            # The upsert's conflict target, and the reports' range scan by (zone, day).
            models.UniqueConstraint(fields=["zone", "day", "shard"], name="diskday_zone_day_shard")
        ]

    def __str__(self) -> str:
        return f"{self.day} ({self.zone}) #{self.shard}"


class HostGroup(models.Model):
    """A saved set of hosts: a label selector (``env=prod,region=eu``) or an explicit list.

    Selectors match only the labels approvers set (``Host.labels``), never the labels a host
    reports about itself: a host cannot put itself into a group, and so into a campaign.
    """

    name = models.SlugField(max_length=64, unique=True)
    description = models.CharField(max_length=200, blank=True)
    # {key: value}; empty when the group is an explicit list.
    selector = models.JSONField(default=dict, blank=True)
    hosts = models.ManyToManyField(Host, blank=True, related_name="explicit_groups")
    created_by = models.CharField(max_length=150)
    created_at = models.DateTimeField(default=timezone.now)
    # The group's disk watermark (capacity/watermarks.py): percent used that triggers the
    # watermark policy and its alert, and the percent to get back under. Null: not set.
    watermark_high = models.PositiveSmallIntegerField(null=True, blank=True)
    watermark_low = models.PositiveSmallIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_selector(self) -> bool:
        return bool(self.selector)


class ModelVersion(models.Model):
    """One model identity, a name with one content (sha256): hosts, copies, bytes. Same keeper
    as ModelSummary; the models pages read versions per name and the hash search from it."""

    name = models.CharField(max_length=255)
    sha256 = models.CharField(max_length=64, blank=True)
    hosts = models.IntegerField(default=0)
    copies = models.IntegerField(default=0)
    bytes = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["name", "sha256"]
        constraints = [models.UniqueConstraint(fields=["name", "sha256"], name="modelversion_identity")]
        # The hash search of the models pages.
        indexes = [models.Index(fields=["sha256"], name="modelversion_sha256")]

    def __str__(self) -> str:
        return f"{self.name} {self.sha256[:12]}"


class ApiToken(models.Model):
    """A user's API token, kept only as its SHA-256 digest (api/tokens.py).

    DRF's own Token model stores the key itself: anyone who reads the table (a backup, a
    replica, a leaked dump) could call the API as every user. The key is 256 random bits, so a
    plain digest is enough (a slow password hash protects guessable secrets, not random ones),
    and a lookup by digest stays one indexed query. The key is shown once, when issued.
    """

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_token")
    digest = models.CharField(max_length=64, unique=True)
    # The first characters of the key, to tell tokens apart on a page; not enough to use one.
    prefix = models.CharField(max_length=12)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"API token {self.prefix}... of {self.user}"


# ---------------------------------------------------------------- notifications (notifications/)


class NotificationPreference(models.Model):
    """How one user wants to hear of one event: by email, or not at all.

    No row means the default (email); ``event`` holds a ``notifications.Event`` value, kept
    free of ``choices`` so that adding an event needs no migration.
    """

    class Channel(models.TextChoices):
        EMAIL = "email", "Email"
        NONE = "none", "Nothing"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    event = models.CharField(max_length=64)
    channel = models.CharField(max_length=16, choices=Channel.choices, default=Channel.EMAIL)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "event"], name="notificationpreference_unique")
        ]

    def __str__(self) -> str:
        return f"{self.user_id} {self.event}: {self.channel}"


class NotificationProfile(models.Model):
    """A user's digest mode: at most one email per ``digest_minutes`` (0: one email per event)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_profile"
    )
    digest_minutes = models.PositiveIntegerField(default=0)
    last_digest_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.user_id}: digest every {self.digest_minutes} min"


class WebhookChannel(models.Model):
    """A webhook (any URL apprise knows: Slack, Teams, json://...); its ``routes`` say what it gets.

    The URL often *is* the credential (a Slack hook URL lets anyone post), so it is stored
    but never shown back in full: pages and the admin show ``masked_url`` only.
    """

    name = models.CharField(max_length=100, unique=True)
    url = models.TextField()
    enabled = models.BooleanField(default=True)
    created_by = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def masked_url(self) -> str:
        return mask_url(self.url)


class WebhookRoute(models.Model):
    """One event sent to one webhook, for every host, for a group's or a selector's hosts, or
    for the rest (what no group or selector route of the same event took).

    The matching is ``notifications/routing.py``; ``event`` holds a ``notifications.Event``
    value, free of ``choices`` like the preferences, so adding an event needs no migration.
    """

    class Scope(models.TextChoices):
        ALL = "all", "Every host"
        GROUP = "group", "Hosts of a group"
        LABELS = "labels", "Hosts with labels"
        REST = "rest", "The rest: what no group or label route of this event took"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)  # in the page's forms
    webhook = models.ForeignKey(WebhookChannel, on_delete=models.CASCADE, related_name="routes")
    event = models.CharField(max_length=64)
    scope = models.CharField(max_length=16, choices=Scope.choices, default=Scope.ALL)
    # Deleting a group deletes its routes: its hosts' events then go to the "rest" routes.
    group = models.ForeignKey(HostGroup, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    # {key: value} for the "labels" scope, matched like a group's selector.
    selector = models.JSONField(default=dict, blank=True)
    created_by = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["event", "scope", "created_at"]
        indexes = [models.Index(fields=["event"], name="webhookroute_event")]
        constraints = [
            models.CheckConstraint(
                condition=(models.Q(scope="group") & models.Q(group__isnull=False))
                | (~models.Q(scope="group") & models.Q(group__isnull=True)),
                name="webhookroute_group_iff_group_scope",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event} ({self.scope}) to {self.webhook_id}"


class Notification(models.Model):
    """One message to one recipient (a user's address or a webhook), and how its delivery went.

    Rows are written after the change they tell of committed, then delivered by a Celery task
    on the notify queue; ``status`` and ``error`` say what happened, for the admins.
    """

    class Kind(models.TextChoices):
        EMAIL = "email", "Email"
        WEBHOOK = "webhook", "Webhook"

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting to be sent"
        DIGEST = "digest", "Waiting for the next digest"
        SENDING = "sending", "Sending"
        RETRYING = "retrying", "Failed, will retry"
        SENT = "sent", "Sent"
        IN_DIGEST = "in_digest", "Sent in a digest"
        FAILED = "failed", "Failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    event = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    webhook = models.ForeignKey(
        WebhookChannel, null=True, blank=True, on_delete=models.SET_NULL, related_name="notifications"
    )
    # An email address, or the webhook's masked URL: never the secret itself.
    recipient = models.CharField(max_length=400)
    host = models.CharField(max_length=128, blank=True)
    subject = models.CharField(max_length=255)
    body = models.TextField()
    url = models.CharField(max_length=2000, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    error = models.TextField(blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    # For an event that went out in a digest: the digest's own row.
    digest = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="parts")

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # The sweep: what is due again (retrying, pending that was never enqueued).
            models.Index(fields=["status", "next_attempt_at"], name="notification_due"),
            # The digest sweep and a user's own list.
            models.Index(fields=["user", "status"], name="notification_user_status"),
        ]

    def __str__(self) -> str:
        return f"{self.event} to {self.recipient} ({self.status})"


class PresenceAlert(models.Model):
    """The presence (online/offline/missing) a host was last notified in, so each change is told once."""

    host = models.OneToOneField(Host, on_delete=models.CASCADE, related_name="+")
    presence = models.CharField(max_length=16)
    changed_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.host_id}: {self.presence}"


# ---------------------------------------------------------------- live feedback (feedback.py)


class HostAction(models.Model):
    """An order sent to a host outside a prune request (inventory now, free, purge) and its answer.

    Keyed by the order's request id, which the host's answering report echoes: that is how the
    host page shows "asked → running → done, with the result" without anyone reloading.
    """

    class Kind(models.TextChoices):
        INVENTORY = "inventory", "Inventory"
        FREE = "free", "Free resources"
        PURGE = "purge", "Purge quarantine"

    class State(models.TextChoices):
        ASKED = "asked", "Asked, waiting for the host"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    request_id = models.CharField(max_length=64, unique=True)
    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="actions")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    state = models.CharField(max_length=16, choices=State.choices, default=State.ASKED)
    asked_by = models.CharField(max_length=150)
    asked_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    # What the answer said, in words (shown as it is): "12 files, 8.5 GB", "resources freed".
    result = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-asked_at"]
        indexes = [models.Index(fields=["host", "-asked_at"], name="hostaction_host_time")]

    def __str__(self) -> str:
        return f"{self.kind} on {self.host_id}: {self.state}"


class Progress(models.Model):
    """The latest progress report of one order (ProgressReport): one row per request id, upserted.

    Not audited and not kept as a received report: it is a gauge, replaced every few seconds,
    and the order's final report is what the history records.
    """

    request_id = models.CharField(max_length=64, unique=True)
    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="+")
    phase = models.CharField(max_length=16)
    done_bytes = models.BigIntegerField(default=0)
    total_bytes = models.BigIntegerField(null=True, blank=True)
    done_items = models.PositiveIntegerField(default=0)
    total_items = models.PositiveIntegerField(null=True, blank=True)
    eta_seconds = models.FloatField(null=True, blank=True)
    # The agent's send time: an older report arriving late never moves the bar back.
    sent_at = models.DateTimeField()
    updated_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["host", "-updated_at"], name="progress_host_time")]

    def __str__(self) -> str:
        return f"{self.request_id}: {self.phase}"

    @property
    def percent(self) -> int | None:
        if self.total_bytes:
            return min(100, int(100 * self.done_bytes / self.total_bytes))
        if self.total_items:
            return min(100, int(100 * self.done_items / self.total_items))
        return None


class FileUsage(models.Model):
    """When one file of a host was last used, as its agent saw it: current state, not history.

    Kept apart from ModelFile on purpose: atime and holders change with every read, and in a
    snapshot they would turn every inventory into a new one (snapshots grow with change, not
    with use). One row per (host, store, path), rewritten only when what it says changed.
    """

    AtimeModes = models.TextChoices(  # type: ignore[call-overload]  # as PruneRequest.Mode
        "AtimeModes", [(m.name, m.value) for m in AtimeMode]
    )

    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="file_usages")
    store = models.CharField(max_length=8, choices=StoreChoices.choices, default=Store.LLM.value)
    path = models.CharField(max_length=4096)
    atime_ns = models.BigIntegerField(null=True, blank=True)
    atime_mode = models.CharField(max_length=16, choices=AtimeModes.choices, default=AtimeMode.UNKNOWN.value)
    # Holders at the agent's last /proc look ([{"pid", "program", "how"}]); [] when none.
    open_by = models.JSONField(default=list, blank=True)
    last_open_at = models.DateTimeField(null=True, blank=True)
    last_open_by = models.CharField(max_length=200, blank=True)
    checked_at = models.DateTimeField(default=timezone.now)
    # When the dashboard first heard of this file here: "never seen open since" starts there.
    watched_since = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["host", "store", "path"], name="fileusage_unique_store_path")
        ]

    def __str__(self) -> str:
        return f"{self.host_id}:{self.store}:{self.path}"


class DiskSample(models.Model):
    """A host's free disk space, one row per day (the last value reported that day).

    The forecast's series: inventories (and heartbeats, at most hourly: capacity/usage.py)
    overwrite the day's row, so the table grows by one row per host per day whatever the
    report rate.
    """

    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="disk_samples")
    day = models.DateField()
    disk_free = models.BigIntegerField()
    disk_total = models.BigIntegerField()
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["host", "day"]
        constraints = [models.UniqueConstraint(fields=["host", "day"], name="disksample_one_per_day")]

    def __str__(self) -> str:
        return f"{self.host_id} {self.day}: {self.disk_free}"


class Campaign(models.Model):
    """One proposal and one approval over many hosts, rolled out in waves (campaigns/).

        proposed ──approve──▶ running ◀──resume── paused
           │                    │  ├──pause──▶ paused
           ├──reject──▶ rejected │  ├──halt / a wave over the threshold──▶ halted
           └──ttl────▶ expired   │  └──cancel──▶ cancelled
                                 └──last wave done──▶ completed

    Each host's part (CampaignHost) becomes an ordinary PruneRequest when its wave starts.
    """

    class State(models.TextChoices):
        PROPOSED = "proposed", "Waiting for approval"
        RUNNING = "running", "Running"
        PAUSED = "paused", "Paused"
        HALTED = "halted", "Halted"
        COMPLETED = "completed", "Completed"
        CANCELLED = "cancelled", "Cancelled"
        REJECTED = "rejected", "Rejected"
        EXPIRED = "expired", "Expired"

    class Target(models.TextChoices):
        GROUP = "group", "Group"
        SELECTOR = "selector", "Label selector"
        MODEL = "model", "Every host holding a model"

    class Rule(models.TextChoices):
        POLICY = "policy", "Policy"
        IDENTITY = "identity", "One model (name and sha256)"

    OPEN_STATES = (State.PROPOSED, State.RUNNING, State.PAUSED)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    reason = models.TextField()
    state = models.CharField(max_length=16, choices=State.choices, default=State.PROPOSED)
    target_kind = models.CharField(max_length=16, choices=Target.choices)
    target_group = models.ForeignKey(
        HostGroup, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # A copy of the group's name, kept when the group is deleted later.
    target_label = models.CharField(max_length=300, blank=True)
    target_selector = models.JSONField(default=dict, blank=True)
    rule_kind = models.CharField(max_length=16, choices=Rule.choices)
    policy = models.CharField(max_length=64, blank=True)
    policy_params = models.JSONField(default=dict, blank=True)
    model_name = models.CharField(max_length=255, blank=True)
    model_sha256 = models.CharField(max_length=64, blank=True)
    mode = models.CharField(
        max_length=16, choices=PruneRequest.Mode.choices, default=PruneMode.QUARANTINE.value
    )
    canary_size = models.PositiveIntegerField(default=1)
    wave_size = models.PositiveIntegerField(null=True, blank=True)
    wave_percent = models.PositiveSmallIntegerField(null=True, blank=True)
    # A wave is followed by the next only when its failed hosts / hosts stays at or under this.
    failure_threshold = models.FloatField(default=0.0)
    # Ticked by the approver: the campaign may remove the last copy of a file in the fleet.
    allow_last_copy = models.BooleanField(default=False)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_comment = models.TextField(blank=True)
    current_wave = models.PositiveIntegerField(default=0)
    wave_count = models.PositiveIntegerField(default=0)
    halt_reason = models.TextField(blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["state", "-created_at"], name="campaign_state_time")]

    def __str__(self) -> str:
        return f"campaign {self.short_id}"

    @property
    def short_id(self) -> str:
        return self.id.hex[:8]

    @property
    def is_open(self) -> bool:
        return self.state in self.OPEN_STATES

    @property
    def requested_by_name(self) -> str:
        return self.requested_by.get_username() if self.requested_by else "system"


class CampaignHost(models.Model):
    """One host's part of a campaign: what the preview showed for it, its wave, its request."""

    class State(models.TextChoices):
        PLANNED = "planned", "Planned"
        SKIPPED = "skipped", "Skipped"
        SENT = "sent", "Sent"  # its PruneRequest exists; its state says the rest
        DONE = "done", "Done"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Not started"

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="hosts")
    host = models.ForeignKey(Host, on_delete=models.PROTECT, related_name="campaign_parts")
    # 0 is the canary wave; None for a host skipped at planning.
    wave = models.PositiveIntegerField(null=True, blank=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.PLANNED)
    skip_reason = models.CharField(max_length=300, blank=True)
    # The identities the approver saw: [{path, size, mtime_ns, sha256, known_to_aspose, last_copy, kept}].
    files = models.JSONField(default=list, blank=True)
    bytes_planned = models.BigIntegerField(default=0)
    request = models.OneToOneField(
        PruneRequest, null=True, blank=True, on_delete=models.SET_NULL, related_name="campaign_part"
    )
    note = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["wave", "host__name"]
        constraints = [models.UniqueConstraint(fields=["campaign", "host"], name="campaignhost_unique")]
        indexes = [
            # Wave progression: the hosts of one wave of one campaign.
            models.Index(fields=["campaign", "wave"], name="campaignhost_wave")
        ]

    def __str__(self) -> str:
        return f"{self.campaign} on {self.host.name}"
