"""No purge order while a restore of the same request is open (asked, not yet answered).

A purge deletes a request's whole quarantine folder; a restore asked for some of its files
moves them back out of that folder. Sent together, the agent may run the purge first and the
files someone asked back (and perhaps an approver agreed to) are gone for good. The purge
is refused (early, by a person) or left for a later day (the daily one) until the restore is
answered or withdrawn, rejected or expired.
"""

from __future__ import annotations

import logging

import pytest
from django.contrib.messages import get_messages

from models_admin.approvals import workflow
from models_admin.models import AuditEvent, PruneRequest
from models_admin.quarantine import purge as quarantine
from workers.schema import Outcome

from .test_quarantine_purge import quarantined

pytestmark = pytest.mark.django_db
A = AuditEvent.Action


def test_an_early_purge_is_refused_while_a_restore_is_asked_and_while_it_is_sent(
    make_host,
    dispatched_request,
    host_queue,
    approver,
    approver2,
    django_capture_on_commit_callbacks,
    caplog,
    restore_answer,
):
    host = make_host("ocr-1", {"old_a.bin": 100, "old_b.bin": 50, "en.gguf": 10})
    prune = quarantined(dispatched_request(host, ["old_a.bin", "old_b.bin"]), days_ago=1)
    restore = workflow.propose_restore(prune_request=prune, user=approver, reason="needed again")
    queue = host_queue("ocr-1")

    refused = pytest.raises(workflow.WrongState, match=f"restore {restore.short_id} of this request is open")
    with caplog.at_level(logging.INFO, logger="models_admin.quarantine.purge"), refused:
        quarantine.purge_early(prune.id, approver2)
    assert f"restore {restore.short_id}" in caplog.text

    with django_capture_on_commit_callbacks(execute=True):
        workflow.approve(restore.id, approver2)
    queue.drain()  # the restore's own order
    restore.refresh_from_db()
    assert restore.state == PruneRequest.State.DISPATCHED
    with pytest.raises(workflow.WrongState, match="is open"):
        quarantine.purge_early(prune.id, approver2)
    assert queue.drain() == [] and not AuditEvent.objects.filter(action=A.PURGE_ASKED).exists()

    # Answered (one file back, one refused): what is still in the folder may go now.
    restore_answer(prune, {"old_a.bin": Outcome.RESTORED, "old_b.bin": Outcome.REFUSED}, restore)
    order = quarantine.purge_early(prune.id, approver2)
    assert order.prune_request_ids == [prune.id.hex]


def test_the_daily_purge_leaves_a_request_with_an_open_restore_for_a_later_day(
    make_host, dispatched_request, host_queue, approver, caplog
):
    host = make_host("ocr-1", {"old_a.bin": 100, "old_b.bin": 50, "en.gguf": 10})
    prune = quarantined(dispatched_request(host, ["old_a.bin"]), days_ago=8)
    other = quarantined(dispatched_request(host, ["old_b.bin"]), days_ago=8)
    restore = workflow.propose_restore(prune_request=prune, user=approver, reason="needed again")
    queue = host_queue("ocr-1")

    assert quarantine.due_requests(host, 7) == [other]
    with caplog.at_level(logging.INFO, logger="models_admin.quarantine.purge"):
        assert quarantine.send_due_purges(days=7) == {"sent": 1, "failed": 0}
    [(_task, order)] = queue.drain()
    assert order["prune_request_ids"] == [other.id.hex]
    assert prune.short_id in caplog.text and "restore" in caplog.text

    workflow.withdraw(restore.id, approver)
    assert quarantine.due_requests(host, 7) == [prune, other]  # quarantined first, purged first


def test_the_request_page_says_why_the_purge_was_not_sent(
    make_host, dispatched_request, host_queue, approver, approver2, client_for
):
    host = make_host("ocr-1", {"old_a.bin": 100, "en.gguf": 10})
    prune = quarantined(dispatched_request(host, ["old_a.bin"]), days_ago=1)
    restore = workflow.propose_restore(prune_request=prune, user=approver, reason="needed again")
    queue = host_queue("ocr-1")

    response = client_for(approver2).post(f"/requests/{prune.id}/purge/")

    assert response.status_code == 302 and response["Location"] == f"/requests/{prune.id}/"
    [message] = [str(m) for m in get_messages(response.wsgi_request)]
    assert message.startswith(f"A restore {restore.short_id} of this request is open")
    assert "answered" in message and "withdrawn or rejected" in message
    assert queue.drain() == []


def test_the_request_page_shows_the_purge_waiting_for_the_open_restore(
    make_host, dispatched_request, approver, approver2, client_for
):
    host = make_host("ocr-1", {"old_a.bin": 100, "en.gguf": 10})
    prune = quarantined(dispatched_request(host, ["old_a.bin"]), days_ago=1)
    restore = workflow.propose_restore(prune_request=prune, user=approver, reason="needed again")

    page = client_for(approver2).get(f"/requests/{prune.id}/").content.decode()

    assert 'disabled aria-describedby="purge-waits">Purge quarantine now' in page
    assert f'Waits for restore <a href="/requests/{restore.id}/">{restore.short_id}</a>' in page

    workflow.withdraw(restore.id, approver)
    page = client_for(approver2).get(f"/requests/{prune.id}/").content.decode()
    assert "Purge quarantine now" in page and "purge-waits" not in page
