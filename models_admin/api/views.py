"""The JSON API for scripts. Same rules as the pages: security/roles.py decides, approvals/workflow.py acts.

Every view is exempt from Django's LoginRequiredMiddleware (it would answer a script with a
redirect to the login page); DRF authenticates instead and answers 401/403 as JSON. Writes go
through workflow/policies, which write the audit rows in the same transaction.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_not_required
from django.db.models import Count, OuterRef, Prefetch, Subquery
from django.db.models.functions import Coalesce
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import generics, status
from rest_framework import serializers as drf
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from models_admin.approvals import workflow
from models_admin.capacity import policies
from models_admin.errors import TokenError
from models_admin.fleet import hosts, trust
from models_admin.models import (
    AuditEvent,
    Host,
    ModelFile,
    PruneItem,
    PruneRequest,
    ReceivedReport,
    StoreChoices,
)
from models_admin.security.roles import Action

from . import filters, pagination, serializers
from .permissions import RolePermission


class _Api(APIView):
    """Base of every API view: role permission, and no login redirect."""

    permission_classes = [RolePermission]
    action_required: Action | None = None

    @classmethod
    def as_view(cls, **initkwargs: Any) -> Any:
        return login_not_required(super().as_view(**initkwargs))


# Bodies that are not a model's, named for the schema (/api/schema/).
ASKED = inline_serializer("Asked", {"host": drf.CharField(), "asked": drf.ChoiceField(["inventory", "free"])})
REVOKED = inline_serializer(
    "RevokedKey", {"host": drf.CharField(), "revoked_key": drf.CharField(help_text="the key's fingerprint")}
)
TOKEN = inline_serializer(
    "EnrollmentToken",
    {
        "id": drf.UUIDField(),
        "token": drf.CharField(help_text="shown once: give it to the host (OCRDASH_ENROLLMENT_TOKEN_FILE)"),
        "fingerprint": drf.CharField(),
        "label": drf.CharField(),
        "host_name": drf.CharField(),
        "expires_at": drf.DateTimeField(),
        "dashboard_public_key": drf.CharField(),
    },
)
POLICY_RUN = inline_serializer(
    "PolicyRun",
    {
        "policy": drf.CharField(),
        "params": drf.DictField(),
        "selected": drf.ListField(child=drf.CharField()),
        "skipped_busy": drf.ListField(child=drf.CharField()),
        "skipped_unprunable": drf.ListField(child=drf.CharField()),
        "request": serializers.PruneRequestDetailSerializer(allow_null=True),
    },
)
POLICIES = inline_serializer(
    "Policy",
    {
        "name": drf.CharField(),
        "label": drf.CharField(),
        "description": drf.CharField(),
        "params": drf.ListField(child=drf.DictField()),
    },
    many=True,
)


def _host(name: str) -> Host:
    return get_object_or_404(Host, name=name)


def _with_items():
    """A request with its items, each read with where its file is now (``PruneItem.with_restored``)."""
    return PruneRequest.objects.select_related("host", "requested_by", "decided_by").prefetch_related(
        Prefetch("items", queryset=PruneItem.with_restored())
    )


def _request(request_id) -> PruneRequest:
    return get_object_or_404(_with_items(), id=request_id)


def _validated(serializer_class, data) -> dict[str, Any]:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def _request_detail(prune_request: PruneRequest, code: int = status.HTTP_200_OK) -> Response:
    prune_request = _request(prune_request.id)  # re-read: dispatch may have moved it on commit
    return Response(serializers.PruneRequestDetailSerializer(prune_request).data, status=code)


# ---------------------------------------------------------------- hosts


class HostList(_Api, generics.ListAPIView):
    queryset = (
        Host.objects.select_related("current_snapshot")
        .only(*serializers.HostSerializer.columns())
        .order_by("name")
    )
    serializer_class = serializers.HostSerializer
    filterset_class = filters.HostFilter


class HostDetail(_Api, generics.RetrieveAPIView):
    queryset = Host.objects.select_related("current_snapshot")
    serializer_class = serializers.HostSerializer
    lookup_field = "name"


class HostInventory(_Api, generics.ListAPIView):
    """The files of the host's current snapshot (empty before its first inventory)."""

    serializer_class = serializers.ModelFileSerializer
    filterset_class = None
    queryset = ModelFile.objects.none()  # the real one needs the URL's host: get_queryset

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # the schema generator has no URL kwargs
            return self.queryset
        host = _host(self.kwargs["name"])
        if host.current_snapshot_id is None:
            return ModelFile.objects.none()
        return ModelFile.objects.filter(snapshot_id=host.current_snapshot_id).order_by("path")


