"""Live feedback: an action a person asked for shows asked → running → done (or failed) with its
result, and long work its progress, on pages that poll a JSON endpoint."""

from __future__ import annotations

from datetime import timedelta

from models_admin.approvals import workflow
from models_admin.models import AuditEvent, HostAction, Progress, ReceivedReport
from workers.schema import (
    ErrorReport,
    FileEntry,
    FreeReport,
    HostFacts,
    InventoryReport,
    ModelDirState,
    ProgressReport,
)

from .conftest import ingest, sha

State = HostAction.State


def inventory(host: str, request_id: str, files: dict[str, int]) -> InventoryReport:
    return InventoryReport(
        host=host,
        request_id=request_id,
        facts=HostFacts(hostname=host, model_dir="/m", model_dir_state=ModelDirState.OK),
        files=[FileEntry(path=p, size=s, mtime_ns=1, sha256=sha(p)) for p, s in files.items()],
    )


def progress(host: str, request_id: str, done: int, total: int, **kw) -> ProgressReport:
    return ProgressReport(
        host=host, request_id=request_id, phase="hashing", done_bytes=done, total_bytes=total, **kw
    )


def test_an_asked_inventory_goes_from_asked_to_running_to_done_with_its_result(
    make_host, operator, host_queue, client_for
):
    host = make_host("ocr-1")
    queue = host_queue("ocr-1")
    workflow.ask_inventory(host, operator)
    [(_task, order)] = queue.drain()
    action = HostAction.objects.get(host=host)
    assert (action.state, action.asked_by, action.request_id) == (State.ASKED, "otto", order["request_id"])
    client = client_for(operator)
    live = client.get("/hosts/ocr-1/live/").json()
    assert live["busy"] is True and "waiting for the host" in live["html"]

    rid = order["request_id"]
    assert ingest(progress("ocr-1", rid, 400, 1000, eta_seconds=12)).status == "accepted"
    action.refresh_from_db()
    assert action.state == State.RUNNING
    html = client.get("/hosts/ocr-1/live/").json()["html"]
    assert (
        'value="40"' in html
        and "about 12 s left" in html
        and "400 bytes of 1000 bytes" in html.replace("\xa0", " ")
    )

    assert ingest(inventory("ocr-1", rid, {"a.gguf": 600, "b.gguf": 400})).status == "accepted"
    action.refresh_from_db()
    assert action.state == State.DONE and action.result == "2 file(s), 1000\xa0bytes"
    assert Progress.objects.get(request_id=rid).finished_at is not None
    live = client.get("/hosts/ocr-1/live/").json()
    assert live["busy"] is False and "2 file(s)" in live["html"] and "<progress" not in live["html"]


def test_progress_is_a_gauge_not_history_and_never_moves_back(make_host):
    host = make_host("ocr-1")
    newer = progress("ocr-1", "r1", 700, 1000)
    older = progress("ocr-1", "r1", 300, 1000).model_copy(
        update={"sent_at": newer.sent_at - timedelta(seconds=5)}
    )
    ingest(newer)
    ingest(older)
    assert Progress.objects.get(request_id="r1", host=host).done_bytes == 700
    # A gauge: no received-report row, no audit event; a replay is just not newer.
    assert not ReceivedReport.objects.filter(kind="progress").exists()
    assert not AuditEvent.objects.filter(details__kind="progress").exists()
    assert ingest(newer).status == "duplicate"


def test_a_free_that_failed_or_an_agent_error_shows_as_failed_with_the_reason(
    make_host, operator, host_queue
):
    host = make_host("ocr-1")
    queue = host_queue("ocr-1")
    workflow.ask_free(host, operator)
    workflow.ask_inventory(host, operator)
    (_t1, free), (_t2, inv) = queue.drain()
    ingest(FreeReport(host="ocr-1", request_id=free["request_id"], freed=False))
    ingest(ErrorReport(host="ocr-1", request_id=inv["request_id"], task="inventory", reason="disk on fire"))
    results = dict(HostAction.objects.values_list("kind", "result"))
    assert set(HostAction.objects.values_list("state", flat=True)) == {State.FAILED}
    assert results == {"free": "the OCR engine's resources could not be freed", "inventory": "disk on fire"}


def test_the_scheduler_s_inventories_make_no_action_rows(make_host, host_queue):
    host = make_host("ocr-1")
    host_queue("ocr-1")
    workflow.ask_inventory(host, None)
    assert not HostAction.objects.exists()


def test_a_dispatched_request_shows_its_progress_and_its_end_without_a_reload(
    make_host, dispatched_request, operator, client_for
):
    from workers.schema import ItemOutcome, Outcome, PruneMode, PruneReport

    host = make_host("ocr-1")
    request = dispatched_request(host)
    client = client_for(operator)
    page = client.get(f"/requests/{request.id}/").content.decode()
    assert 'data-live-url="/requests/' in page and "live.js" in page
    ingest(
        ProgressReport(host="ocr-1", request_id=request.id.hex, phase="pruning", done_items=1, total_items=2)
    )
    live = client.get(f"/requests/{request.id}/live/").json()
    assert live["state"] == "dispatched" and live["busy"] is True
    assert "1 of 2 files" in live["html"] and 'value="50"' in live["html"]
    outcomes = [
        ItemOutcome(path=i.path, outcome=Outcome.QUARANTINED, bytes_reclaimed=i.size)
        for i in request.items.all()
    ]
    ingest(
        PruneReport(
            host="ocr-1", request_id=request.id.hex, mode=PruneMode.QUARANTINE, outcomes=outcomes, freed=True
        )
    )
    live = client.get(f"/requests/{request.id}/live/").json()
    assert live["state"] == "completed" and live["busy"] is False and "<progress" not in live["html"]


def test_the_live_endpoints_need_a_role(make_host, outsider, client_for, dispatched_request):
    host = make_host("ocr-1")
    request = dispatched_request(host)
    client = client_for(outsider)
    assert client.get("/hosts/ocr-1/live/").status_code == 403
    assert client.get(f"/requests/{request.id}/live/").status_code == 403
