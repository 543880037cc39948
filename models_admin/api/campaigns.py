"""The JSON API for labels, groups and campaigns: the same rules as their pages.

Labels and groups need MANAGE_HOSTS (approvers), proposing and previewing a campaign PROPOSE,
deciding on and steering one APPROVE. State changes go through ``fleet.labels`` and
``campaigns.rollout``, which lock, check and audit.
"""

from __future__ import annotations

from typing import Any, ClassVar

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiTypes, extend_schema, extend_schema_field, inline_serializer
from rest_framework import generics, serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from models_admin.campaigns import plan, rollout
from models_admin.fleet import labels
from models_admin.models import Campaign, CampaignHost, Host, HostGroup
from models_admin.security.roles import Action

from .views import _Api, _validated

# ---------------------------------------------------------------- serializers


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string", "example": "env=prod,region=eu"},
            {"type": "object", "additionalProperties": {"type": "string"}},
        ]
    }
)
class SelectorField(serializers.Field):
    """A selector as ``"env=prod,region=eu"`` or ``{"env": "prod"}``; read back as a dict."""

    def to_internal_value(self, data: Any) -> dict[str, str]:
        text = labels.format_selector(data) if isinstance(data, dict) else data
        if not isinstance(text, str):
            raise ValidationError("a selector is key=value,... or an object of strings")
        try:
            return labels.parse_selector(text)
        except labels.LabelError as exc:
            raise ValidationError(str(exc)) from None

    def to_representation(self, value: dict[str, str]) -> dict[str, str]:
        return dict(value)


class LabelsSerializer(serializers.Serializer):
    labels = SelectorField()


class GroupSerializer(serializers.ModelSerializer):
    selector = SelectorField(required=False, default=dict)
    hosts = serializers.SlugRelatedField(
        many=True, slug_field="name", queryset=Host.objects.all(), required=False
    )
    members = serializers.SerializerMethodField()

    class Meta:
        model = HostGroup
        fields = ["name", "description", "selector", "hosts", "members", "created_by", "created_at"]
        read_only_fields = ["created_by", "created_at"]
        extra_kwargs: ClassVar[dict[str, Any]] = {
            "name": {"validators": []}
        }  # saving a name again replaces the group

    def get_members(self, group: HostGroup) -> list[str]:
        return list(
            labels.group_hosts(group, Host.objects.all()).order_by("name").values_list("name", flat=True)
        )


class SpecSerializer(serializers.Serializer):
    target_kind = serializers.ChoiceField(choices=Campaign.Target.choices)
    group = serializers.CharField(required=False, allow_blank=True, default="")
    selector = SelectorField(required=False, default=dict)
    rule_kind = serializers.ChoiceField(choices=Campaign.Rule.choices)
    policy = serializers.CharField(required=False, allow_blank=True, default="")
    params = serializers.DictField(required=False, default=dict)
    model_name = serializers.CharField(required=False, allow_blank=True, default="", max_length=255)
    model_sha256 = serializers.CharField(required=False, allow_blank=True, default="", max_length=64)
    canary_size = serializers.IntegerField(required=False, default=1, min_value=1)
    wave_size = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=1)
    wave_percent = serializers.IntegerField(
        required=False, allow_null=True, default=None, min_value=1, max_value=100
    )
    failure_threshold = serializers.FloatField(required=False, default=0.0, min_value=0, max_value=0.99)
    reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)

    def spec(self) -> plan.Spec:
        data = self.validated_data
        group = None
        if data["target_kind"] == Campaign.Target.GROUP:
            group = HostGroup.objects.filter(name=data["group"]).first()
            if group is None:
                raise ValidationError({"group": [f"no such group: {data['group']!r}"]})
        return plan.Spec(
            target_kind=data["target_kind"],
            rule_kind=data["rule_kind"],
            group=group,
            selector=data["selector"],
            model_sha256=data["model_sha256"].strip().lower(),
            model_name=data["model_name"].strip(),
            policy=data["policy"],
            policy_params=data["params"],
            canary_size=data["canary_size"],
            wave_size=data["wave_size"],
            wave_percent=data["wave_percent"],
            failure_threshold=data["failure_threshold"],
        )


class DecisionSerializer(serializers.Serializer):
    comment = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")
    allow_last_copy = serializers.BooleanField(required=False, default=False)


