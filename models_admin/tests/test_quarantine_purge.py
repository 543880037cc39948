"""Purge runs (issue case 8): quarantine is purged after the retention, or early by an approver.

Once OCRDASH_QUARANTINE_DAYS was read and never used, nothing sent a purge order, and the
request page counted quarantined bytes as "reclaimed" although they were still on the disk.
"""

from __future__ import annotations

import importlib
import json
import re
from datetime import timedelta

import pytest
from django.apps import apps
from django.utils import timezone

from models_admin import schedules, tasks
from models_admin.approvals import workflow
from models_admin.audit_words import in_words
from models_admin.fleet import feedback
from models_admin.models import AuditEvent, PruneItem, PruneRequest
from models_admin.quarantine import purge as quarantine
from workers.schema import (
    ItemOutcome,
    KeptQuarantine,
    Outcome,
    PruneMode,
    PruneReport,
    PurgedRequest,
    PurgeReport,
    Store,
)

from .conftest import ingest

pytestmark = pytest.mark.django_db
A = AuditEvent.Action


def quarantined(request: PruneRequest, days_ago: float) -> PruneRequest:
    items = list(request.items.all())
    ingest(
        PruneReport(
            host=request.host.name,
            request_id=request.id.hex,
            mode=PruneMode.QUARANTINE,
            freed=True,
            outcomes=[
                ItemOutcome(path=i.path, outcome=Outcome.QUARANTINED, bytes_reclaimed=i.size) for i in items
            ],
        )
    )
    PruneRequest.objects.filter(pk=request.pk).update(finished_at=timezone.now() - timedelta(days=days_ago))
    request.refresh_from_db()
    assert request.state == PruneRequest.State.COMPLETED
    return request


def test_the_daily_task_orders_a_purge_of_what_is_past_the_retention(
    make_host, dispatched_request, host_queue, settings, approver
):
    host = make_host("ocr-1", {"old_a.bin": 100, "old_b.bin": 50, "en.gguf": 10})
    old = quarantined(dispatched_request(host, ["old_a.bin"]), days_ago=8)
    quarantined(dispatched_request(host, ["old_b.bin"]), days_ago=2)
    queue = host_queue("ocr-1")
    # The migration's daily schedule runs with OCRDASH_QUARANTINE_DAYS until the page sets days.
    assert schedules.overview().quarantine_days == settings.OCRDASH["QUARANTINE_DAYS"] == 7
    assert schedules.set_quarantine_days(5, True, approver)
    assert schedules.overview().quarantine_days == 5.0 and schedules.overview().purge_enabled

    task = schedules.purge_task()
    assert task is not None and task.enabled
    assert tasks.purge_quarantine(**json.loads(task.kwargs)) == {"sent": 1, "failed": 0}

    [(name, order)] = queue.drain()
    assert name == "ocrdash.agent.purge"
    assert order["prune_request_ids"] == [old.id.hex] and order["retention_days"] == 5.0
    assert AuditEvent.objects.filter(action=A.PURGE_ASKED, host="ocr-1").count() == 1


def test_a_purge_report_ends_the_items_purged_and_counts_freed_bytes_apart(
    make_host, dispatched_request, client_for, viewer
):
    host = make_host("ocr-1", {"old_a.bin": 100, "en.gguf": 10})
    request = quarantined(dispatched_request(host, ["old_a.bin"]), days_ago=8)
    page = client_for(viewer).get(f"/requests/{request.id}/").content.decode()
    assert "In quarantine" in page and "Freed on disk" in page

    result = ingest(
        PurgeReport(
            host="ocr-1",
            purged_requests=[request.id.hex],
            bytes_purged=100,
            purged=[PurgedRequest(request_id=request.id.hex, bytes_purged=100, files=1)],
            freed=True,
        )
    )
    assert result.status == "accepted"
    request.refresh_from_db()
    assert request.bytes_purged == 100 and request.purged_at is not None
    assert request.bytes_reclaimed == 100  # moved out of the folder, as before
    assert list(request.items.values_list("outcome", flat=True)) == [PruneItem.Outcome.PURGED]
    # A purged request has nothing left to restore.
    with pytest.raises(workflow.WorkflowError, match="nothing of this request is in quarantine"):
        workflow.propose_restore(prune_request=request, user=None, reason="too late")


