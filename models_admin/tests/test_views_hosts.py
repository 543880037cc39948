"""A host's page, its diff page and the actions taken from it."""

from __future__ import annotations

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from models_admin.approvals import workflow
from models_admin.capacity import watermarks
from models_admin.models import AuditEvent, Host, ModelFile, PruneRequest, Snapshot


def _ids(host: Host, *names: str) -> list[int]:
    return list(
        ModelFile.objects.filter(snapshot=host.current_snapshot, name__in=names).values_list("id", flat=True)
    )


def test_it_shows_inventory_with_old_and_aspose_badges(client_for, viewer, make_host):
    make_host("ocr-1", {"old_fr.bin": 10, "sub/Llama-3.2-3B-Instruct-Q4_K_M.gguf": 20, "en.onnx": 30})
    response = client_for(viewer).get(reverse("ocrdash-host", args=["ocr-1"]))
    body = response.content.decode()
    assert [f.path for f in response.context["files"]] == [
        "en.onnx",
        "old_fr.bin",
        "sub/Llama-3.2-3B-Instruct-Q4_K_M.gguf",
    ]
    assert body.count(">OLD</span>") == 1
    assert body.count(">Aspose loads this</span>") == 2  # the row and the legend
    assert 'name="files"' not in body  # a viewer gets no checkboxes


def test_it_says_when_the_model_folder_is_missing(client_for, viewer, make_host):
    host = make_host("ocr-1", {})
    host.model_dir_state = Host.DirState.MISSING
    host.save()
    body = client_for(viewer).get(reverse("ocrdash-host", args=["ocr-1"])).content.decode()
    assert "does not exist on this host" in body


def test_it_asks_the_same_number_of_queries_for_5_or_500_files(client_for, viewer, make_host):
    client = client_for(viewer)
    make_host("small", {f"m{i}.bin": i for i in range(5)})
    make_host("large", {f"m{i}.bin": i for i in range(500)})
    client.get(reverse("ocrdash-host", args=["small"]))
    with CaptureQueriesContext(connection) as small:
        client.get(reverse("ocrdash-host", args=["small"]))
    with CaptureQueriesContext(connection) as large:
        response = client.get(reverse("ocrdash-host", args=["large"]))
    assert len(response.context["files"]) == 500
    assert len(large) == len(small)


def test_it_reads_the_hosts_watermark_once(client_for, viewer, make_host):
    """The marks shown beside the disk chart and the watermark rule's defaults in the policy
    form are the same marks: one read of the rule's statement, not one for each."""
    make_host("ocr-1", {"m.bin": 1})
    client = client_for(viewer)
    client.get(reverse("ocrdash-host", args=["ocr-1"]))
    with CaptureQueriesContext(connection) as page:
        response = client.get(reverse("ocrdash-host", args=["ocr-1"]))
    marks_reads = [
        q["sql"] for q in page if f"FROM {watermarks._TASK} WHERE" in q["sql"] and "'own'" in q["sql"]
    ]
    assert len(marks_reads) == 1
    watermark = next(p for p in response.context["policies"] if p["name"] == "watermark")
    assert response.context["watermark"].high == watermark["params"][0]["default"]


def test_it_proposes_the_selected_files(client_for, operator, make_host):
    host = make_host("ocr-1", {"old_a.bin": 10, "old_b.bin": 20, "keep.bin": 30})
    response = client_for(operator).post(
        reverse("ocrdash-host-propose", args=["ocr-1"]),
        {"files": _ids(host, "old_a.bin", "old_b.bin"), "reason": "superseded"},
    )
    prune = PruneRequest.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("ocrdash-request", args=[prune.id])
    assert sorted(prune.items.values_list("path", flat=True)) == ["old_a.bin", "old_b.bin"]
    assert prune.requested_by == operator
    assert AuditEvent.objects.filter(
        action=AuditEvent.Action.REQUEST_PROPOSED, actor="otto", host="ocr-1"
    ).exists()


def test_it_refuses_a_proposal_without_reason(client_for, operator, make_host):
    host = make_host("ocr-1", {"old_a.bin": 10})
    response = client_for(operator).post(
        reverse("ocrdash-host-propose", args=["ocr-1"]),
        {"files": _ids(host, "old_a.bin"), "reason": ""},
        follow=True,
    )
    assert not PruneRequest.objects.exists()
    assert "needs a reason" in response.content.decode()


def test_it_refuses_files_of_another_host(client_for, operator, make_host):
    make_host("ocr-1", {"a.bin": 10})
    other = make_host("ocr-2", {"b.bin": 10})
    client_for(operator).post(
        reverse("ocrdash-host-propose", args=["ocr-1"]), {"files": _ids(other, "b.bin"), "reason": "x"}
    )
    assert not PruneRequest.objects.exists()


def test_it_refuses_proposals_to_a_viewer(client_for, viewer, make_host):
    host = make_host("ocr-1", {"a.bin": 10})
    response = client_for(viewer).post(
        reverse("ocrdash-host-propose", args=["ocr-1"]), {"files": _ids(host, "a.bin"), "reason": "x"}
    )
    assert response.status_code == 403 and not PruneRequest.objects.exists()