class CampaignHostSerializer(serializers.ModelSerializer):
    host = serializers.CharField(source="host.name")
    request = serializers.SerializerMethodField()
    request_state = serializers.SerializerMethodField()
    bytes_reclaimed = serializers.SerializerMethodField()

    class Meta:
        model = CampaignHost
        fields = [
            "host",
            "wave",
            "state",
            "skip_reason",
            "note",
            "files",
            "bytes_planned",
            "request",
            "request_state",
            "bytes_reclaimed",
        ]

    def get_request(self, part: CampaignHost) -> str | None:
        return str(part.request_id) if part.request_id else None

    def get_request_state(self, part: CampaignHost) -> str | None:
        return part.request.state if part.request else None

    def get_bytes_reclaimed(self, part: CampaignHost) -> int:
        return part.request.bytes_reclaimed if part.request else 0


class CampaignSerializer(serializers.ModelSerializer):
    requested_by = serializers.CharField(source="requested_by_name")
    decided_by = serializers.SerializerMethodField()
    group = serializers.SerializerMethodField()
    rule = serializers.SerializerMethodField()
    progress = serializers.SerializerMethodField()

    class Meta:
        model = Campaign
        fields = [
            "id",
            "state",
            "reason",
            "target_kind",
            "target_label",
            "group",
            "target_selector",
            "rule_kind",
            "rule",
            "policy",
            "policy_params",
            "model_name",
            "model_sha256",
            "mode",
            "canary_size",
            "wave_size",
            "wave_percent",
            "failure_threshold",
            "allow_last_copy",
            "current_wave",
            "wave_count",
            "halt_reason",
            "requested_by",
            "created_at",
            "expires_at",
            "decided_by",
            "decided_at",
            "decision_comment",
            "finished_at",
            "progress",
        ]

    def get_decided_by(self, campaign: Campaign) -> str | None:
        return campaign.decided_by.get_username() if campaign.decided_by else None

    def get_group(self, campaign: Campaign) -> str | None:
        return campaign.target_group.name if campaign.target_group else None

    def get_rule(self, campaign: Campaign) -> str:
        return rollout.rule_label(campaign)

    def get_progress(self, campaign: Campaign) -> dict[str, int]:
        p = rollout.progress(campaign)
        return {
            "hosts": p.hosts,
            "done": p.done,
            "failed": p.failed,
            "skipped": p.skipped,
            "sent": p.sent,
            "planned": p.planned,
            "percent": p.percent,
            "bytes_planned": p.bytes_planned,
            "bytes_in_quarantine": p.bytes_in_quarantine,
            "bytes_freed": p.bytes_freed,
        }


class CampaignDetailSerializer(CampaignSerializer):
    hosts = CampaignHostSerializer(many=True, read_only=True)

    class Meta(CampaignSerializer.Meta):
        fields = [*CampaignSerializer.Meta.fields, "hosts"]


def preview_data(preview: plan.Preview) -> dict[str, Any]:
    return {
        "hosts": [
            {"host": p.host.name, "wave": p.wave, "files": p.files, "bytes": p.bytes} for p in preview.planned
        ],
        "skipped": [{"host": p.host.name, "reason": p.skipped} for p in preview.skipped],
        "warnings": preview.warnings,
        "waves": preview.wave_count,
        "files": preview.file_count,
        "bytes": preview.bytes,
        "known_to_aspose": preview.known_count,
        "last_copies_kept": preview.kept_count,
    }


# ---------------------------------------------------------------- views

LABELS_OUT = inline_serializer(
    "HostLabels",
    {
        "labels": serializers.DictField(child=serializers.CharField()),
        "reported_labels": serializers.DictField(child=serializers.CharField()),
    },
)


class HostLabels(_Api, APIView):
    """PUT the host's labels (replacing them all); GET them with the ones it reports itself."""

    action_required = Action.MANAGE_HOSTS

    @extend_schema(responses=LABELS_OUT)
    def get(self, request: Request, name: str) -> Response:
        host = get_object_or_404(Host, name=name)
        return Response({"labels": host.labels, "reported_labels": host.reported_labels})

    @extend_schema(request=LabelsSerializer, responses=LABELS_OUT)
    def put(self, request: Request, name: str) -> Response:
        host = get_object_or_404(Host, name=name)
        data = _validated(LabelsSerializer, request.data)
        host = labels.set_labels(host, data["labels"], request.user)
        return Response({"labels": host.labels, "reported_labels": host.reported_labels})


