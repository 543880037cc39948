"""What the API shows and accepts. Hosts by name, requests by UUID, never sequential ids."""

from __future__ import annotations

from datetime import datetime, tzinfo
from functools import cached_property
from typing import Any

from django.utils import timezone
from rest_framework import serializers

from models_admin.models import (
    AuditEvent,
    Host,
    ModelFile,
    PruneItem,
    PruneRequest,
    ReceivedReport,
    Snapshot,
    StoreChoices,
)
from workers.schema import HOST_NAME_PATTERN


class SnapshotSerializer(serializers.ModelSerializer):
    class Meta:
        model = Snapshot
        fields = ["id", "taken_at", "last_seen_at", "seen_count", "digest", "file_count", "total_bytes"]


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _whole(value: Any) -> int | None:
    return None if value is None else int(value)


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _moment(value: Any, zone: tzinfo) -> str | None:
    """A datetime as DRF's DateTimeField writes it (ISO 8601 in the current time zone, UTC as
    "Z"), without a field object and a time zone look-up per value."""
    if not value:
        return None
    if isinstance(value, str) or value.utcoffset() is None:  # DRF's own rules for the rare cases
        return serializers.DateTimeField().to_representation(value)
    text = value.astimezone(zone).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


# A host as the API shows it (the list, the detail and the actions' answers). The declared
# fields are what the schema (/api/schema/) describes; ``to_representation`` writes the very
# same JSON by hand. DRF's generic path (a field object per value, a time zone look-up per
# datetime, the nested serializer's fields, presence worked out twice per host, each with its
# own clock) made a page of 100 hosts cost three times a page of 10. (A comment, not a
# docstring: the schema would publish a docstring as the Host object's description.)
class HostSerializer(serializers.ModelSerializer):
    is_missing = serializers.SerializerMethodField()
    presence = serializers.SerializerMethodField()
    current_snapshot = SnapshotSerializer(read_only=True)

    class Meta:
        model = Host
        fields = [
            "name",
            "status",
            "is_missing",
            "presence",
            "hostname",
            "first_seen",
            "last_seen",
            "agent_version",
            "aspose_version",
            "model_dir",
            "model_dir_state",
            "disk_total",
            "disk_free",
            "forecast_days",
            "forecast_note",
            "file_count",
            "total_bytes",
            "last_error",
            "last_error_at",
            "heartbeat_seconds",
            "last_heartbeat_at",
            "backlog",
            "labels",
            "reported_labels",
            "accepted_by",
            "accepted_at",
            "current_snapshot",
        ]

    @classmethod
    def columns(cls) -> list[str]:
        """The columns ``to_representation`` reads, for ``.only()`` with the current snapshot
        selected alongside (a list leaves the others, such as the stores' JSON, unread)."""
        computed = {"is_missing", "presence"}
        return [
            *(f for f in cls.Meta.fields if f not in computed),
            *(f"current_snapshot__{f}" for f in SnapshotSerializer.Meta.fields),
        ]

    @cached_property
    def _clock(self) -> tuple[datetime, tzinfo]:
        # One serializer (the list's child) writes every host of a page: one now and one time
        # zone for all of them.
        return timezone.now(), timezone.get_current_timezone()

    def get_is_missing(self, host: Host) -> bool:
        return host.is_missing(self._clock[0])

    def get_presence(self, host: Host) -> str:
        """never, online, offline or missing (Host.presence)."""
        return host.presence(self._clock[0])

    def to_representation(self, instance: Host) -> dict[str, Any]:
        host = instance
        now, zone = self._clock
        presence = host.presence(now)
        snapshot = host.current_snapshot
        return {
            "name": _text(host.name),
            "status": _text(host.status),
            "is_missing": presence == "missing",
            "presence": presence,
            "hostname": _text(host.hostname),
            "first_seen": _moment(host.first_seen, zone),
            "last_seen": _moment(host.last_seen, zone),
            "agent_version": _text(host.agent_version),
            "aspose_version": _text(host.aspose_version),
            "model_dir": _text(host.model_dir),
            "model_dir_state": _text(host.model_dir_state),
            "disk_total": _whole(host.disk_total),
            "disk_free": _whole(host.disk_free),
            "forecast_days": _float(host.forecast_days),
            "forecast_note": _text(host.forecast_note),
            "file_count": _whole(host.file_count),
            "total_bytes": _whole(host.total_bytes),
            "last_error": _text(host.last_error),
            "last_error_at": _moment(host.last_error_at, zone),
            "heartbeat_seconds": _whole(host.heartbeat_seconds),
            "last_heartbeat_at": _moment(host.last_heartbeat_at, zone),
            "backlog": _whole(host.backlog),
            "labels": host.labels,
            "reported_labels": host.reported_labels,
            "accepted_by": _text(host.accepted_by),
            "accepted_at": _moment(host.accepted_at, zone),
            "current_snapshot": None
            if snapshot is None
            else {
                "id": _whole(snapshot.id),
                "taken_at": _moment(snapshot.taken_at, zone),
                "last_seen_at": _moment(snapshot.last_seen_at, zone),
                "seen_count": _whole(snapshot.seen_count),
                "digest": _text(snapshot.digest),
                "file_count": _whole(snapshot.file_count),
                "total_bytes": _whole(snapshot.total_bytes),
            },
        }


