"""Models across the fleet: one file name (or one hash) and every host that holds it now."""

from __future__ import annotations

import re

from django.db.models import Count, Max, Q, Sum
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from .. import history
from ..roles import Action
from . import require

SHA256 = re.compile(r"^[0-9a-f]{64}$")


def index(request: HttpRequest) -> HttpResponse:
    require(request, Action.VIEW)
    q = request.GET.get("q", "").strip()
    files = history.current_files()
    if q:
        files = files.filter(sha256=q.lower()) if SHA256.match(q.lower()) else files.filter(name__icontains=q)
    models = (
        files.values("name")
        .annotate(
            hosts=Count("snapshot__host", distinct=True),
            copies=Count("id"),
            hashes=Count("sha256", distinct=True),
            bytes=Sum("size"),
            largest=Max("size"),
            known=Count("id", filter=Q(known_to_aspose=True)),
        )
        .order_by("name")
    )
    return render(request, "models_admin/models.html", {"models": models[:500], "q": q, "nav": "models"})


def detail(request: HttpRequest, key: str) -> HttpResponse:
    require(request, Action.VIEW)
    by_hash = bool(SHA256.match(key))
    files = history.current_files().select_related("snapshot__host")
    files = files.filter(sha256=key) if by_hash else files.filter(name=key)
    files = list(files.order_by("snapshot__host__name", "path"))
    return render(
        request,
        "models_admin/model.html",
        {
            "key": key,
            "by_hash": by_hash,
            "files": files,
            "hosts": len({f.snapshot.host_id for f in files}),
            "hashes": sorted({f.sha256 for f in files if f.sha256}),
            "total_bytes": sum(f.size for f in files),
            "nav": "models",
        },
    )
