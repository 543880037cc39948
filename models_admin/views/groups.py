"""Host groups (saved selectors or explicit lists) and a host's labels."""

from __future__ import annotations

from django.contrib import messages
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from ..fleet import labels
from ..forms import GroupForm, LabelsForm
from ..models import Host, HostGroup
from ..security.roles import Action
from . import flash_error, flash_form_errors, get_host_for_user, require


def index(request: HttpRequest) -> HttpResponse:
    require(request, Action.VIEW)
    live = Host.objects.exclude(status=Host.Status.RETIRED)
    groups = [
        {
            "group": group,
            "listed": group.listed,
            "members": labels.group_hosts(group, live).count(),
            "selector_text": labels.format_selector(group.selector),
        }
        for group in HostGroup.objects.annotate(listed=Count("hosts")).order_by("name")
    ]
    used = sorted(
        {
            f"{k}={v}"
            for row in live.exclude(labels={}).values_list("labels", flat=True)
            for k, v in row.items()
        }
    )
    return render(
        request,
        "models_admin/groups.html",
        {"groups": groups, "form": GroupForm(), "used_labels": used, "nav": "groups"},
    )


@require_POST
def save(request: HttpRequest) -> HttpResponse:
    require(request, Action.MANAGE_HOSTS)
    form = GroupForm(request.POST)
    if not form.is_valid():
        flash_form_errors(request, form)
        return redirect("ocrdash-groups")
    data = form.cleaned_data
    try:
        group = labels.save_group(
            data["name"],
            user=request.user,
            selector=data["selector"],
            hosts=data["hosts"],
            description=data["description"],
        )
    except labels.LabelError as exc:
        flash_error(request, exc)
    else:
        messages.success(request, f"Group {group.name} saved.")
    return redirect("ocrdash-groups")


@require_POST
def delete(request: HttpRequest, name: str) -> HttpResponse:
    group = get_object_or_404(HostGroup, name=name)
    require(request, Action.MANAGE_HOSTS)
    labels.delete_group(group, request.user)
    messages.success(request, f"Group {name} deleted.")
    return redirect("ocrdash-groups")


@require_POST
def set_host_labels(request: HttpRequest, name: str) -> HttpResponse:
    host = get_host_for_user(request, name, Action.MANAGE_HOSTS)
    form = LabelsForm(request.POST)
    if not form.is_valid():
        messages.error(request, str(form.errors["labels"][0]))
        return redirect("ocrdash-host", name=host.name)
    labels.set_labels(host, form.cleaned_data["labels"], request.user)
    messages.success(request, f"Labels of {host.name} saved.")
    return redirect("ocrdash-host", name=host.name)