class ModelFileSerializer(serializers.ModelSerializer):
    class Meta:
        model = ModelFile
        fields = ["path", "name", "size", "mtime_ns", "mtime", "sha256", "known_to_aspose", "is_symlink"]


class PruneItemSerializer(serializers.ModelSerializer):
    # ``outcome`` is what the prune did; these say where the file is now (``PruneItem.state_now``):
    # moved back by a restore since, or still in the request's quarantine folder. Items are
    # read ``PruneItem.with_restored`` (api/views.py).
    restored = serializers.BooleanField(read_only=True)
    in_quarantine = serializers.BooleanField(source="is_in_quarantine", read_only=True)

    class Meta:
        model = PruneItem
        fields = [
            "path",
            "size",
            "mtime_ns",
            "sha256",
            "known_to_aspose",
            "store",
            "outcome",
            "detail",
            "bytes_reclaimed",
            "finished_at",
            "restored",
            "in_quarantine",
        ]


class PruneRequestSerializer(serializers.ModelSerializer):
    host = serializers.CharField(source="host.name")
    requested_by = serializers.CharField(source="requested_by_name")
    decided_by: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="username", read_only=True
    )
    restore_of = serializers.UUIDField(source="restore_of_id", allow_null=True)
    item_count = serializers.SerializerMethodField()
    # Of bytes_reclaimed: still on the host's disk in quarantine (not restored since), and given
    # back to the disk.
    bytes_in_quarantine = serializers.IntegerField(read_only=True)
    bytes_freed = serializers.IntegerField(read_only=True)

    class Meta:
        model = PruneRequest
        fields = [
            "id",
            "host",
            "kind",
            "state",
            "mode",
            "reason",
            "policy",
            "requested_by",
            "created_at",
            "expires_at",
            "decided_by",
            "decided_at",
            "decision_comment",
            "dispatched_at",
            "dispatch_attempts",
            "finished_at",
            "bytes_reclaimed",
            "bytes_in_quarantine",
            "bytes_freed",
            "restore_of",
            "item_count",
        ]
        read_only_fields = fields

    def get_item_count(self, request: PruneRequest) -> int:
        annotated = getattr(request, "item_count", None)
        return annotated if annotated is not None else request.items.count()


class PruneRequestDetailSerializer(PruneRequestSerializer):
    items = PruneItemSerializer(many=True, read_only=True)

    class Meta(PruneRequestSerializer.Meta):
        fields = [*PruneRequestSerializer.Meta.fields, "items"]
        read_only_fields = fields


class AuditEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEvent
        fields = ["id", "at", "actor", "action", "host", "object_type", "object_id", "details"]


class ReceivedReportSerializer(serializers.ModelSerializer):
    class Meta:
        model = ReceivedReport
        fields = ["id", "received_at", "report_id", "host_name", "kind", "status", "reason", "payload"]


# ---------------------------------------------------------------- input


class ProposeSerializer(serializers.Serializer):
    files = serializers.ListField(
        child=serializers.CharField(max_length=4096), min_length=1, max_length=10_000
    )
    reason = serializers.CharField(max_length=2000)
    mode = serializers.ChoiceField(choices=PruneRequest.Mode.choices, default=PruneRequest.Mode.QUARANTINE)
    # The store every named path is in: one request may hold files of both, one call names one.
    store = serializers.ChoiceField(choices=StoreChoices.choices, default=StoreChoices.LLM)


class PolicyRunSerializer(serializers.Serializer):
    params = serializers.DictField(
        child=serializers.CharField(allow_blank=True), required=False, default=dict
    )
    reason = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")
    mode = serializers.ChoiceField(choices=PruneRequest.Mode.choices, default=PruneRequest.Mode.QUARANTINE)


class CommentSerializer(serializers.Serializer):
    comment = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")


class RestoreSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")


class EnrollmentTokenRequestSerializer(serializers.Serializer):
    # The serializer metaclass moves declared fields into _declared_fields: this is a field
    # called label, not Field.label.
    label = serializers.CharField(max_length=200, required=False, allow_blank=True)  # type: ignore[assignment]
    host_name = serializers.RegexField(HOST_NAME_PATTERN, max_length=128, required=False, allow_blank=True)
    hours = serializers.FloatField(min_value=0.1, max_value=24 * 365, required=False)
