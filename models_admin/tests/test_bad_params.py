"""Finding 7: a capped API page, and a 400 with a message (never a 500) for parameters out of
range. Before, ?limit=1000000 returned everything, and these were 500s: a limit beyond
PostgreSQL's bigint, and extreme dates on the reports page, the deletions page and both of
its exports."""

from __future__ import annotations

import pytest
from django.test import Client

from models_admin.api.tokens import issue_token

pytestmark = pytest.mark.django_db
HUGE = "9" * 23


@pytest.fixture
def api(viewer) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Token {issue_token(viewer)}")


def test_the_api_page_size_is_capped(api, make_host, settings):
    settings.OCRDASH = {**settings.OCRDASH, "API_MAX_PAGE_SIZE": 3}
    for i in range(5):
        make_host(f"ocr-{i}")
    body = api.get("/api/hosts/?limit=1000000").json()
    assert body["count"] == 5 and len(body["results"]) == 3 and "limit=3" in body["next"]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (f"limit={HUGE}", "limit must be a whole number from 1"),
        ("limit=-5", "limit must be a whole number from 1"),
        ("limit=ten", "limit must be a whole number from 1"),
        (f"offset={HUGE}", "offset must be a whole number from 0"),
        ("offset=-1", "offset must be a whole number from 0"),
    ],
)
def test_a_limit_or_offset_out_of_range_is_a_400_with_the_rule(api, make_host, query, message):
    make_host("ocr-1")
    # The audit pages by cursor: it takes a limit, and refuses any offset (test_api_cursor.py).
    urls = ["/api/hosts/", "/api/hosts/ocr-1/inventory/"] + (["/api/audit/"] if "limit" in query else [])
    for url in urls:
        response = api.get(f"{url}?{query}")
        assert response.status_code == 400, url
        assert message in str(response.json()), response.json()


@pytest.mark.parametrize(
    "url",
    [
        "/reports/?end=9999-12-31",
        "/reports/?start=0001-01-01",
        "/reports/deletions/?end=0001-01-01",
        "/reports/deletions/?start=9999-12-31&end=9999-12-31",
    ],
)
def test_extreme_dates_on_the_report_pages_are_a_400_that_says_why(client_for, viewer, url):
    response = client_for(viewer).get(url)
    assert response.status_code == 400
    assert "choose a date between 1970-01-01 and 9000-12-31" in response.content.decode()


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_an_export_of_an_extreme_range_is_a_400_not_a_file(client_for, viewer, fmt):
    response = client_for(viewer).get(f"/reports/deletions/export.{fmt}?end=9999-12-31")
    assert response.status_code == 400
    assert "end: choose a date between" in response.content.decode()
    assert "Content-Disposition" not in response


def test_a_reversed_range_is_a_400_too(client_for, viewer):
    assert client_for(viewer).get("/reports/?start=2026-03-10&end=2026-03-01").status_code == 400
