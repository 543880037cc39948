"""The API describes itself: a valid OpenAPI 3 schema at /api/schema/ that names every route,
Swagger UI at /api/docs/ without inline script, and /api/ listing every endpoint."""

from __future__ import annotations

import re

import pytest
import yaml
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from models_admin.api import urls as api_urls
from models_admin.api.docs import endpoints, flatten
from models_admin.api.tokens import issue_token

pytestmark = pytest.mark.django_db


def _openapi_path(route: str) -> str:
    """hosts/<str:name>/ -> /api/hosts/{name}/, as the schema writes it."""
    return "/api/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route)


def test_the_generated_schema_is_valid_openapi_without_a_warning(tmp_path):
    out = tmp_path / "schema.yaml"
    # --validate checks the document against the OpenAPI 3 JSON schema; --fail-on-warn turns
    # every view spectacular cannot describe (a body it has to guess) into a failure.
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    schema = yaml.safe_load(out.read_text())
    assert schema["openapi"].startswith("3.")
    routes = [r for r, p in flatten(api_urls.routes) if p.name not in {"api-schema", "api-docs"}]
    assert "hosts/<str:name>/accept/" in routes  # a grouped route, opened
    missing = [r for r in routes if _openapi_path(r) not in schema["paths"]]
    assert not missing, f"routes the schema does not describe: {missing}"
    assert {"tokenAuth", "cookieAuth"} <= set(schema["components"]["securitySchemes"])
    approve = schema["paths"]["/api/prune-requests/{request_id}/approve/"]["post"]
    assert approve["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/CommentRequest")


def test_a_script_with_a_token_reads_the_schema_and_a_stranger_does_not(viewer):
    token = issue_token(viewer)
    response = Client().get("/api/schema/?format=json", HTTP_AUTHORIZATION=f"Token {token}")
    assert response.status_code == 200
    assert response.json()["info"]["title"] == "ocrdash API"
    assert Client().get("/api/schema/").status_code == 401


def test_the_root_lists_every_endpoint_with_its_methods(client_for, viewer):
    body = client_for(viewer).get("/api/").json()
    assert body["schema"].endswith("/api/schema/") and body["docs"].endswith("/api/docs/")
    listed = {e["name"]: e for e in body["endpoints"]}
    assert listed["api-hosts"] == {"name": "api-hosts", "path": "/api/hosts/", "methods": ["GET"]}
    assert listed["api-request-approve"]["methods"] == ["POST"]
    assert listed["api-request-approve"]["path"] == "/api/prune-requests/<uuid:request_id>/approve/"
    named = {p.name for _, p in flatten(api_urls.urlpatterns)} - {"api-root"}
    assert set(listed) == named
    assert body["endpoints"] == endpoints(api_urls.routes)


def test_the_docs_page_loads_its_code_from_files_of_this_server(client_for, viewer):
    anonymous = Client().get("/api/docs/")
    assert anonymous.status_code == 302 and anonymous["Location"].startswith(reverse("login"))
    page = client_for(viewer).get("/api/docs/").content.decode()
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page, re.S)
    assert scripts and all('src="/' in attrs and not body.strip() for attrs, body in scripts), scripts
    assert "<style" not in page and "cdn" not in page.lower()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in page
    init = client_for(viewer).get("/api/docs/?script=")
    assert init["Content-Type"].startswith("application/javascript")
    assert "/api/schema/" in init.content.decode()
