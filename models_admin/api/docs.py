"""What the API says about itself: the endpoint list at /api/, OpenAPI 3 at /api/schema/ and
Swagger UI at /api/docs/.

The schema is generated from the views and serializers (drf-spectacular), so it cannot drift
from what the API does; a test validates it. The docs page loads Swagger UI's files from the
drf-spectacular-sidecar package (no CDN) and its start-up code from a separate script URL,
so the page needs no inline script and passes the Content-Security-Policy.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from django.contrib.auth.decorators import login_required
from django.urls import URLPattern, URLResolver, reverse
from drf_spectacular.utils import extend_schema, inline_serializer
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from .permissions import RolePermission
from .views import _Api

IGNORED_METHODS = {"options", "head", "trace"}


def endpoints(routes: Sequence[URLPattern | URLResolver]) -> list[dict[str, Any]]:
    """Every route in ``routes`` (groups opened): its name, path template and HTTP methods."""
    prefix = reverse("api-root")
    listed = []
    for route, pattern in flatten(routes):
        view_class = getattr(pattern.callback, "cls", None)
        methods = sorted(
            m.upper()
            for m in getattr(view_class, "http_method_names", ())
            if m not in IGNORED_METHODS and hasattr(view_class, m)
        )
        listed.append({"name": pattern.name, "path": prefix + route, "methods": methods})
    return listed


def flatten(routes: Sequence[URLPattern | URLResolver], prefix: str = "") -> Iterator[tuple[str, URLPattern]]:
    """(whole route, pattern) of every pattern in ``routes``, an ``include`` opened in place."""
    for pattern in routes:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            yield from flatten(pattern.url_patterns, route)
        else:
            yield route, pattern


class ApiRoot(_Api):
    """GET /api/: where the schema and the docs are, and every endpoint.

    ``routes`` is given by api/urls.py (``as_view(routes=...)``): the routes are the URL
    module's to know, and this view lists what it is handed.
    """

    routes: Sequence[URLPattern | URLResolver] = ()

    @extend_schema(
        responses=inline_serializer(
            "ApiRoot",
            {
                "schema": serializers.CharField(),
                "docs": serializers.CharField(),
                "endpoints": serializers.ListField(child=serializers.DictField()),
            },
        )
    )
    def get(self, request: Request) -> Response:
        return Response(
            {
                "schema": request.build_absolute_uri(reverse("api-schema")),
                "docs": request.build_absolute_uri(reverse("api-docs")),
                "endpoints": endpoints(self.routes),
            }
        )


class ApiSchema(_Api, SpectacularAPIView):
    """The OpenAPI 3 document (YAML, or JSON with ?format=json), for anyone who may look."""


class ApiDocs(SpectacularSwaggerSplitView):
    """Swagger UI for a signed-in user; anyone else is sent to the login page, as for a page."""

    permission_classes = [RolePermission]
    template_name = "models_admin/api_docs.html"
    url_name = "api-schema"

    @classmethod
    def as_view(cls, **initkwargs: Any) -> Any:
        # drf-spectacular exempts its views from LoginRequiredMiddleware; a page wants the login
        # redirect, not DRF's 401.
        return login_required(super().as_view(**initkwargs))