class HostAskInventory(_Api, APIView):
    action_required = Action.REQUEST_INVENTORY

    @extend_schema(request=None, responses={202: ASKED})
    def post(self, request: Request, name: str) -> Response:
        host = _host(name)
        workflow.ask_inventory(host, request.user)
        return Response({"host": host.name, "asked": "inventory"}, status=status.HTTP_202_ACCEPTED)


class HostAskFree(_Api, APIView):
    action_required = Action.REQUEST_FREE

    @extend_schema(request=None, responses={202: ASKED})
    def post(self, request: Request, name: str) -> Response:
        host = _host(name)
        workflow.ask_free(host, request.user)
        return Response({"host": host.name, "asked": "free"}, status=status.HTTP_202_ACCEPTED)


class HostAccept(_Api, APIView):
    action_required = Action.MANAGE_HOSTS

    @extend_schema(request=None, responses=serializers.HostSerializer)
    def post(self, request: Request, name: str) -> Response:
        host = hosts.accept_host(_host(name), request.user)
        return Response(serializers.HostSerializer(host).data)


class HostRetire(_Api, APIView):
    action_required = Action.MANAGE_HOSTS

    @extend_schema(request=None, responses=serializers.HostSerializer)
    def post(self, request: Request, name: str) -> Response:
        host = hosts.retire_host(_host(name), request.user)
        return Response(serializers.HostSerializer(host).data)


class HostRevokeKey(_Api, APIView):
    """Revoke the host's key: its messages are refused until it enrolls a new one."""

    action_required = Action.MANAGE_HOSTS

    @extend_schema(
        request=None, responses={200: REVOKED, 409: OpenApiResponse(description="no key to revoke")}
    )
    def post(self, request: Request, name: str) -> Response:
        host = _host(name)
        key = hosts.revoke_key(host, request.user.get_username())  # HostWrongState: 409
        host.refresh_from_db()
        return Response({**serializers.HostSerializer(host).data, "revoked_key": key.fingerprint})


class EnrollmentTokenCreate(_Api, APIView):
    """Make a one-time enrollment token. The token is in this response only: keep it safe."""

    action_required = Action.MANAGE_HOSTS

    @extend_schema(request=serializers.EnrollmentTokenRequestSerializer, responses={201: TOKEN})
    def post(self, request: Request) -> Response:
        data = _validated(serializers.EnrollmentTokenRequestSerializer, request.data)
        try:
            row, token = trust.create_token(
                request.user.get_username(),
                label=data.get("label", ""),
                host_name=data.get("host_name", ""),
                hours=data.get("hours"),
            )
        except TokenError as exc:
            raise ValidationError({"hours": [str(exc)]}) from exc
        response = Response(
            {
                "id": str(row.id),
                "token": token,
                "fingerprint": row.fingerprint,
                "label": row.label,
                "host_name": row.host_name,
                "expires_at": row.expires_at,
                "dashboard_public_key": trust.dashboard_public_key(),
            },
            status=status.HTTP_201_CREATED,
        )
        response["Cache-Control"] = "no-store"
        return response


class HostPropose(_Api, APIView):
    """Propose pruning files of the host's current snapshot, named by relative path in one
    store (``store``: the LLM folder by default, or ``ocr`` for the OCR resources folder)."""

    action_required = Action.PROPOSE

    @extend_schema(
        request=serializers.ProposeSerializer, responses={201: serializers.PruneRequestDetailSerializer}
    )
    def post(self, request: Request, name: str) -> Response:
        host = _host(name)
        data = _validated(serializers.ProposeSerializer, request.data)
        wanted = list(dict.fromkeys(data["files"]))
        files: list[ModelFile] = []
        if host.current_snapshot_id is not None:
            current = ModelFile.objects.filter(
                snapshot_id=host.current_snapshot_id, store=data["store"], path__in=wanted
            )
            files = list(current.select_related("snapshot"))
        if unknown := sorted(set(wanted) - {f.path for f in files}):
            shown = ", ".join(unknown[:10]) + (f" and {len(unknown) - 10} more" if len(unknown) > 10 else "")
            where = StoreChoices(data["store"]).label
            raise ValidationError(
                {"files": [f"not in the current inventory of {host.name} ({where}): {shown}"]}
            )
        prune_request = workflow.propose(
            host=host, files=files, reason=data["reason"], user=request.user, mode=data["mode"]
        )
        return _request_detail(prune_request, status.HTTP_201_CREATED)


