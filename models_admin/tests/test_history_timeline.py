"""A host's timeline page and "what did it hold at T"."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from models_admin.views.history import TIMELINE_PAGE

from .history_factories import at, host, snapshot

pytestmark = pytest.mark.django_db


def _url(name: str = "ocr-a") -> str:
    return reverse("ocrdash-host-timeline", args=[name])


@pytest.fixture
def ocr_a():
    a = host("ocr-a")
    snapshot(a, at("2026-03-01 10:00"), {"en.gguf": 100, "old_fr.bin": 50})
    snapshot(a, at("2026-03-02 10:00"), {"en.gguf": 120, "de.gguf": 70, "old_fr.bin": 50})
    snapshot(a, at("2026-03-03 10:00"), {"en.gguf": 120, "de.gguf": 70})
    return a


def test_each_step_says_what_changed_and_links_to_its_diff(client_for, viewer, ocr_a):
    response = client_for(viewer).get(_url())

    assert response.status_code == 200
    steps = response.context["steps"]
    assert [(s.added, s.removed, s.changed) for s in steps] == [(0, 1, 0), (1, 0, 1), (2, 0, 0)]
    html = response.content.decode()
    assert "\N{MINUS SIGN}1 removed" in html and "+1 added" in html and "~1 changed" in html
    diff = reverse("ocrdash-host-diff", args=["ocr-a"])
    assert f"{diff}?a={steps[1].snapshot.id}&amp;b={steps[0].snapshot.id}" in html


def test_at_shows_the_inventory_valid_at_that_moment(client_for, viewer, ocr_a):
    response = client_for(viewer).get(_url() + "?at=2026-03-02T23:59")

    held = response.context["held"]
    assert held.taken_at == at("2026-03-02 10:00")
    assert sorted(f.path for f in response.context["held_files"]) == ["de.gguf", "en.gguf", "old_fr.bin"]
    assert "held <strong>3 files</strong>" in response.content.decode()


def test_at_before_the_first_inventory_says_so(client_for, viewer, ocr_a):
    response = client_for(viewer).get(_url() + "?at=2020-01-01T00:00")

    assert response.context["held"] is None
    assert "No inventory of ocr-a is that old" in response.content.decode()


def test_a_malformed_at_is_an_error_not_a_crash(client_for, viewer, ocr_a):
    response = client_for(viewer).get(_url() + "?at=last+tuesday")

    assert response.status_code == 200
    assert response.context["held"] is None
    assert "is-invalid" in response.content.decode()


def test_it_pages_and_counts_changes_across_the_page_boundary(client_for, viewer):
    a = host("ocr-a")
    start = at("2026-01-01 00:00")
    for i in range(TIMELINE_PAGE + 5):
        snapshot(a, start + timedelta(days=i), {"en.gguf": 100 + i})

    second = client_for(viewer).get(_url() + "?page=2")

    steps = second.context["steps"]
    assert len(steps) == 5
    assert (steps[0].changed, steps[0].bytes_delta) == (1, 1)  # its parent is on page 2 as well
    assert steps[-1].previous_id is None
    first_page = client_for(viewer).get(_url()).context["steps"]
    assert first_page[-1].changed == 1 and first_page[-1].previous_id == steps[0].snapshot.id


def test_its_query_count_does_not_grow_with_the_history(client_for, viewer, ocr_a, django_assert_num_queries):
    client = client_for(viewer)
    client.get(_url())
    with CaptureQueriesContext(connection) as small:
        client.get(_url())

    start = at("2026-04-01 00:00")
    for i in range(3 * TIMELINE_PAGE):
        snapshot(ocr_a, start + timedelta(hours=i), {f"m{j}.gguf": i + j for j in range(5)})

    with django_assert_num_queries(len(small)):
        response = client.get(_url() + "?page=2")
    assert len(response.context["steps"]) == TIMELINE_PAGE


def test_unknown_host_is_not_found_and_outsiders_are_refused(client, client_for, viewer, outsider, ocr_a):
    assert client_for(viewer).get(_url("nope")).status_code == 404
    assert client_for(outsider).get(_url()).status_code == 403
    assert client.get(_url()).status_code == 302
