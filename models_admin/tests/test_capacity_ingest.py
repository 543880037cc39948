"""Ingest of both stores and of use: store-exact files, last-used rows, the daily disk series."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from models_admin.approvals import workflow
from models_admin.capacity.usage import last_use
from models_admin.fleet import dispatch
from models_admin.models import DiskSample, FileUsage, Host, PruneRequest
from workers.schema import (
    AtimeMode,
    FileEntry,
    Holder,
    HostFacts,
    InventoryReport,
    ItemOutcome,
    ModelDirState,
    Outcome,
    PruneMode,
    PruneReport,
    RestoreOrder,
    Store,
    StoreFacts,
)

from .conftest import ingest, sha

pytestmark = pytest.mark.django_db
NOW_NS = 1_760_000_000_000_000_000


def facts(disk_free: int = 400, llm_mode: AtimeMode = AtimeMode.RELATIME) -> HostFacts:
    return HostFacts(
        hostname="box",
        model_dir="/srv/models",
        model_dir_state=ModelDirState.OK,
        disk_total=1000,
        disk_free=disk_free,
        stores=[
            StoreFacts(store=Store.LLM, root="/srv/models", state=ModelDirState.OK, atime_mode=llm_mode),
            StoreFacts(
                store=Store.OCR, root="/srv/aspose_data", state=ModelDirState.OK, atime_mode=AtimeMode.NOATIME
            ),
        ],
        open_checked_at=datetime.now(UTC),
    )


def entry(path: str, store: Store = Store.LLM, **kw) -> FileEntry:
    return FileEntry(
        path=path, size=10, mtime_ns=NOW_NS, sha256=sha(f"{store}:{path}"), store=store, atime_ns=NOW_NS, **kw
    )


def test_the_same_path_in_both_stores_is_two_files_with_their_own_use(make_host):
    host = make_host("ocr-1", {})
    holder = Holder(pid=3604, program="python3", how="mmap")
    seen = datetime(2026, 11, 1, tzinfo=UTC)
    report = InventoryReport(
        host="ocr-1",
        facts=facts(),
        files=[
            entry("same.OCR", open_by=[holder], last_open_at=seen, last_open_by="python3 (pid 3604)"),
            entry("same.OCR", Store.OCR, known_to_aspose=True),
        ],
    )
    assert ingest(report.to_json()).status == "accepted"

    host.refresh_from_db()
    files = {(f.store, f.path): f for f in host.current_snapshot.files.all()}
    assert sorted(files) == [("llm", "same.OCR"), ("ocr", "same.OCR")]
    assert files[("ocr", "same.OCR")].known_to_aspose and not files[("llm", "same.OCR")].known_to_aspose
    assert [s["store"] for s in host.stores] == ["llm", "ocr"]
    usage = {(u.store, u.path): u for u in FileUsage.objects.filter(host=host)}
    assert usage[("llm", "same.OCR")].open_by == [{"pid": 3604, "program": "python3", "how": "mmap"}]
    assert usage[("ocr", "same.OCR")].atime_mode == "noatime"
    llm_use = last_use(usage[("llm", "same.OCR")])
    assert (llm_use.source, llm_use.by) == ("open", "python3 (pid 3604)")
    # noatime: the atime says nothing, and nothing else was seen: unknown, never mtime.
    assert last_use(usage[("ocr", "same.OCR")]).at is None
    assert DiskSample.objects.get(host=host).disk_free == 400


def test_relatime_atime_is_about_and_a_later_sighting_wins(make_host):
    host = make_host("ocr-1", {})
    ingest(InventoryReport(host="ocr-1", facts=facts(), files=[entry("a.gguf")]).to_json())
    use = last_use(FileUsage.objects.get(host=host))
    assert (use.source, use.trust, use.label) == ("atime", "about", "about, relatime")
    assert use.at == datetime.fromtimestamp(NOW_NS / 1e9, UTC)

    later = datetime.fromtimestamp(NOW_NS / 1e9, UTC) + timedelta(days=2)
    ingest(
        InventoryReport(
            host="ocr-1",
            facts=facts(),
            files=[entry("a.gguf", last_open_at=later, last_open_by="ocrd (pid 9)")],
        ).to_json()
    )
    use = last_use(FileUsage.objects.get(host=host))
    assert (use.at, use.source, use.label) == (later, "open", "seen open by ocrd (pid 9)")


def test_use_changing_does_not_make_a_new_snapshot_and_gone_files_lose_their_row(make_host):
    host = make_host("ocr-1", {})
    ingest(InventoryReport(host="ocr-1", facts=facts(), files=[entry("a.gguf"), entry("b.gguf")]).to_json())
    first = Host.objects.get(pk=host.pk).current_snapshot_id
    moved = [entry("a.gguf").model_copy(update={"atime_ns": NOW_NS + 10**12}), entry("b.gguf")]
    ingest(InventoryReport(host="ocr-1", facts=facts(disk_free=300), files=moved).to_json())
    assert Host.objects.get(pk=host.pk).current_snapshot_id == first
    assert FileUsage.objects.get(host=host, path="a.gguf").atime_ns == NOW_NS + 10**12
    # One point per day: the day's latest report.
    assert list(DiskSample.objects.filter(host=host).values_list("disk_free", flat=True)) == [300]

    ingest(InventoryReport(host="ocr-1", facts=facts(), files=[entry("a.gguf")]).to_json())
    assert list(FileUsage.objects.filter(host=host).values_list("path", flat=True)) == ["a.gguf"]


def test_a_request_over_both_stores_sends_and_records_each_store(
    make_host, operator, approver, host_queue, django_capture_on_commit_callbacks
):
    host = make_host("ocr-1", {})
    files = [entry("old_x.OCR"), entry("old_x.OCR", Store.OCR)]
    ingest(InventoryReport(host="ocr-1", facts=facts(), files=files).to_json())
    host.refresh_from_db()
    current = list(host.current_snapshot.files.all())
    request = workflow.propose(host=host, files=current, reason="both stores", user=operator)
    with pytest.raises(workflow.WorkflowError, match=r"old_x.OCR \(ocr\)"):
        workflow.propose(
            host=host, files=[f for f in current if f.store == "ocr"], reason="again", user=operator
        )
    queue = host_queue("ocr-1")
    with django_capture_on_commit_callbacks(execute=True):
        workflow.approve(request.id, approver)
    [(_, order)] = queue.drain()
    assert sorted((i["store"], i["path"]) for i in order["items"]) == [
        ("llm", "old_x.OCR"),
        ("ocr", "old_x.OCR"),
    ]

    outcomes = [
        ItemOutcome(path="old_x.OCR", outcome=Outcome.QUARANTINED, bytes_reclaimed=10, store=Store.OCR),
        ItemOutcome(path="old_x.OCR", outcome=Outcome.SKIPPED_IN_USE, store=Store.LLM),
    ]
    report = PruneReport(
        host="ocr-1", request_id=request.id.hex, mode=PruneMode.QUARANTINE, outcomes=outcomes, freed=True
    )
    assert ingest(report.to_json()).status == "accepted"
    request.refresh_from_db()
    assert request.state == PruneRequest.State.PARTIAL
    assert dict(request.items.values_list("store", "outcome")) == {
        "ocr": "quarantined",
        "llm": "skipped_in_use",
    }

    restore = workflow.propose_restore(prune_request=request, user=operator, reason="back")
    order = dispatch.build_request_order(restore)
    assert isinstance(order, RestoreOrder)
    assert (order.paths, order.ocr_paths) == ([], ["old_x.OCR"])


def test_the_host_page_shows_each_store_last_use_and_who_holds_what(make_host, viewer, client_for):
    make_host("ocr-1", {})
    holder = Holder(pid=3604, program="python3", how="fd")
    files = [entry("en.gguf", open_by=[holder]), entry("old_latin.OCR", Store.OCR), entry("b.gguf")]
    ingest(InventoryReport(host="ocr-1", facts=facts(), files=files).to_json())

    page = client_for(viewer).get("/hosts/ocr-1/").content.decode()

    assert "OCR resources" in page and "/srv/aspose_data" in page and "LLM folder" in page
    assert "atime not recorded (noatime)" in page and "atime about (updated at most daily)" in page
    assert page.count("python3 (pid 3604)") == 2  # the file's row and the host's "in use now"
    assert "about, relatime" in page