def test_a_purge_keeps_when_the_prune_finished_and_records_its_own_time(make_host, dispatched_request):
    host = make_host("ocr-1", {"old_a.bin": 100, "en.gguf": 10})
    request = quarantined(dispatched_request(host, ["old_a.bin"]), days_ago=8)
    pruned_at = request.finished_at
    assert pruned_at is not None
    PruneItem.objects.filter(request=request).update(finished_at=pruned_at)

    ingest(
        PurgeReport(
            host="ocr-1",
            purged_requests=[request.id.hex],
            bytes_purged=100,
            purged=[PurgedRequest(request_id=request.id.hex, bytes_purged=100, files=1)],
            freed=True,
        )
    )

    request.refresh_from_db()
    [item] = request.items.all()
    assert item.outcome == PruneItem.Outcome.PURGED
    assert request.finished_at == pruned_at and item.finished_at == pruned_at
    assert request.purged_at is not None and request.purged_at - pruned_at > timedelta(days=7)
    event = AuditEvent.objects.get(action=A.QUARANTINE_PURGED, object_id=str(request.id))
    assert abs(event.at - request.purged_at) < timedelta(seconds=5)


def test_a_purge_cut_short_leaves_what_is_still_there_in_quarantine(make_host, dispatched_request):
    """A purge the agent could not finish (killed, given up, an error) says, per store, what
    is still on the disk: those items stay quarantined, the others end purged."""
    host = make_host("ocr-1", {"old_a.bin": 100, "old_b.OCR": 30, "en.gguf": 10})
    request = dispatched_request(host, ["old_a.bin", "old_b.OCR"])
    PruneItem.objects.filter(request=request, path="old_b.OCR").update(store="ocr")
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
            ],
        )
    )
    report = PurgeReport(
        host="ocr-1",
        purged_requests=[request.id.hex],
        bytes_purged=100,
        purged=[PurgedRequest(request_id=request.id.hex, bytes_purged=100, files=1)],
        kept=[KeptQuarantine(request_id=request.id.hex, store=Store.OCR, bytes_left=30, files_left=1)],
        detail="the agent stopped before the order finished (it was restarted)",
        freed=True,
    )

    assert ingest(report).status == "accepted"

    outcomes = dict(PruneItem.objects.filter(request=request).values_list("path", "outcome"))
    assert outcomes == {"old_a.bin": "purged", "old_b.OCR": "quarantined"}
    request.refresh_from_db()
    assert request.bytes_purged == 100
    event = AuditEvent.objects.get(action=A.QUARANTINE_PURGED, object_type="host")
    assert event.details["kept_requests"] == [request.id.hex] and event.details["bytes_kept"] == 30
    sentence = in_words(event)
    assert "did not finish: the agent stopped" in sentence and "30\xa0bytes still in quarantine" in sentence
    assert feedback._result(report)[0] == "failed"


def test_an_approver_may_purge_early_but_not_the_proposer(
    make_host,
    dispatched_request,
    host_queue,
    operator,
    approver,
    client_for,
    django_capture_on_commit_callbacks,
):
    host = make_host("ocr-1", {"old_a.bin": 100, "en.gguf": 10})
    request = quarantined(dispatched_request(host, ["old_a.bin"]), days_ago=0)
    queue = host_queue("ocr-1")
    with pytest.raises(workflow.NotAllowed, match="another approver"):
        quarantine.purge_early(request.id, operator)  # operator proposed it

    response = client_for(approver).post(f"/requests/{request.id}/purge/")
    assert response.status_code == 302
    [(_task, order)] = queue.drain()
    assert order["prune_request_ids"] == [request.id.hex] and order["retention_days"] == 0
    event = AuditEvent.objects.get(action=A.PURGE_ASKED)
    assert event.actor == approver.username and event.details["early"] is True


def test_the_requests_list_and_the_api_say_in_quarantine_until_the_purge_then_freed(
    make_host, dispatched_request, client_for, viewer
):
    host = make_host("ocr-1", {"old_a.bin": 100, "en.gguf": 10})
    request = quarantined(dispatched_request(host, ["old_a.bin"]), days_ago=8)
    client = client_for(viewer)

    def api_row() -> dict:
        rows = client.get("/api/prune-requests/").json()["results"]
        [row] = [r for r in rows if r["id"] == str(request.id)]
        return row

    assert "100\xa0bytes</span> in quarantine" in client.get("/requests/").content.decode()
    assert (api_row()["bytes_in_quarantine"], api_row()["bytes_freed"]) == (100, 0)
    ingest(
        PurgeReport(
            host="ocr-1",
            purged_requests=[request.id.hex],
            bytes_purged=100,
            purged=[PurgedRequest(request_id=request.id.hex, bytes_purged=100, files=1)],
            freed=True,
        )
    )
    assert "</span> in quarantine" not in client.get("/requests/").content.decode()
    assert (api_row()["bytes_in_quarantine"], api_row()["bytes_freed"]) == (0, 100)


