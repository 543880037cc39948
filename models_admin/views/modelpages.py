"""Models across the fleet: one file name (or one hash) and every host that holds it now.

Both pages read the per-model summary ingest keeps (``inventory/summary.py``: one row per name
and per name and content), never an aggregate over every current file row; the model page
lists its copies a page at a time.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, cast

from django.core.paginator import Page, Paginator
from django.db.models import Count, Max, Sum
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse

from ..inventory import history
from ..models import ModelFile, ModelSummary, ModelVersion
from ..security.roles import Action
from . import require

SHA256 = re.compile(r"^[0-9a-f]{64}$")
# Names per page of the index, copies per page of a model.
INDEX_PAGE = 100
COPIES_PAGE = 100


def index(request: HttpRequest) -> HttpResponse:
    require(request, Action.VIEW)
    q = request.GET.get("q", "").strip()
    names = ModelSummary.objects.filter(copies__gt=0)
    if q:
        if SHA256.match(q.lower()):
            names = names.filter(name__in=ModelVersion.objects.filter(sha256=q.lower()).values("name"))
        else:
            names = names.filter(name__icontains=q)
    page = Paginator(names.order_by("name"), INDEX_PAGE).get_page(request.GET.get("page"))
    rows = list(page.object_list)
    # Versions and the largest copy of the names on this page: one query over their identities.
    versions: dict[str, Any] = {
        v["name"]: v
        for v in ModelVersion.objects.filter(name__in=[r.name for r in rows], copies__gt=0)
        .values("name")
        .annotate(
            hashes=Count("sha256", distinct=True), largest=Max(Coalesce("bytes", 0) / Coalesce("copies", 1))
        )
        .order_by()
    }
    models = [
        {
            "name": r.name,
            "hosts": r.hosts,
            "copies": r.copies,
            "bytes": r.bytes,
            "known": r.known,
            "hashes": versions.get(r.name, {}).get("hashes", 0),
            "largest": versions.get(r.name, {}).get("largest", 0),
        }
        for r in rows
    ]
    context = {"models": models, "page": page, "q": q, "nav": "models"}
    return render(request, "models_admin/models.html", context)


def detail(request: HttpRequest, key: str) -> HttpResponse:
    require(request, Action.VIEW)
    by_hash = bool(SHA256.match(key))
    identities = ModelVersion.objects.filter(sha256=key) if by_hash else ModelVersion.objects.filter(name=key)
    identities = identities.filter(copies__gt=0)
    totals = identities.aggregate(copies=Coalesce(Sum("copies"), 0), bytes=Coalesce(Sum("bytes"), 0))
    if by_hash:
        # One content under several names on one host counts once per name: close enough for
        # a heading, and the list below shows every copy.
        hosts = identities.aggregate(n=Coalesce(Max("hosts"), 0))["n"]
    else:
        summary = ModelSummary.objects.filter(name=key).first()
        hosts = summary.hosts if summary else 0
    # The copy count is the summary's: no count over the file rows.
    copies = history.CurrentCopies(key, by_hash, totals["copies"])
    # A sequence by duck type: len() and slices, which is all a Paginator asks of it.
    page: Page = Paginator(cast("Sequence[ModelFile]", copies), COPIES_PAGE).get_page(request.GET.get("page"))
    files = list(page.object_list)
    return render(
        request,
        "models_admin/model.html",
        {
            "key": key,
            "by_hash": by_hash,
            "files": files,
            "rows": _copy_rows(files),
            "page": page,
            "copies": totals["copies"],
            "hosts": hosts,
            "hashes": sorted(v for v in identities.values_list("sha256", flat=True).distinct() if v),
            "total_bytes": totals["bytes"],
            # One "remove everywhere" campaign per identity (name and content) shown here.
            "identities": sorted((v.name, v.sha256) for v in identities.only("name", "sha256") if v.sha256),
            "nav": "models",
        },
    )


def _copy_rows(files: list[ModelFile]) -> list[tuple[ModelFile, str, str]]:
    """(copy, its host's page, its content's page) per row. Two URLs a row reversed in the
    template cost a tenth of a 100-row page: each is reversed once here and filled in (host
    names and sha256 digests hold no character a URL path would escape)."""
    host_url = reverse("ocrdash-host", args=[_HOST_MARK])
    sha_url = reverse("ocrdash-model", args=[_SHA_MARK])
    return [
        (
            f,
            host_url.replace(_HOST_MARK, f.snapshot.host.name),
            sha_url.replace(_SHA_MARK, f.sha256) if f.sha256 else "",
        )
        for f in files
    ]


_HOST_MARK = "host-name-here"
_SHA_MARK = "f" * 64
