"""Small things people notice: words instead of dumps, proper error pages, tiles and buttons
only for those who can use them, an approver who can check the facts before deciding."""

from __future__ import annotations

from django.urls import reverse

from models_admin.approvals import workflow
from models_admin.models import AuditEvent, HostAction, PruneItem
from models_admin.templatetags.ocrdash import in_words, outcome_badge


def test_outcomes_and_agent_details_read_as_words():
    assert "the file changed since the inventory" in outcome_badge("skipped_changed")
    assert ">skipped<" in outcome_badge("skipped_changed")
    assert in_words("[Errno 13] Permission denied: 'old.bin'") == "Permission denied: 'old.bin'"
    assert in_words("PermissionError: [Errno 1] Operation not permitted") == "Operation not permitted"
    assert in_words("the file changed") == "The file changed"


def test_the_audit_page_says_what_happened_in_words(client_for, viewer, make_host, operator):
    host = make_host("ocr-1")
    request = workflow.propose(
        host=host, files=list(host.current_snapshot.files.all()), reason="stale", user=operator
    )
    AuditEvent.record(
        AuditEvent.Action.ITEM_OUTCOME,
        actor="agent:ocr-1",
        host="ocr-1",
        obj=request,
        path="old_fr_ocr_v1.bin",
        outcome="skipped_changed",
        detail="size 1000 -> 1200",
        bytes_reclaimed=0,
    )
    page = client_for(viewer).get(reverse("ocrdash-audit")).content.decode()
    assert "proposed pruning 2 file(s) (2.9\xa0KB): stale" in page
    assert "old_fr_ocr_v1.bin: skipped: the file changed since the inventory (size 1000 -&gt; 1200)" in page
    assert "<details" in page  # the raw pairs are one click away


def test_403_and_404_are_pages_that_say_what_to_do(client_for, viewer, make_host):
    make_host("ocr-1")
    client = client_for(viewer)
    missing = client.get("/hosts/no-such-host/")
    assert missing.status_code == 404
    body = missing.content.decode()
    assert "Nothing here" in body and "/hosts/no-such-host/" in body and 'href="/"' in body
    refused = client.post(reverse("ocrdash-host-inventory", args=["ocr-1"]))
    assert refused.status_code == 403
    body = refused.content.decode()
    assert "You may not do that" in body and "your account may not request inventory" in body.lower()


def test_the_requests_to_decide_tile_is_for_those_who_decide(
    client_for, viewer, approver, make_host, operator
):
    host = make_host("ocr-1")
    workflow.propose(host=host, files=list(host.current_snapshot.files.all()), reason="stale", user=operator)
    assert "Requests to decide" in client_for(approver).get("/").content.decode()
    page = client_for(viewer).get("/").content.decode()
    assert "Requests to decide" not in page and "Waiting for an approver" in page


def test_an_approver_asks_for_a_fresh_inventory_from_the_request_page(
    client_for, approver, make_host, operator, host_queue
):
    host = make_host("ocr-1")
    queue = host_queue("ocr-1")
    request = workflow.propose(
        host=host, files=list(host.current_snapshot.files.all()), reason="stale", user=operator
    )
    client = client_for(approver)
    url = reverse("ocrdash-request", args=[request.id])
    assert "Ask for a fresh inventory" in client.get(url).content.decode()
    response = client.post(reverse("ocrdash-host-inventory", args=["ocr-1"]), {"next": url})
    assert response.status_code == 302 and response["Location"] == url
    assert [task for task, _ in queue.drain()] == ["ocrdash.agent.inventory"]
    assert HostAction.objects.get().asked_by == approver.username
    # Somewhere else entirely is not followed.
    response = client.post(
        reverse("ocrdash-host-inventory", args=["ocr-1"]), {"next": "https://evil.example/"}
    )
    assert response["Location"] == reverse("ocrdash-host", args=["ocr-1"])


def test_a_restore_request_says_what_it_does(
    client_for, approver, approver2, make_host, operator, host_queue
):
    host = make_host("ocr-1")
    host_queue("ocr-1")
    prune = workflow.propose(
        host=host, files=list(host.current_snapshot.files.all()), reason="stale", user=operator
    )
    workflow.approve(prune.id, approver)
    prune.items.update(outcome=PruneItem.Outcome.QUARANTINED)
    prune.refresh_from_db()
    prune.state = "completed"
    prune.save(update_fields=["state"])
    restore = workflow.propose_restore(prune_request=prune, user=approver2, reason="needed")
    page = client_for(approver).get(reverse("ocrdash-request", args=[restore.id])).content.decode()
    assert (
        "Moves the files back from the host&#x27;s quarantine" in page
        or "Moves the files back from the host's quarantine" in page
    )
    assert "Quarantine: files are moved aside" not in page


def test_a_fresh_install_s_reports_start_at_the_first_data(client_for, viewer, make_host):
    from datetime import timedelta

    from django.utils import timezone

    from models_admin.inventory import reports, rollup
    from models_admin.models import Snapshot

    def first_inventory(days_ago: int) -> None:
        # The history moved by hand; the daily rollup follows as if ingest had stored it.
        Snapshot.objects.filter(host=host).update(taken_at=timezone.now() - timedelta(days=days_ago))
        rollup.rebuild()

    today = timezone.localdate()
    assert reports.default_range(today) == (today, today)  # nothing yet: just today
    host = make_host("ocr-1")
    first_inventory(5)
    assert reports.default_range(today) == (today - timedelta(days=5), today)
    first_inventory(400)
    assert reports.default_range(today) == (today - timedelta(days=89), today)
    first_inventory(5)
    page = client_for(viewer).get(reverse("ocrdash-reports")).content.decode()
    assert (today - timedelta(days=5)).isoformat() in page