NONE = "\N{EN DASH}"  # what the page shows for a zero


def disk_numbers(client, request: PruneRequest) -> tuple[str, ...]:
    """The request page's "In quarantine" and "Freed on disk" values, as the page shows them."""
    page = client.get(f"/requests/{request.id}/").content.decode()
    block = page.split('id="disk-numbers"', 1)[1].split('<div class="label"')
    return tuple(
        re.sub(r"<[^>]+>", "", part.rsplit('<div class="value">', 1)[1]).strip() for part in block[:2]
    )


def test_a_restored_file_leaves_the_quarantine_figures_before_and_after_the_purge(
    make_host, dispatched_request, restore_answer, client_for, viewer
):
    """Of two quarantined files one is moved back: the request's quarantine holds the other
    only, on its page, the list and the API; and once the purge removed that one (the agent
    purges only what is still in the folder) nothing is counted in quarantine any more. The
    page once summed its items instead: 150 bytes in quarantine after the restore, and the
    request's own counter 100 bytes for ever after the purge."""
    host = make_host("ocr-1", {"old_a.bin": 100, "old_b.bin": 50, "en.gguf": 10})
    request = quarantined(dispatched_request(host, ["old_a.bin", "old_b.bin"]), days_ago=8)
    restore_answer(request, {"old_a.bin": Outcome.RESTORED, "old_b.bin": Outcome.REFUSED})
    client = client_for(viewer)

    def api_row() -> tuple[int, int]:
        rows = client.get("/api/prune-requests/").json()["results"]
        [row] = [r for r in rows if r["id"] == str(request.id)]
        return row["bytes_in_quarantine"], row["bytes_freed"]

    assert (request.bytes_reclaimed, request.bytes_restored) == (150, 100)
    assert (request.bytes_in_quarantine, request.bytes_freed) == (50, 0)
    assert api_row() == (50, 0)
    assert disk_numbers(client, request) == ("50\xa0bytes", NONE)
    assert "50\xa0bytes</span> in quarantine" in client.get("/requests/").content.decode()

    ingest(
        PurgeReport(
            host="ocr-1",
            purged_requests=[request.id.hex],
            bytes_purged=50,
            purged=[PurgedRequest(request_id=request.id.hex, bytes_purged=50, files=1)],
            freed=True,
        )
    )
    request.refresh_from_db()
    assert (request.bytes_in_quarantine, request.bytes_freed) == (0, 50)
    assert api_row() == (0, 50)
    assert disk_numbers(client, request) == (NONE, "50\xa0bytes")
    assert "</span> in quarantine" not in client.get("/requests/").content.decode()


def test_a_late_restore_answer_counts_each_file_once(make_host, dispatched_request, restore_answer):
    """The restored bytes are counted anew from the items at every answer: an answer that
    repeats a restored file and adds one adds only the new one."""
    host = make_host("ocr-1", {"old_a.bin": 100, "old_b.bin": 50, "en.gguf": 10})
    request = quarantined(dispatched_request(host, ["old_a.bin", "old_b.bin"]), days_ago=1)
    restore = restore_answer(request, {"old_a.bin": Outcome.RESTORED, "old_b.bin": Outcome.ERROR})
    assert (request.bytes_restored, request.bytes_in_quarantine) == (100, 50)

    restore_answer(request, {"old_a.bin": Outcome.RESTORED, "old_b.bin": Outcome.RESTORED}, restore)
    assert (request.bytes_restored, request.bytes_in_quarantine) == (150, 0)
    restore.refresh_from_db()
    assert restore.state == PruneRequest.State.COMPLETED


def test_the_migration_counts_the_restores_answered_before_it(make_host, dispatched_request, restore_answer):
    host = make_host("ocr-1", {"old_a.bin": 100, "old_b.bin": 50, "en.gguf": 10})
    request = quarantined(dispatched_request(host, ["old_a.bin", "old_b.bin"]), days_ago=1)
    restore_answer(request, {"old_a.bin": Outcome.RESTORED, "old_b.bin": Outcome.REFUSED})
    other = quarantined(dispatched_request(host, ["en.gguf"]), days_ago=1)
    PruneRequest.objects.update(bytes_restored=0)  # as a dashboard before the field had them

    importlib.import_module("models_admin.migrations.0027_request_bytes_restored").count_restored(apps, None)

    restored = dict(PruneRequest.objects.values_list("id", "bytes_restored"))
    assert (restored[request.id], restored[other.id]) == (100, 0)


