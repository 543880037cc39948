"""The past of one host (its timeline) and of one model (its lifecycle across the fleet)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from django import forms
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from ..inventory import lifecycle as sightings
from ..inventory import reports
from ..models import ModelFile
from ..security.roles import Action
from . import get_host_for_user, require

TIMELINE_PAGE = 50
LIFECYCLE_PAGE = 50


class AtForm(forms.Form):
    # The browser's datetime-local value (2026-11-17T12:00), read in the dashboard's zone.
    at = forms.DateTimeField(
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"]
    )


def timeline(request: HttpRequest, name: str) -> HttpResponse:
    """Every stored inventory of a host, newest first, with what changed at each step, and
    the inventory valid at a chosen moment (``?at=``)."""
    host = get_host_for_user(request, name)
    page = Paginator(host.snapshots.order_by("-taken_at", "-id"), TIMELINE_PAGE).get_page(
        request.GET.get("page")
    )
    steps = reports.timeline_steps(list(page.object_list))
    at_form = AtForm(request.GET) if "at" in request.GET else AtForm()
    held = held_files = None
    if at_form.is_bound and at_form.is_valid():
        held = reports.snapshot_at(host, at_form.cleaned_data["at"])
        held_files = list(ModelFile.objects.filter(snapshot=held)) if held else []
    return render(
        request,
        "models_admin/history/timeline.html",
        {
            "host": host,
            "page": page,
            "steps": steps,
            "at_form": at_form,
            "held": held,
            "held_files": held_files,
            "now_local": timezone.localtime().strftime("%Y-%m-%dT%H:%M"),
            "nav": "fleet",
        },
    )


def lifecycle(request: HttpRequest, key: str) -> HttpResponse:
    """A model (file name or sha256) across the fleet: first and last seen per host, where it
    is now, and who removed it where it is gone."""
    require(request, Action.VIEW)
    key = key.strip()
    if not key:
        raise Http404("name a model")
    # A model on every host of a big fleet has a row per host: a page of them at a time, read
    # from the sightings ingest keeps (inventory/lifecycle.py), counted once for the heading.
    seen_on, present_on = sightings.counts(key)
    page = Paginator(
        cast("Sequence[sightings.HostSighting]", sightings.HostSightings(key, seen_on)), LIFECYCLE_PAGE
    ).get_page(request.GET.get("page"))
    hosts = reports.model_lifecycle(key, list(page.object_list))
    return render(
        request,
        "models_admin/history/lifecycle.html",
        {
            "key": key,
            "by_hash": sightings.key_of(key)[0] == sightings.Kind.SHA256,
            "hosts": hosts,
            "page": page,
            "seen_on": seen_on,
            "present_on": present_on,
            "previous_label": "\u2039 Previous",
            "next_label": "Next \u203a",
            "nav": "models",
        },
    )