class GroupList(_Api, generics.ListCreateAPIView):
    queryset = HostGroup.objects.order_by("name")
    serializer_class = GroupSerializer
    filterset_class = None
    action_required = Action.MANAGE_HOSTS

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = _validated(GroupSerializer, request.data)
        try:
            group = labels.save_group(
                data["name"],
                user=request.user,
                selector=data["selector"],
                hosts=[h.name for h in data.get("hosts", [])],
                description=data.get("description", ""),
            )
        except labels.LabelError as exc:
            raise ValidationError(str(exc)) from None
        return Response(GroupSerializer(group).data, status=status.HTTP_201_CREATED)


class GroupDetail(_Api, generics.RetrieveDestroyAPIView):
    queryset = HostGroup.objects.all()
    serializer_class = GroupSerializer
    lookup_field = "name"
    action_required = Action.MANAGE_HOSTS

    def perform_destroy(self, instance: HostGroup) -> None:
        labels.delete_group(instance, self.request.user)


def _campaign(campaign_id) -> Campaign:
    return get_object_or_404(
        Campaign.objects.select_related("requested_by", "decided_by", "target_group"), id=campaign_id
    )


class CampaignList(_Api, generics.ListCreateAPIView):
    """GET the campaigns (``?state=running``); POST a spec with a reason to propose one."""

    serializer_class = CampaignSerializer
    filterset_class = None
    action_required = Action.PROPOSE

    def get_queryset(self):
        campaigns = Campaign.objects.select_related("requested_by", "decided_by", "target_group")
        state = self.request.query_params.get("state")
        if state:
            if state not in Campaign.State.values:
                raise ValidationError({"state": [f"unknown state {state!r}"]})
            campaigns = campaigns.filter(state=state)
        return campaigns.order_by("-created_at")

    @extend_schema(request=SpecSerializer, responses={201: CampaignDetailSerializer})
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self.create(request, *args, **kwargs)

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = SpecSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        campaign = rollout.propose(
            serializer.spec(), user=request.user, reason=serializer.validated_data["reason"]
        )
        return Response(CampaignDetailSerializer(_campaign(campaign.id)).data, status=status.HTTP_201_CREATED)


class CampaignPreview(_Api, APIView):
    """POST a spec: what the campaign would do now, host by host (nothing is stored)."""

    action_required = Action.PROPOSE

    @extend_schema(request=SpecSerializer, responses=OpenApiTypes.OBJECT)
    def post(self, request: Request) -> Response:
        serializer = SpecSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            preview = plan.preview(serializer.spec())
        except plan.PlanError as exc:
            raise ValidationError(str(exc)) from None
        return Response(preview_data(preview))


class CampaignDetail(_Api, generics.RetrieveAPIView):
    serializer_class = CampaignDetailSerializer
    lookup_field = "id"
    lookup_url_kwarg = "campaign_id"

    def get_queryset(self):
        return Campaign.objects.select_related("requested_by", "decided_by", "target_group")


class CampaignAction(_Api, APIView):
    """POST approve, reject, pause, resume, halt or cancel (``comment``; ``allow_last_copy`` to approve)."""

    action_required = Action.APPROVE
    transitions = {
        "approve": rollout.approve,
        "reject": rollout.reject,
        "pause": rollout.pause,
        "resume": rollout.resume,
        "halt": rollout.halt,
        "cancel": rollout.cancel,
    }

    @extend_schema(
        operation_id="campaigns_action",
        request=DecisionSerializer,
        responses=CampaignDetailSerializer,
    )
    def post(self, request: Request, campaign_id, verb: str) -> Response:
        transition = self.transitions.get(verb)
        if transition is None:
            raise ValidationError(f"unknown action {verb!r}: one of {', '.join(self.transitions)}")
        campaign = _campaign(campaign_id)
        data = _validated(DecisionSerializer, request.data)
        if transition is rollout.approve:
            rollout.approve(
                campaign.id, request.user, comment=data["comment"], allow_last_copy=data["allow_last_copy"]
            )
        else:
            transition(campaign.id, request.user, comment=data["comment"])
        return Response(CampaignDetailSerializer(_campaign(campaign.id)).data)