def test_it_proposes_by_policy_with_parameters(client_for, operator, make_host):
    make_host("ocr-1", {"stale_a.bin": 10, "old_b.bin": 20})
    response = client_for(operator).post(
        reverse("ocrdash-host-propose-policy", args=["ocr-1"]),
        {"policy": "prefix", "prefix": "stale_", "reason": "cleanup"},
    )
    prune = PruneRequest.objects.get()
    assert response["Location"] == reverse("ocrdash-request", args=[prune.id])
    assert (prune.policy, list(prune.items.values_list("path", flat=True))) == ("prefix", ["stale_a.bin"])


def test_it_says_when_a_policy_finds_nothing(client_for, operator, make_host):
    make_host("ocr-1", {"a.bin": 10})
    response = client_for(operator).post(
        reverse("ocrdash-host-propose-policy", args=["ocr-1"]), {"policy": "prefix"}, follow=True
    )
    assert "found nothing to propose" in response.content.decode()
    assert not PruneRequest.objects.exists()


def test_it_asks_a_host_for_an_inventory_and_audits_it(client_for, operator, make_host):
    make_host("ocr-1")
    response = client_for(operator).post(reverse("ocrdash-host-inventory", args=["ocr-1"]), follow=True)
    assert "Inventory asked" in response.content.decode()
    assert AuditEvent.objects.filter(
        action=AuditEvent.Action.INVENTORY_ASKED, actor="otto", host="ocr-1"
    ).exists()


def test_it_asks_a_host_to_free_resources_and_audits_it(client_for, operator, make_host):
    make_host("ocr-1")
    client_for(operator).post(reverse("ocrdash-host-free", args=["ocr-1"]))
    assert AuditEvent.objects.filter(action=AuditEvent.Action.FREE_ASKED, actor="otto").exists()


def test_it_sends_no_order_to_a_pending_host(client_for, operator, make_host):
    make_host("ocr-1", status=Host.Status.PENDING)
    response = client_for(operator).post(reverse("ocrdash-host-inventory", args=["ocr-1"]), follow=True)
    assert "no orders are sent to it" in response.content.decode()
    assert not AuditEvent.objects.filter(action=AuditEvent.Action.INVENTORY_ASKED).exists()


def test_it_lets_an_approver_accept_and_retire(client_for, approver, make_host):
    make_host("ocr-1", status=Host.Status.PENDING)
    client = client_for(approver)
    client.post(reverse("ocrdash-host-accept", args=["ocr-1"]))
    assert Host.objects.get(name="ocr-1").status == Host.Status.ACTIVE
    client.post(reverse("ocrdash-host-retire", args=["ocr-1"]))
    assert Host.objects.get(name="ocr-1").status == Host.Status.RETIRED
    actions = set(AuditEvent.objects.filter(actor="alice").values_list("action", flat=True))
    assert actions == {AuditEvent.Action.HOST_ACCEPTED, AuditEvent.Action.HOST_RETIRED}


def test_it_refuses_accept_to_an_operator(client_for, operator, make_host):
    make_host("ocr-1", status=Host.Status.PENDING)
    assert client_for(operator).post(reverse("ocrdash-host-accept", args=["ocr-1"])).status_code == 403
    assert Host.objects.get(name="ocr-1").status == Host.Status.PENDING


def test_it_answers_404_for_an_unknown_host(client_for, viewer):
    assert client_for(viewer).get(reverse("ocrdash-host", args=["nope"])).status_code == 404


def test_it_shows_the_diff_between_two_snapshots_older_first(client_for, viewer, make_host):
    host = make_host("ocr-1", {"a.bin": 1, "b.bin": 2})
    newer = Snapshot.objects.create(host=host, digest="n", file_count=2)
    ModelFile.objects.bulk_create(
        [
            ModelFile(
                snapshot=newer,
                path="a.bin",
                name="a.bin",
                size=1,
                mtime_ns=1_700_000_000_000_000_000,
                sha256="x",
            ),
            ModelFile(snapshot=newer, path="c.bin", name="c.bin", size=3, mtime_ns=1, sha256="c"),
        ]
    )
    # Picked in the "wrong" order: the page still reads older -> newer.
    response = client_for(viewer).get(
        reverse("ocrdash-host-diff", args=["ocr-1"]), {"a": newer.id, "b": host.current_snapshot_id}
    )
    diff = response.context["diff"]
    assert [f.path for f in diff.added] == ["c.bin"]
    assert [f.path for f in diff.removed] == ["b.bin"]
    assert [after.path for _, after in diff.changed] == ["a.bin"]


def test_it_refuses_a_diff_with_another_hosts_snapshot(client_for, viewer, make_host):
    one = make_host("ocr-1")
    two = make_host("ocr-2")
    response = client_for(viewer).get(
        reverse("ocrdash-host-diff", args=["ocr-1"]),
        {"a": one.current_snapshot_id, "b": two.current_snapshot_id},
    )
    assert response.status_code == 404


def test_it_marks_files_already_in_an_open_request(client_for, operator, make_host):
    host = make_host("ocr-1", {"old_a.bin": 10, "b.bin": 20})
    workflow.propose(host=host, files=list(host.current_snapshot.files.filter(name="old_a.bin")), reason="r")
    body = client_for(operator).get(reverse("ocrdash-host", args=["ocr-1"])).content.decode()
    assert body.count('name="files"') == 1
    assert "Already in an open request" in body
