"""The deletions audit: totals, filters, and exports that say exactly what the page says."""

from __future__ import annotations

import csv
import io
import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from models_admin.models import PruneRequest

from .history_factories import at, host, prune

pytestmark = pytest.mark.django_db

URL = reverse("ocrdash-report-deletions")
CSV_URL = reverse("ocrdash-report-deletions-export", args=["csv"])
JSON_URL = reverse("ocrdash-report-deletions-export", args=["json"])
MARCH = "?start=2026-03-01&end=2026-03-31"


@pytest.fixture
def history(operator, approver, approver2):
    a, b = host("ocr-a"), host("ocr-b")
    prune(
        a,
        [("m/old_a.bin", 100, "quarantined", 100), ("m/old_b.bin", 50, "skipped_changed", 0)],
        created_at=at("2026-03-02 09:00"),
        requested_by=operator,
        decided_by=approver,
        decided_at=at("2026-03-02 10:00"),
        finished_at=at("2026-03-02 11:00"),
        comment='checked, "unused" since 2025',
        state=PruneRequest.State.PARTIAL,
    )
    prune(
        b,
        [("old_c.bin", 30, "deleted", 30)],
        created_at=at("2026-03-05 09:00"),
        decided_by=approver2,
        decided_at=at("2026-03-05 10:00"),
        finished_at=at("2026-03-05 11:00"),
    )
    prune(  # April: outside the range
        b,
        [("old_d.bin", 7, "deleted", 7)],
        created_at=at("2026-04-05 09:00"),
        requested_by=operator,
        decided_by=approver,
        finished_at=at("2026-04-05 11:00"),
    )


def test_it_lists_each_removed_file_with_totals_at_the_top(client_for, viewer, history):
    response = client_for(viewer).get(URL + MARCH)

    assert response.status_code == 200
    assert response.context["totals"] == {
        "rows": 2,
        "files": 2,
        "bytes_in_quarantine": 100,
        "bytes_freed": 30,
        "requests": 2,
    }
    html = response.content.decode()
    assert html.index('id="deletion-totals"') < html.index('id="deletions"')
    assert "m/old_a.bin" in html and "old_c.bin" in html
    assert "m/old_b.bin" not in html  # skipped: not a deletion unless asked for
    assert "checked, &quot;unused&quot; since 2025" in html


def test_filters_by_user_host_and_outcome(client_for, viewer, history):
    client = client_for(viewer)

    by_alice = client.get(URL + MARCH + "&user=alice").context["totals"]
    on_b = client.get(URL + MARCH + "&host=ocr-b").context["totals"]
    everything = client.get(URL + MARCH + "&outcomes=all").context["totals"]

    assert (by_alice["files"], by_alice["bytes_in_quarantine"], by_alice["bytes_freed"]) == (1, 100, 0)
    assert (on_b["files"], on_b["bytes_in_quarantine"], on_b["bytes_freed"]) == (1, 0, 30)
    assert (everything["rows"], everything["files"]) == (3, 2)


def test_csv_export_round_trips_with_the_page_filters(client_for, viewer, history):
    response = client_for(viewer).get(CSV_URL + MARCH + "&outcomes=all")

    assert response["Content-Type"].startswith("text/csv")
    assert 'filename="ocrdash-deletions-20260301-20260331.csv"' in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [
        (r["host"], r["path"], r["outcome"], r["bytes_in_quarantine"], r["bytes_freed"]) for r in rows
    ] == [
        ("ocr-b", "old_c.bin", "deleted", "0", "30"),
        ("ocr-a", "m/old_a.bin", "quarantined", "100", "0"),
        ("ocr-a", "m/old_b.bin", "skipped_changed", "0", "0"),
    ]
    first_a = rows[1]
    assert (first_a["requested_by"], first_a["approved_by"]) == ("otto", "alice")
    assert first_a["comment"] == 'checked, "unused" since 2025'
    assert (first_a["size"], len(first_a["sha256"])) == ("100", 64)
    assert rows[0]["requested_by"] == "policy"


def test_json_export_matches_the_csv_and_carries_the_totals(client_for, viewer, history):
    client = client_for(viewer)

    payload = json.loads(client.get(JSON_URL + MARCH + "&user=otto").content)
    csv_rows = list(
        csv.DictReader(
            io.StringIO(b"".join(client.get(CSV_URL + MARCH + "&user=otto").streaming_content).decode())
        )
    )

    assert payload["filters"] == {
        "start": "2026-03-01",
        "end": "2026-03-31",
        "hosts": [],
        "user": "otto",
        "outcomes": "reclaimed",
    }
    assert payload["totals"] == {
        "rows": 1,
        "files": 1,
        "bytes_in_quarantine": 100,
        "bytes_freed": 0,
        "requests": 1,
    }
    assert [{k: str(v) for k, v in row.items()} for row in payload["deletions"]] == csv_rows


def test_an_unknown_export_format_is_not_found(client_for, viewer):
    assert client_for(viewer).get(reverse("ocrdash-report-deletions-export", args=["xml"])).status_code == 404


@pytest.mark.parametrize("url", [URL, CSV_URL, JSON_URL])
def test_it_needs_a_login_and_a_role(client, client_for, outsider, url):
    assert client.get(url).status_code == 302
    assert client_for(outsider).get(url).status_code == 403


def test_page_and_export_cost_the_same_queries_for_more_deletions(
    client_for, viewer, history, operator, approver, django_assert_num_queries
):
    client = client_for(viewer)
    client.get(URL + MARCH)
    with CaptureQueriesContext(connection) as page_small:
        client.get(URL + MARCH)
    with CaptureQueriesContext(connection) as json_small:
        client.get(JSON_URL + MARCH)

    for i in range(20):
        prune(
            host(f"ocr-x{i}"),
            [(f"old_{i}.bin", 10, "deleted", 10), (f"old_{i}b.bin", 10, "quarantined", 10)],
            created_at=at("2026-03-10 09:00"),
            requested_by=operator,
            decided_by=approver,
            finished_at=at("2026-03-10 10:00"),
        )

    with django_assert_num_queries(len(page_small)):
        assert client.get(URL + MARCH).context["totals"]["files"] == 42
    with django_assert_num_queries(len(json_small)):
        assert len(json.loads(client.get(JSON_URL + MARCH).content)["deletions"]) == 42
