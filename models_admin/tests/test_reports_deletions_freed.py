"""The deletions audit keeps "in quarantine" apart from "freed on disk", on the page, in its
totals and in both exports: a quarantined file still takes its space on the host until a
purge frees it, a deleted or purged one is gone, a restored one counts in neither."""

from __future__ import annotations

import csv
import io
import json

import pytest
from django.urls import reverse

from models_admin.models import PruneRequest

from .history_factories import at, host, prune

pytestmark = pytest.mark.django_db

URL = reverse("ocrdash-report-deletions")
CSV_URL = reverse("ocrdash-report-deletions-export", args=["csv"])
JSON_URL = reverse("ocrdash-report-deletions-export", args=["json"])
MARCH = "?start=2026-03-01&end=2026-03-31"


@pytest.fixture
def history(operator, approver):
    a = host("ocr-a")
    kept = prune(
        a,
        [
            ("waiting.bin", 100, "quarantined", 100),
            ("purged.bin", 40, "purged", 40),  # quarantined, then its request's folder purged
            ("back.bin", 7, "quarantined", 7),
        ],
        created_at=at("2026-03-02 09:00"),
        requested_by=operator,
        decided_by=approver,
        finished_at=at("2026-03-02 11:00"),
    )
    prune(
        a,
        [("gone.bin", 5, "deleted", 5), ("changed.bin", 9, "skipped_changed", 0)],
        created_at=at("2026-03-03 09:00"),
        finished_at=at("2026-03-03 11:00"),
        state=PruneRequest.State.PARTIAL,
    )
    restore = prune(
        a,
        [("back.bin", 7, "restored", 0)],
        created_at=at("2026-03-04 09:00"),
        finished_at=at("2026-03-04 10:00"),
        kind=PruneRequest.Kind.RESTORE,
    )
    PruneRequest.objects.filter(pk=restore.pk).update(restore_of=kept)


EXPECTED = {  # path: (outcome, in quarantine, freed on disk)
    "waiting.bin": ("quarantined", 100, 0),
    "purged.bin": ("purged", 0, 40),
    "back.bin": ("quarantined, restored", 0, 0),
    "gone.bin": ("deleted", 0, 5),
}
TOTALS = {"rows": 4, "files": 3, "bytes_in_quarantine": 100, "bytes_freed": 45, "requests": 2}


def test_the_page_shows_both_numbers_and_a_purged_file_stays_listed(client_for, viewer, history):
    response = client_for(viewer).get(URL + MARCH)

    assert response.context["totals"] == TOTALS
    rows = {row["path"]: row for _item, row in response.context["rows"]}
    assert {
        p: (r["outcome"], r["bytes_in_quarantine"], r["bytes_freed"]) for p, r in rows.items()
    } == EXPECTED
    html = response.content.decode()
    assert ">In quarantine<" in html and ">Freed on disk<" in html and "Space reclaimed" not in html
    assert (
        'id="total-in-quarantine" title="100 bytes"' in html and 'id="total-freed" title="45 bytes"' in html
    )


def test_csv_and_json_carry_both_columns_and_the_json_both_totals(client_for, viewer, history):
    client = client_for(viewer)
    response = client.get(CSV_URL + MARCH)
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert "bytes_reclaimed" not in rows[0]
    assert {
        r["path"]: (r["outcome"], int(r["bytes_in_quarantine"]), int(r["bytes_freed"])) for r in rows
    } == EXPECTED

    payload = json.loads(client.get(JSON_URL + MARCH).content)
    assert payload["totals"] == TOTALS
    assert {
        r["path"]: (r["outcome"], r["bytes_in_quarantine"], r["bytes_freed"]) for r in payload["deletions"]
    } == EXPECTED


def test_every_outcome_lists_the_skipped_file_with_nothing_in_either_column(client_for, viewer, history):
    response = client_for(viewer).get(URL + MARCH + "&outcomes=all")
    rows = {row["path"]: row for _item, row in response.context["rows"]}
    assert (rows["changed.bin"]["bytes_in_quarantine"], rows["changed.bin"]["bytes_freed"]) == (0, 0)
    assert response.context["totals"] == TOTALS | {"rows": 5}


@pytest.mark.parametrize("outcomes", ["reclaimed", "all"])
def test_the_exports_rows_from_column_values_are_the_pages_rows(history, outcomes):
    from datetime import date

    from models_admin.inventory import reports
    from models_admin.models import Campaign

    # One request of a campaign, one proposed by a policy (no requester), one restored file.
    first = PruneRequest.objects.filter(kind=PruneRequest.Kind.PRUNE).order_by("created_at").first()
    campaign = Campaign.objects.create(
        reason="old models", target_kind="model", rule_kind="identity", expires_at=at("2026-03-09 00:00")
    )
    PruneRequest.objects.filter(pk=first.pk).update(campaign=campaign)
    qs = reports.deletions(reports.DeletionFilter(date(2026, 3, 1), date(2026, 3, 31), outcomes=outcomes))

    rows = list(reports.deletion_rows(qs))
    assert rows == [reports.deletion_row(item) for item in qs]
    assert {r["campaign_id"] for r in rows} == {str(campaign.id), ""}
    assert "policy" in {r["requested_by"] for r in rows}
    assert "quarantined, restored" in {r["outcome"] for r in rows}
