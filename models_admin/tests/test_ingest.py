"""Ingest of agent reports: snapshots, idempotency, rejections, registration, outcomes."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.db import connection

from models_admin.approvals import workflow
from models_admin.ingest import MAX_STORED_PAYLOAD_CHARS, ingest_report, snapshot_digest
from models_admin.models import (
    AuditEvent,
    Host,
    ModelFile,
    ModelSummary,
    PruneRequest,
    ReceivedReport,
    Snapshot,
)
from workers.schema import (
    ErrorReport,
    FileEntry,
    FreeReport,
    HostFacts,
    InventoryReport,
    ItemOutcome,
    ModelDirState,
    Outcome,
    PruneMode,
    PruneReport,
    PurgeReport,
)
from workers.signing.enrollment import enrollment_proof
from workers.signing.keys import public_key_text

from .conftest import ingest, sha, signed_report

Action = AuditEvent.Action
pytestmark = pytest.mark.django_db


def facts(state: ModelDirState = ModelDirState.OK, error: str = "") -> HostFacts:
    return HostFacts(
        hostname="ocr-box.example",
        model_dir="/srv/models",
        model_dir_state=state,
        model_dir_error=error,
        disk_total=1000,
        disk_free=400,
        aspose_version="26.10.0",
        agent_version="0.1.0",
    )


def entries(files: dict[str, int]) -> list[FileEntry]:
    return [
        FileEntry(path=p, size=s, mtime_ns=1_700_000_000_000_000_000, sha256=sha(p), known_to_aspose=False)
        for p, s in files.items()
    ]


def inventory(host: str, files: dict[str, int], **kw) -> dict:
    return InventoryReport(host=host, facts=kw.pop("facts", facts()), files=entries(files), **kw).to_json()


def enrolling(report: dict, token: str, key: Ed25519PrivateKey) -> dict:
    """An inventory carrying an enrollment of ``key`` with ``token``, as a new agent sends it."""
    public = public_key_text(key)
    proof = enrollment_proof(
        token, host=report["host"], public_key_text=public, report_id=report["report_id"]
    )
    return {**report, "enrollment": {"public_key": public, "proof": proof}}


def audit(action: str, **filters) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action, **filters))


def test_it_stores_an_inventory_as_a_snapshot(make_host):
    make_host("ocr-1", {})
    result = ingest(inventory("ocr-1", {"en.gguf": 20, "sub/old_fr.bin": 10}))

    assert result.status == "accepted"
    host = Host.objects.get(name="ocr-1")
    snapshot = host.current_snapshot
    assert snapshot.pk == result.snapshot_id
    assert sorted(snapshot.files.values_list("path", "name", "size")) == [
        ("en.gguf", "en.gguf", 20),
        ("sub/old_fr.bin", "old_fr.bin", 10),
    ]
    assert (host.file_count, host.total_bytes) == (2, 30)
    assert (host.hostname, host.model_dir, host.disk_free) == ("ocr-box.example", "/srv/models", 400)
    assert host.last_seen is not None
    assert snapshot.digest == snapshot_digest(snapshot.files.all())
    [event] = audit(Action.REPORT_INGESTED, host="ocr-1")
    assert event.details["files"] == 2 and event.details["seen_again"] is False


def test_an_identical_inventory_is_seen_again_not_copied(make_host):
    make_host("ocr-1", {})
    files = {"en.gguf": 20, "old_fr.bin": 10}
    ingest(inventory("ocr-1", files))
    ingest(inventory("ocr-1", dict(reversed(files.items()))))  # order does not matter

    host = Host.objects.get(name="ocr-1")
    snapshots = Snapshot.objects.filter(host=host, file_count=2)
    assert snapshots.count() == 1
    assert snapshots.get().seen_count == 2
    assert ModelFile.objects.filter(snapshot__host=host).count() == 2
    assert host.current_snapshot == snapshots.get()


def test_an_unchanged_inventory_writes_no_audit_event_but_updates_the_host(make_host):
    make_host("ocr-1", {})
    files = {"en.gguf": 20, "old_fr.bin": 10}
    ingest(inventory("ocr-1", files))
    events = AuditEvent.objects.count()
    seen_before = Host.objects.get(name="ocr-1").last_seen

    assert (
        ingest(inventory("ocr-1", files, facts=facts().model_copy(update={"disk_free": 300}))).status
        == "accepted"
    )

    host = Host.objects.get(name="ocr-1")
    assert AuditEvent.objects.count() == events  # nothing changed on disk: nothing to audit
    assert seen_before is not None and host.last_seen is not None
    assert host.disk_free == 300 and host.last_seen > seen_before
    assert ReceivedReport.objects.filter(status=ReceivedReport.Status.ACCEPTED).count() == 2


def test_a_report_takes_a_fixed_handful_of_statements(make_host, django_assert_num_queries):
    if connection.vendor != "postgresql":
        pytest.skip("the counts are PostgreSQL's (unnest and data-modifying WITH); SQLite takes more")
    make_host("ocr-1", {})
    files = {f"family/model_{i:02}.bin": i for i in range(50)}
    # Keys (the first report this process sees of the host), BEGIN, host lock, claim, usage rows
    # upserted (gone ones removed in the same statement), disk sample upserted with the
    # forecast's window read beside it, the watermark that applies (the host's own schedule and
    # its groups' marks in one statement), snapshot, files (one INSERT of arrays), models
    # summary (one statement), the models' sightings (one statement), the reports' daily rollup
    # (one upsert), host update, audit, COMMIT.
    with django_assert_num_queries(15):
        ingest(inventory("ocr-1", files))
    # Seen again (use unchanged too), the key now this process's, confirmed by the host lock:
    # BEGIN, host lock, claim, disk sample and window, the watermark, snapshot seen, host
    # update, COMMIT.
    with django_assert_num_queries(8):
        ingest(inventory("ocr-1", files))
    # Every file replaced by one of another name: the names no host holds any more leave the
    # summary in one more statement.
    with django_assert_num_queries(15):
        ingest(inventory("ocr-1", {f"family/other_{i:02}.bin": i for i in range(50)}))
    assert not ModelSummary.objects.filter(name__startswith="model_").exists()
    assert ModelSummary.objects.filter(name__startswith="other_").count() == 50


def test_a_changed_inventory_makes_a_new_snapshot(make_host):
    make_host("ocr-1", {})
    first = ingest(inventory("ocr-1", {"en.gguf": 20, "old_fr.bin": 10}))
    second = ingest(inventory("ocr-1", {"en.gguf": 20}))

    assert first.snapshot_id != second.snapshot_id
    host = Host.objects.get(name="ocr-1")
    assert host.current_snapshot_id == second.snapshot_id
    assert host.file_count == 1


def test_a_duplicate_report_id_changes_nothing(make_host):
    make_host("ocr-1", {})
    report = inventory("ocr-1", {"en.gguf": 20})
    assert ingest(report).status == "accepted"
    before = (Snapshot.objects.count(), AuditEvent.objects.count(), ReceivedReport.objects.count())
    seen = Snapshot.objects.get(report_id=report["report_id"]).seen_count

    assert ingest(report).status == "duplicate"
    assert (Snapshot.objects.count(), AuditEvent.objects.count(), ReceivedReport.objects.count()) == before
    assert Snapshot.objects.get(report_id=report["report_id"]).seen_count == seen


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"schema_version": 99, "host": "ocr-1", "kind": "free", "report_id": "r-99"}, "unsupported"),
        ({"schema_version": 2, "host": "ocr-1", "kind": "free", "report_id": "r-x"}, "freed"),
    ],
)
def test_it_rejects_malformed_signed_reports_with_a_reason(make_host, payload, reason):
    make_host("ocr-1", {})
    result = ingest(payload)

    assert result.status == "rejected"
    row = ReceivedReport.objects.get(status=ReceivedReport.Status.REJECTED)
    assert reason in row.reason
    assert row.report_id == payload["report_id"]
    assert {k: row.payload[k] for k in payload} == payload
    assert row.payload["signature"]["value"] == "(redacted)"
    [event] = audit(Action.REPORT_REJECTED)
    assert reason in event.details["reason"]


def test_it_rejects_a_report_of_a_host_with_no_key(db):
    result = ingest(FreeReport(host="stranger", freed=True), key=Ed25519PrivateKey.generate())

    assert result.status == "rejected"
    assert "no key is enrolled" in result.reason
    assert not Host.objects.filter(name="stranger").exists()
    assert ReceivedReport.objects.get().status == ReceivedReport.Status.REJECTED
    assert audit(Action.SECURITY_REJECTED, host="stranger")


def test_it_rejects_reports_of_a_retired_host(make_host):
    make_host("ocr-1", {"en.gguf": 1}, status=Host.Status.RETIRED)
    snapshots = Snapshot.objects.count()

    result = ingest(inventory("ocr-1", {"other.gguf": 5}))

    assert result.status == "rejected" and "retired" in result.reason
    assert Snapshot.objects.count() == snapshots
    row = ReceivedReport.objects.get()
    assert row.host.name == "ocr-1" and row.status == ReceivedReport.Status.REJECTED
    assert audit(Action.REPORT_REJECTED, host="ocr-1")


def test_a_new_host_is_registered_as_pending_with_its_snapshot(enrollment_token):
    key = Ed25519PrivateKey.generate()
    report = enrolling(inventory("newcomer", {"en.gguf": 20}), enrollment_token(), key)
    result = ingest_report(signed_report(report, key))

    assert result.status == "accepted"
    host = Host.objects.get(name="newcomer")
    assert host.status == Host.Status.PENDING
    assert host.current_snapshot.files.get().path == "en.gguf"
    assert host.active_key.public_key == public_key_text(key)
    [event] = audit(Action.HOST_REGISTERED)
    assert event.host == "newcomer" and event.actor == "agent:newcomer"


def test_a_missing_model_dir_is_a_host_state_not_an_error(make_host):
    make_host("ocr-1", {})
    ingest(inventory("ocr-1", {}, facts=facts(ModelDirState.MISSING, "no such folder")))

    host = Host.objects.get(name="ocr-1")
    assert host.model_dir_state == Host.DirState.MISSING
    assert "no such folder" in host.last_error
    assert host.current_snapshot.model_dir_state == Host.DirState.MISSING

    ingest(inventory("ocr-1", {"en.gguf": 3}))
    host.refresh_from_db()
    assert host.model_dir_state == Host.DirState.OK and host.last_error == ""


def test_a_rejected_payload_is_stored_bounded(make_host):
    make_host("ocr-1", {})
    huge = inventory("ocr-1", {f"m{i}.bin": i for i in range(3000)})
    huge["files"][5]["size"] = -1  # invalid: the whole report is refused
    huge["facts"]["hostname"] = "nul\x00byte" + "x" * 5000

    result = ingest(huge)

    assert result.status == "rejected" and "files.5.size" in result.reason
    row = ReceivedReport.objects.get()
    assert len(str(row.payload)) <= MAX_STORED_PAYLOAD_CHARS + 500
    assert "\x00" not in str(row.payload)


def test_a_large_inventory_is_stored_in_few_queries(make_host, django_assert_max_num_queries):
    make_host("ocr-1", {})
    report = inventory("ocr-1", {f"family/model_{i:05}.bin": i for i in range(5000)})

    with django_assert_max_num_queries(25):
        ingest(report)

    assert Host.objects.get(name="ocr-1").file_count == 5000


def test_a_prune_report_completes_the_request_with_outcomes(make_host, dispatched_request):
    host = make_host("ocr-1", {"a.bin": 10, "b.bin": 20})
    request = dispatched_request(host)
    assert request.state == PruneRequest.State.DISPATCHED
    report = PruneReport(
        host="ocr-1",
        request_id=request.id.hex,
        mode=PruneMode.QUARANTINE,
        freed=True,
        outcomes=[
            ItemOutcome(path="a.bin", outcome=Outcome.QUARANTINED, bytes_reclaimed=10),
            ItemOutcome(path="b.bin", outcome=Outcome.QUARANTINED, bytes_reclaimed=20),
        ],
    )

    assert ingest(report.to_json()).status == "accepted"

    request.refresh_from_db()
    assert request.state == PruneRequest.State.COMPLETED
    assert request.bytes_reclaimed == 30
    assert set(request.items.values_list("outcome", flat=True)) == {"quarantined"}
    assert len(audit(Action.ITEM_OUTCOME, object_id=str(request.id))) == 2
    assert audit(Action.REQUEST_FINISHED, object_id=str(request.id))[0].details["state"] == "completed"


@pytest.mark.parametrize(
    ("b_outcome", "state"),
    [(Outcome.SKIPPED_CHANGED, "partial"), (None, "partial")],
)
def test_a_prune_report_with_some_failures_is_partial(make_host, dispatched_request, b_outcome, state):
    host = make_host("ocr-1", {"a.bin": 10, "b.bin": 20})
    request = dispatched_request(host)
    outcomes = [ItemOutcome(path="a.bin", outcome=Outcome.DELETED, bytes_reclaimed=10)]
    if b_outcome:
        outcomes.append(ItemOutcome(path="b.bin", outcome=b_outcome, detail="sha differs"))
    report = PruneReport(
        host="ocr-1", request_id=request.id.hex, mode=PruneMode.DELETE, freed=True, outcomes=outcomes
    )

    ingest(report.to_json())

    request.refresh_from_db()
    assert request.state == state
    b = request.items.get(path="b.bin")
    assert b.outcome == (b_outcome.value if b_outcome else "error")


def test_a_prune_report_where_nothing_worked_fails_the_request(make_host, dispatched_request):
    host = make_host("ocr-1", {"a.bin": 10})
    request = dispatched_request(host)
    report = PruneReport(
        host="ocr-1",
        request_id=request.id.hex,
        mode=PruneMode.QUARANTINE,
        freed=True,
        outcomes=[ItemOutcome(path="a.bin", outcome=Outcome.SKIPPED_MISSING)],
    )
    ingest(report.to_json())
    request.refresh_from_db()
    assert request.state == PruneRequest.State.FAILED


def test_outcomes_for_another_hosts_request_are_refused(make_host, dispatched_request):
    host = make_host("ocr-1", {"a.bin": 10})
    make_host("intruder", {})
    request = dispatched_request(host)
    report = PruneReport(
        host="intruder",
        request_id=request.id.hex,
        mode=PruneMode.QUARANTINE,
        freed=True,
        outcomes=[ItemOutcome(path="a.bin", outcome=Outcome.DELETED)],
    )

    result = ingest(report.to_json())

    assert result.status == "rejected"
    request.refresh_from_db()
    assert request.state == PruneRequest.State.DISPATCHED


def test_an_error_report_fails_its_request_and_marks_the_host(make_host, dispatched_request):
    host = make_host("ocr-1", {"a.bin": 10})
    request = dispatched_request(host)
    report = ErrorReport(
        host="ocr-1", request_id=request.id.hex, task="ocrdash.agent.prune", reason="expired"
    )

    ingest(report.to_json())

    request.refresh_from_db()
    host.refresh_from_db()
    assert request.state == PruneRequest.State.FAILED
    assert "expired" in host.last_error
    assert audit(Action.AGENT_ERROR, host="ocr-1")


def test_free_and_purge_reports_are_audited(make_host):
    make_host("ocr-1", {})
    ingest(FreeReport(host="ocr-1", freed=True).to_json())
    ingest(PurgeReport(host="ocr-1", purged_requests=["abc"], bytes_purged=77, freed=True).to_json())

    assert audit(Action.RESOURCES_FREED, host="ocr-1")[0].details["freed"] is True
    assert audit(Action.QUARANTINE_PURGED, host="ocr-1")[0].details["bytes_purged"] == 77
    assert len(audit(Action.REPORT_INGESTED, host="ocr-1")) == 2


def test_a_pending_host_reports_but_cannot_be_approved_for(make_host, operator, approver):
    host = make_host("ocr-new", {"a.bin": 1}, status=Host.Status.PENDING)
    request = workflow.propose(
        host=host, files=list(host.current_snapshot.files.all()), reason="x", user=operator
    )
    with pytest.raises(workflow.NotAllowed):
        workflow.approve(request.id, approver)