class HostRunPolicy(_Api, APIView):
    """Run one policy on the host: 201 with the request, or 200 with request null if nothing matched."""

    action_required = Action.PROPOSE

    @extend_schema(request=serializers.PolicyRunSerializer, responses={200: POLICY_RUN, 201: POLICY_RUN})
    def post(self, request: Request, name: str, policy: str) -> Response:
        host = _host(name)
        data = _validated(serializers.PolicyRunSerializer, request.data)
        run = policies.run_policy(
            host, policy, user=request.user, params=data["params"], reason=data["reason"], mode=data["mode"]
        )
        body = {
            "policy": policy,
            "params": run.selection.params,
            "selected": [f.path for f in run.selection.files],
            "skipped_busy": run.selection.skipped_busy,
            "skipped_unprunable": run.selection.skipped_unprunable,
            "request": None,
        }
        if run.request is None:
            return Response(body)
        body["request"] = _request_detail(run.request).data
        return Response(body, status=status.HTTP_201_CREATED)


class PolicyList(_Api, APIView):
    @extend_schema(responses=POLICIES)
    def get(self, request: Request) -> Response:
        return Response([p.as_dict() for p in policies.REGISTRY.values()])


# ---------------------------------------------------------------- requests


class RequestList(_Api, generics.ListAPIView):
    serializer_class = serializers.PruneRequestSerializer
    filterset_class = filters.PruneRequestFilter
    # The item count as a subquery per row of the page (the request_id index), not a join of
    # every request's items grouped before the page is cut; the paginator's COUNT(*) then
    # leaves it out and counts the requests alone.
    # The related rows give a name each: their other columns (a host's dates, labels and
    # stores; a user's) are not loaded for a page of 100 requests.
    queryset = (
        PruneRequest.objects.select_related("host", "requested_by", "decided_by")
        .only(
            *(f.name for f in PruneRequest._meta.concrete_fields),
            "host__name",
            "requested_by__username",
            "decided_by__username",
        )
        .annotate(
            item_count=Coalesce(
                Subquery(
                    PruneItem.objects.filter(request=OuterRef("pk"))
                    .order_by()
                    .values("request")
                    .annotate(n=Count("id"))
                    .values("n")
                ),
                0,
            )
        )
        .order_by("-created_at")
    )


class RequestDetail(_Api, generics.RetrieveAPIView):
    serializer_class = serializers.PruneRequestDetailSerializer
    queryset = _with_items()
    lookup_url_kwarg = "request_id"


class RequestApprove(_Api, APIView):
    action_required = Action.APPROVE

    @extend_schema(request=serializers.CommentSerializer, responses=serializers.PruneRequestDetailSerializer)
    def post(self, request: Request, request_id) -> Response:
        data = _validated(serializers.CommentSerializer, request.data)
        return _request_detail(workflow.approve(_request(request_id).id, request.user, data["comment"]))


class RequestReject(_Api, APIView):
    action_required = Action.APPROVE

    @extend_schema(request=serializers.CommentSerializer, responses=serializers.PruneRequestDetailSerializer)
    def post(self, request: Request, request_id) -> Response:
        data = _validated(serializers.CommentSerializer, request.data)
        return _request_detail(workflow.reject(_request(request_id).id, request.user, data["comment"]))


class RequestRestore(_Api, APIView):
    """Propose moving back what a prune request quarantined (a new request, approved as usual)."""

    action_required = Action.RESTORE

    @extend_schema(
        request=serializers.RestoreSerializer, responses={201: serializers.PruneRequestDetailSerializer}
    )
    def post(self, request: Request, request_id) -> Response:
        data = _validated(serializers.RestoreSerializer, request.data)
        restore = workflow.propose_restore(
            prune_request=_request(request_id), user=request.user, reason=data["reason"]
        )
        return _request_detail(restore, status.HTTP_201_CREATED)


# ---------------------------------------------------------------- history


class AuditList(_Api, generics.ListAPIView):
    serializer_class = serializers.AuditEventSerializer
    filterset_class = filters.AuditFilter
    pagination_class = pagination.AuditCursorPagination
    queryset = AuditEvent.objects.order_by("-at", "-id")


class RejectedReportList(_Api, generics.ListAPIView):
    serializer_class = serializers.ReceivedReportSerializer
    filterset_class = filters.ReceivedReportFilter
    pagination_class = pagination.RejectedReportCursorPagination
    queryset = ReceivedReport.objects.filter(status=ReceivedReport.Status.REJECTED).order_by("-received_at")
