"""A purge that frees less than was moved to quarantine: what is left counted is what the agent
says is still there, and "freed" is what the purge really freed.

The request's counters once took the purge's bytes only: a file gone from the quarantine
folder before the purge (or deleted by a purge cut short) stayed counted in quarantine for
ever, on the request, its host's requests table, the API and the mails, and the reports
counted it freed.
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from models_admin.inventory import reports
from models_admin.models import AuditEvent, PruneItem, PruneRequest
from workers.schema import (
    ItemOutcome,
    KeptQuarantine,
    MissingFile,
    Outcome,
    PruneMode,
    PruneReport,
    PurgedRequest,
    PurgeReport,
    Store,
)

from .conftest import ingest
from .test_quarantine_purge import quarantined

pytestmark = pytest.mark.django_db
A = AuditEvent.Action
PURGED = PruneItem.Outcome.PURGED


def purge_report(request: PruneRequest, size: int, files: int, **fields) -> PurgeReport:
    missing = fields.pop("missing", [])
    return PurgeReport(
        host=request.host.name,
        purged_requests=[request.id.hex],
        bytes_purged=size,
        purged=[PurgedRequest(request_id=request.id.hex, bytes_purged=size, files=files, missing=missing)],
        freed=True,
        **fields,
    )


def api_row(client, request: PruneRequest) -> tuple[int, int]:
    rows = client.get("/api/prune-requests/").json()["results"]
    [row] = [r for r in rows if r["id"] == str(request.id)]
    return row["bytes_in_quarantine"], row["bytes_freed"]


def freed_in_reports(host_name: str) -> tuple[int, int]:
    """(freed, in quarantine) of the reports' per-host totals for this week."""
    today = date.today()
    [row] = [
        r for r in reports.reclaimed_per_host(today - timedelta(days=30), today) if r["host"] == host_name
    ]
    return row["freed"], row["in_quarantine"]


def test_a_file_gone_from_quarantine_before_the_purge_is_shown_missing_and_counted_nowhere(
    make_host, dispatched_request, client_for, viewer
):
    host = make_host("ocr-1", {"old_a.bin": 100, "old_b.bin": 50, "en.gguf": 10})
    request = quarantined(dispatched_request(host, ["old_a.bin", "old_b.bin"]), days_ago=8)
    client = client_for(viewer)
    assert api_row(client, request) == (150, 0)

    report = purge_report(request, 100, 1, missing=[MissingFile(path="old_b.bin")])
    assert ingest(report).status == "accepted"

    request.refresh_from_db()
    assert (request.bytes_in_quarantine, request.bytes_freed) == (0, 100)
    assert api_row(client, request) == (0, 100)
    items = {i.path: i for i in request.items.all()}
    assert items["old_a.bin"].outcome == PURGED
    assert items["old_b.bin"].outcome == PruneItem.Outcome.MISSING
    assert "not in the quarantine folder" in items["old_b.bin"].detail
    assert freed_in_reports("ocr-1") == (100, 0)
    page = client.get(f"/requests/{request.id}/").content.decode()
    assert "not in the quarantine folder" in page.split(">Files</h2>", 1)[1]
    event = AuditEvent.objects.get(action=A.QUARANTINE_PURGED, object_id=str(request.id))
    assert event.details["missing"] == 1 and event.details["bytes_missing"] == 50

    # The same report again changes nothing.
    assert ingest(report.model_copy(update={"report_id": "again"})).status == "accepted"
    request.refresh_from_db()
    assert (request.bytes_in_quarantine, request.bytes_freed) == (0, 100)


def test_a_shortfall_the_agent_cannot_name_is_not_left_in_quarantine(
    make_host, dispatched_request, client_for, viewer
):
    """An agent without a record of the request (another state folder) says only how much
    went: the folder is gone, so nothing of it is in quarantine, and freed is what it says."""
    host = make_host("ocr-1", {"old_a.bin": 100, "old_b.bin": 50, "en.gguf": 10})
    request = quarantined(dispatched_request(host, ["old_a.bin", "old_b.bin"]), days_ago=8)

    assert ingest(purge_report(request, 100, 1)).status == "accepted"

    request.refresh_from_db()
    assert (request.bytes_in_quarantine, request.bytes_freed) == (0, 100)
    assert api_row(client_for(viewer), request) == (0, 100)
    event = AuditEvent.objects.get(action=A.QUARANTINE_PURGED, object_id=str(request.id))
    assert event.details["bytes_missing"] == 50


def test_a_purge_cut_short_leaves_counted_what_the_agent_says_is_left(make_host, dispatched_request):
    """One store's folder went, the other's was half deleted when the agent stopped: in
    quarantine is what the agent found left, its items say why; the purge that finishes later
    frees the rest without counting anything twice."""
    host = make_host("ocr-1", {"old_a.bin": 100, "old_b.OCR": 30, "old_c.OCR": 20, "en.gguf": 10})
    request = dispatched_request(host, ["old_a.bin", "old_b.OCR", "old_c.OCR"])
    PruneItem.objects.filter(request=request, path__endswith=".OCR").update(store="ocr")
    ingest(
        PruneReport(
            host="ocr-1",
            request_id=request.id.hex,
            mode=PruneMode.QUARANTINE,
            freed=True,
            outcomes=[
                ItemOutcome(path="old_a.bin", outcome=Outcome.QUARANTINED, bytes_reclaimed=100),
                ItemOutcome(
                    path="old_b.OCR", outcome=Outcome.QUARANTINED, bytes_reclaimed=30, store=Store.OCR
                ),
                ItemOutcome(
                    path="old_c.OCR", outcome=Outcome.QUARANTINED, bytes_reclaimed=20, store=Store.OCR
                ),
            ],
        )
    )
    kept = [KeptQuarantine(request_id=request.id.hex, store=Store.OCR, bytes_left=30, files_left=1)]
    report = purge_report(request, 100, 1, kept=kept, detail="the agent stopped before the order finished")

    assert ingest(report).status == "accepted"

    request.refresh_from_db()
    assert (request.bytes_in_quarantine, request.bytes_freed) == (30, 100)
    ocr_items = request.items.filter(store="ocr")
    assert {i.outcome for i in ocr_items} == {PruneItem.Outcome.QUARANTINED}
    assert all("the agent stopped before the order finished" in i.detail for i in ocr_items)

    assert ingest(purge_report(request, 30, 1)).status == "accepted"
    request.refresh_from_db()
    assert (request.bytes_in_quarantine, request.bytes_freed) == (0, 130)