RESTORE_BUTTON = "Restore from quarantine"
PURGE_BUTTON = "Purge quarantine now"


def purge_answer(request: PruneRequest, size: int) -> None:
    """The host's purge report: the request's quarantine folder is gone, ``size`` bytes with it."""
    ingest(
        PurgeReport(
            host=request.host.name,
            purged_requests=[request.id.hex],
            bytes_purged=size,
            purged=[PurgedRequest(request_id=request.id.hex, bytes_purged=size, files=1)],
            freed=True,
        )
    )


def test_a_file_a_restore_moved_back_is_no_longer_restored_nor_purged(
    make_host, dispatched_request, restore_answer, host_queue, client_for, approver2
):
    """One of two quarantined files is moved back: the page still offers a restore, of the
    other file alone, and the daily purge still picks the request, for that file alone (the
    restored one ends neither purged nor proposed again). Both once went by the prune's own
    items, which say ``quarantined`` for ever: the restore proposed the restored file too and
    the purge marked it purged."""
    host = make_host("ocr-1", {"old_a.bin": 100, "old_b.bin": 50, "en.gguf": 10})
    request = quarantined(dispatched_request(host, ["old_a.bin", "old_b.bin"]), days_ago=8)
    restore_answer(request, {"old_a.bin": Outcome.RESTORED, "old_b.bin": Outcome.REFUSED})
    client = client_for(approver2)

    page = client.get(f"/requests/{request.id}/").content.decode()
    assert RESTORE_BUTTON in page and PURGE_BUTTON in page
    response = client.post(f"/requests/{request.id}/restore/", {"reason": "the other one"})
    again = request.restores.get(reason="the other one")
    assert response.status_code == 302 and response["Location"] == f"/requests/{again.id}/"
    assert [i.path for i in again.items.all()] == ["old_b.bin"]

    queue = host_queue("ocr-1")
    # That second restore is open: the purge waits for it (test_quarantine_open_restore.py).
    assert quarantine.send_due_purges(days=7) == {"sent": 0, "failed": 0}
    workflow.withdraw(again.id, approver2)
    assert quarantine.send_due_purges(days=7) == {"sent": 1, "failed": 0}
    [(_task, order)] = queue.drain()
    assert order["prune_request_ids"] == [request.id.hex]
    purge_answer(request, 50)
    outcomes = dict(request.items.values_list("path", "outcome"))
    assert outcomes == {"old_a.bin": Outcome.QUARANTINED, "old_b.bin": PruneItem.Outcome.PURGED}
    assert not quarantine.in_quarantine(host).exists()


def test_a_request_whose_files_were_all_restored_has_nothing_in_quarantine(
    make_host, dispatched_request, restore_answer, host_queue, client_for, approver2
):
    """Both quarantined files are moved back: no purge order names the request (the daily
    one used to, for files no longer in the folder), an early purge and a second restore are
    refused, and the page offers neither button."""
    host = make_host("ocr-1", {"old_a.bin": 100, "old_b.bin": 50, "en.gguf": 10})
    request = quarantined(dispatched_request(host, ["old_a.bin", "old_b.bin"]), days_ago=8)
    restore_answer(request, {"old_a.bin": Outcome.RESTORED, "old_b.bin": Outcome.RESTORED})
    kept = quarantined(dispatched_request(host, ["en.gguf"]), days_ago=8)

    queue = host_queue("ocr-1")
    assert quarantine.due_requests(host, 7) == [kept]
    assert quarantine.send_due_purges(days=7) == {"sent": 1, "failed": 0}
    [(_task, order)] = queue.drain()
    assert order["prune_request_ids"] == [kept.id.hex]
    with pytest.raises(workflow.WorkflowError, match="nothing of this request is in quarantine"):
        quarantine.purge_early(request.id, approver2)
    with pytest.raises(workflow.WorkflowError, match="nothing of this request is in quarantine"):
        workflow.propose_restore(prune_request=request, user=approver2, reason="again")

    page = client_for(approver2).get(f"/requests/{request.id}/").content.decode()
    assert RESTORE_BUTTON not in page and PURGE_BUTTON not in page
    other_page = client_for(approver2).get(f"/requests/{kept.id}/").content.decode()
    assert RESTORE_BUTTON in other_page and PURGE_BUTTON in other_page
