"""A model's lifecycle page: where it has been, where it is, who removed it."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from .history_factories import at, file_sha, host, prune, snapshot

pytestmark = pytest.mark.django_db


def _url(key: str) -> str:
    return reverse("ocrdash-model-lifecycle", args=[key])


@pytest.fixture
def fleet(operator, approver):
    a, b = host("ocr-a"), host("ocr-b")
    snapshot(a, at("2026-03-01 10:00"), {"old_fr.bin": 10, "en.gguf": 5})
    snapshot(a, at("2026-03-07 10:00"), {"en.gguf": 5})
    snapshot(b, at("2026-03-02 10:00"), {"old_fr.bin": 10})
    prune(
        a,
        [("old_fr.bin", 10, "quarantined", 10)],
        created_at=at("2026-03-06 09:00"),
        requested_by=operator,
        decided_by=approver,
        decided_at=at("2026-03-06 09:30"),
        finished_at=at("2026-03-06 12:00"),
        comment="replaced by en",
    )


def test_it_shows_where_the_model_is_and_who_removed_it_elsewhere(client_for, viewer, fleet):
    response = client_for(viewer).get(_url("old_fr.bin"))

    assert response.status_code == 200
    assert [(h.host, h.present) for h in response.context["hosts"]] == [("ocr-a", False), ("ocr-b", True)]
    html = response.content.decode()
    assert "Seen on 2 hosts; on 1 now." in html
    assert "asked by <strong>otto</strong>, approved by <strong>alice</strong>" in html
    assert "since the inventory of 2026-03-07 10:00" in html
    assert "replaced by en" in html


def test_it_finds_a_model_by_its_hash(client_for, viewer, fleet):
    response = client_for(viewer).get(_url(file_sha("old_fr.bin", 10)))

    assert [h.host for h in response.context["hosts"]] == ["ocr-a", "ocr-b"]
    assert response.context["by_hash"] is True


def test_a_model_never_seen_says_so(client_for, viewer, fleet):
    response = client_for(viewer).get(_url("nothing.bin"))

    assert "No inventory ever held a file with this name" in response.content.decode()


def test_its_query_count_does_not_grow_with_hosts_or_history(
    client_for, viewer, fleet, operator, approver, django_assert_num_queries
):
    client = client_for(viewer)
    client.get(_url("old_fr.bin"))
    with CaptureQueriesContext(connection) as small:
        client.get(_url("old_fr.bin"))

    for i in range(10):
        h = host(f"ocr-x{i}")
        snapshot(h, at("2026-03-01 10:00"), {"old_fr.bin": 10})
        snapshot(h, at("2026-03-02 10:00"), {"other.bin": 1})
        prune(
            h,
            [("old_fr.bin", 10, "deleted", 10)],
            created_at=at("2026-03-01 11:00"),
            requested_by=operator,
            decided_by=approver,
            finished_at=at("2026-03-01 12:00"),
        )

    with django_assert_num_queries(len(small)):
        response = client.get(_url("old_fr.bin"))
    assert len(response.context["hosts"]) == 12


def test_outsiders_are_refused(client_for, outsider, fleet):
    assert client_for(outsider).get(_url("old_fr.bin")).status_code == 403


def test_a_model_on_many_hosts_is_listed_a_page_at_a_time(client_for, viewer, fleet, settings):
    from models_admin.views import history

    for i in range(history.LIFECYCLE_PAGE + 5):
        snapshot(host(f"ocr-z{i:03d}"), at("2026-03-03 10:00"), {"old_fr.bin": 10})
    client = client_for(viewer)

    first = client.get(_url("old_fr.bin"))
    last = client.get(_url("old_fr.bin") + "?page=2")

    total = history.LIFECYCLE_PAGE + 7
    assert len(first.context["hosts"]) == history.LIFECYCLE_PAGE
    assert [h.host for h in last.context["hosts"]] == [f"ocr-z{i:03d}" for i in range(48, 55)]
    # The heading counts every host, not the page: all but ocr-a hold it now.
    assert f"Seen on {total} hosts; on {total - 1} now." in last.content.decode()
    assert [(h.host, h.present, h.removals != []) for h in first.context["hosts"][:2]] == [
        ("ocr-a", False, True),
        ("ocr-b", True, False),
    ]
