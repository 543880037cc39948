"""The reports page: its tables carry the numbers computed by hand, its cost does not grow
with the history, and only people with a role see it."""

from __future__ import annotations

import json
import re
from datetime import date, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from .history_factories import at, host, prune, snapshot

pytestmark = pytest.mark.django_db

URL = reverse("ocrdash-reports")
RANGE = "?start=2026-03-02&end=2026-03-15"


def _table(html: str, table_id: str) -> list[list[str]]:
    """The body rows of one table, as cell texts (tags stripped)."""
    body = re.search(rf'<table[^>]*id="{table_id}".*?<tbody>(.*?)</tbody>', html, re.S).group(1)
    rows = re.findall(r"<tr>(.*?)</tr>", body, re.S)
    return [
        [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", r, re.S)] for r in rows
    ]


def _fixture():
    a, b = host("ocr-a"), host("ocr-b")
    snapshot(a, at("2026-03-01 10:00"), {"en.gguf": 1000, "old_fr.bin": 500})
    snapshot(b, at("2026-03-04 10:00"), {"en.gguf": 1000})
    snapshot(a, at("2026-03-09 10:00"), {"en.gguf": 1000})
    prune(
        a,
        [("old_fr.bin", 500, "quarantined", 500)],
        created_at=at("2026-03-05 09:00"),
        decided_at=at("2026-03-06 09:00"),
        finished_at=at("2026-03-09 09:00"),
    )
    return a, b


def test_the_tables_carry_the_numbers_of_the_charts(client_for, viewer):
    _fixture()

    response = client_for(viewer).get(URL + RANGE)

    assert response.status_code == 200
    html = response.content.decode()
    # Fleet at each week's end: Sun Mar 8 = a 1500 + b 1000; Sun Mar 15 = 1000 + 1000.
    assert [r[:2] + r[3:] for r in _table(html, "table-disk")] == [
        ["2026-03-08", "2500", "3"],
        ["2026-03-15", "2000", "2"],
    ]
    # Week, bytes, files, in quarantine, freed on disk.
    assert [r[:2] + r[3:] for r in _table(html, "table-reclaimed")] == [
        ["2026-03-02", "0", "0", "0", "0"],
        ["2026-03-09", "500", "1", "500", "0"],
    ]
    assert [r[:2] for r in _table(html, "table-models")] == [["ocr-a", "1"], ["ocr-b", "1"]]
    # Proposed Mar 5, approved Mar 6: one proposal and one approval in the first week.
    assert _table(html, "table-requests") == [
        ["2026-03-02", "1", "1", "0", "0", "0"],
        ["2026-03-09", "0", "0", "0", "0", "0"],
    ]
    data = json.loads(
        re.search(r'<script id="report-data" type="application/json">(.*?)</script>', html, re.S)[1]
    )
    assert data["days"][0] == "2026-03-02" and len(data["days"]) == 14
    assert data["host_bytes"]["ocr-a"][0] == 1500 and data["host_bytes"]["ocr-a"][-1] == 1000
    assert data["reclaimed_bytes"] == [0, 500]
    assert data["reclaimed_in_quarantine"] == [0, 500] and data["reclaimed_freed"] == [0, 0]


def test_the_host_filter_narrows_every_chart(client_for, viewer):
    _fixture()

    html = client_for(viewer).get(URL + RANGE + "&host=ocr-b").content.decode()

    assert [r[:2] for r in _table(html, "table-models")] == [["ocr-b", "1"]]
    assert [r[1] for r in _table(html, "table-reclaimed")] == ["0", "0"]


def test_all_hosts_is_the_empty_choice(client_for, viewer):
    _fixture()

    response = client_for(viewer).get(URL + RANGE + "&host=")

    assert response.context["form"].is_valid()
    assert [r[0] for r in _table(response.content.decode(), "table-models")] == ["ocr-a", "ocr-b"]


def _history_since(make_host, days: int) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from models_admin.inventory import rollup
    from models_admin.models import Snapshot

    host = make_host("ocr-old")
    Snapshot.objects.filter(host=host).update(taken_at=timezone.now() - timedelta(days=days))
    rollup.rebuild()  # the history moved by hand; the rollup follows as if ingest had stored it


def test_it_defaults_to_the_last_90_days(client_for, viewer, make_host):
    _history_since(make_host, 200)  # a fresh install starts at its first data instead (test_papercuts)
    response = client_for(viewer).get(URL)

    data = response.context["chart_data"]
    assert len(data["days"]) == 90
    assert data["days"][-1] == response.context["end"].isoformat()


def test_a_reversed_range_is_explained_and_the_default_shown(client_for, viewer, make_host):
    _history_since(make_host, 200)
    response = client_for(viewer).get(URL + "?start=2026-03-10&end=2026-03-01")

    assert "the start of the range is after its end" in response.content.decode().lower()
    assert len(response.context["chart_data"]["days"]) == 90


def test_it_needs_a_login_and_a_role(client, client_for, outsider):
    assert client.get(URL).status_code == 302
    assert client_for(outsider).get(URL).status_code == 403


def test_it_refuses_post(client_for, approver):
    assert client_for(approver).post(URL).status_code == 405


def test_its_query_count_does_not_grow_with_the_history(client_for, viewer, django_assert_num_queries):
    a, b = _fixture()
    client = client_for(viewer)
    client.get(URL + RANGE)  # session and user caches warm
    with CaptureQueriesContext(connection) as small:
        client.get(URL + RANGE)

    day = date(2026, 3, 2)
    for i in range(14):
        snapshot(a, at(f"{day + timedelta(days=i)} 12:00"), {"en.gguf": 1000 + i})
        snapshot(b, at(f"{day + timedelta(days=i)} 13:00"), {"en.gguf": 2000 + i})
        prune(
            b,
            [(f"old_{i}.bin", 1, "deleted", 1)],
            created_at=at(f"{day} 00:00"),
            finished_at=at(f"{day} 01:00"),
        )
    host("ocr-c")

    with django_assert_num_queries(len(small)):
        response = client.get(URL + RANGE)
    assert response.status_code == 200


def test_a_large_fleet_draws_its_biggest_hosts_and_sums_the_rest(client_for, viewer):
    from models_admin.views.reports import TOP_HOSTS

    for i in range(TOP_HOSTS + 3):
        snapshot(host(f"ocr-{i:03d}"), at("2026-03-01 10:00"), {"en.gguf": 1000 + i})

    response = client_for(viewer).get(URL + RANGE)

    data = response.context["chart_data"]
    assert len(data["host_bytes"]) == TOP_HOSTS and "ocr-000" not in data["host_bytes"]  # the smallest
    assert data["other_hosts"] == 3 and data["other_bytes"][-1] == 1000 + 1001 + 1002
    rows = _table(response.content.decode(), "table-models")
    assert len(rows) == TOP_HOSTS + 1 and "and 3 smaller hosts" in rows[-1][0]
    assert data["fleet_bytes"][-1] == sum(1000 + i for i in range(TOP_HOSTS + 3))


def test_the_host_field_is_a_search_not_a_list_of_every_host(client_for, viewer):
    """The page names only the hosts picked (as ticked boxes), whatever the fleet's size;
    the suggestions come from the JSON endpoint, a few names at a time."""
    _fixture()
    for i in range(30):
        host(f"ocr-z{i:02d}")

    html = client_for(viewer).get(URL + RANGE + "&host=ocr-b&host=ocr-a").content.decode()

    assert "<option" not in re.search(r'<form[^>]*id="range-form".*?</form>', html, re.S).group(0)
    picked = re.findall(r'<input type="checkbox"[^>]*name="host" value="([^"]+)" checked>', html)
    assert picked == ["ocr-b", "ocr-a"]
    assert [r[0] for r in _table(html, "table-models")] == ["ocr-a", "ocr-b"]
    assert 'src="/static/models_admin/host_picker.js"' in html


def test_an_unknown_host_is_explained(client_for, viewer):
    _fixture()

    response = client_for(viewer).get(URL + RANGE + "&host=ocr-nope")

    assert response.status_code == 400
    assert "no host named ocr-nope" in response.content.decode()


def test_the_host_suggestions(client_for, viewer, outsider):
    for name in ("web-ocr-1", "ocr-10", "ocr-2", *(f"ocr-x{i:02d}" for i in range(30))):
        host(name)
    url = reverse("ocrdash-report-hosts")

    body = client_for(viewer).get(url + "?q=OCR-1").json()
    assert body == {"q": "OCR-1", "hosts": ["ocr-10", "web-ocr-1"]}  # those starting with it first
    assert len(client_for(viewer).get(url).json()["hosts"]) == 20
    assert client_for(outsider).get(url).status_code == 403


def test_the_page_counts_a_purged_file_as_freed_on_disk(client_for, viewer):
    a, _b = _fixture()
    prune(
        a,
        [("old_de.bin", 300, "purged", 300), ("old_it.bin", 20, "deleted", 20)],
        created_at=at("2026-03-10 09:00"),
        finished_at=at("2026-03-10 10:00"),
    )

    html = client_for(viewer).get(URL + RANGE).content.decode()

    assert [r[:2] + r[3:] for r in _table(html, "table-reclaimed")] == [
        ["2026-03-02", "0", "0", "0", "0"],
        ["2026-03-09", "820", "3", "500", "320"],
    ]
    assert 'id="reclaimed-in-quarantine" title="500 bytes"' in html
    assert 'id="reclaimed-freed" title="320 bytes"' in html
