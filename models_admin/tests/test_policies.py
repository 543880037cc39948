"""Policies: each rule selects what it should, and a run proposes one request."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from models_admin.approvals import workflow
from models_admin.capacity import policies
from models_admin.models import AuditEvent, ModelFile, PruneRequest

pytestmark = pytest.mark.django_db
DAY_NS = 86_400 * 1_000_000_000


def paths(files) -> list[str]:
    return sorted(f.path for f in files)


def age(host, path: str, days: float) -> None:
    mtime = int((timezone.now() - timedelta(days=days)).timestamp() * 1e9)
    ModelFile.objects.filter(snapshot=host.current_snapshot, path=path).update(mtime_ns=mtime)


def test_the_registry_describes_every_policy():
    listed = {p["name"]: p for p in (policy.as_dict() for policy in policies.REGISTRY.values())}
    assert set(listed) == {
        "prefix",
        "older_than",
        "not_known_to_aspose",
        "keep_latest",
        "not_used_for",
        "watermark",
        "free_space",
    }
    assert listed["prefix"]["params"][0]["default"] == "old_"
    assert all(p["description"] for p in listed.values())


def test_prefix_selects_by_file_name_not_folder(make_host):
    host = make_host("ocr-1", {"old_fr.bin": 1, "sub/old_de.bin": 2, "old_dir/en.gguf": 3, "en.gguf": 4})
    assert paths(policies.select(host, "prefix").files) == ["old_fr.bin", "sub/old_de.bin"]
    assert paths(policies.select(host, "prefix", {"prefix": "en"}).files) == ["en.gguf", "old_dir/en.gguf"]


def test_older_than_uses_mtime(make_host):
    host = make_host("ocr-1", {"fresh.bin": 1, "stale.bin": 2})
    age(host, "fresh.bin", 1)
    age(host, "stale.bin", 100)
    assert paths(policies.select(host, "older_than", {"days": "30"}).files) == ["stale.bin"]
    assert paths(policies.select(host, "older_than", {"days": 0}).files) == ["fresh.bin", "stale.bin"]


def test_not_known_to_aspose_never_selects_asposes_own_model(make_host):
    host = make_host("ocr-1", {"Llama-3.2-3B-Instruct-Q4_K_M.gguf": 5, "mine.gguf": 1})
    assert paths(policies.select(host, "not_known_to_aspose").files) == ["mine.gguf"]


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("en_ocr_v1.gguf", "en_ocr_v2.gguf", True),
        ("en_ocr_v1.gguf", "EN-OCR-v10.gguf", True),
        ("en_ocr_v1.gguf", "en_ocr_v1.bin", False),
        ("en_ocr_v1.gguf", "sub/en_ocr_v2.gguf", False),
        ("en_ocr_v1.gguf", "old_en_ocr_v1.gguf", False),
        ("fr_ocr_v1.gguf", "en_ocr_v1.gguf", False),
    ],
)
def test_model_family(a, b, same):
    assert (policies.model_family(a) == policies.model_family(b)) is same


def test_keep_latest_keeps_the_newest_n_per_family(make_host):
    host = make_host("ocr-1", {"en_v1.gguf": 1, "en_v2.gguf": 1, "en_v3.gguf": 1, "fr_v1.gguf": 1})
    for days, path in ((30, "en_v1.gguf"), (20, "en_v2.gguf"), (10, "en_v3.gguf"), (99, "fr_v1.gguf")):
        age(host, path, days)
    assert paths(policies.select(host, "keep_latest").files) == ["en_v1.gguf", "en_v2.gguf"]
    assert paths(policies.select(host, "keep_latest", {"keep": 2}).files) == ["en_v1.gguf"]


def test_bad_parameters_are_refused_with_a_reason(make_host):
    host = make_host("ocr-1")
    with pytest.raises(policies.PolicyError, match="at least 1"):
        policies.select(host, "keep_latest", {"keep": 0})
    with pytest.raises(policies.PolicyError, match="whole number"):
        policies.select(host, "older_than", {"days": "soon"})
    with pytest.raises(policies.PolicyError, match="no parameter"):
        policies.select(host, "prefix", {"suffix": "x"})
    with pytest.raises(policies.PolicyError, match="no policy named"):
        policies.select(host, "everything")


def test_run_proposes_one_request_naming_the_rule(make_host, operator):
    host = make_host("ocr-1", {"old_a.bin": 10, "old_b.bin": 20, "en.gguf": 30})

    run = policies.run_policy(host, "prefix", user=operator, reason="disk nearly full")

    request = run.request
    assert request.state == PruneRequest.State.PROPOSED
    assert request.policy == "prefix"
    assert "Name prefix (prefix=old_)" in request.reason and "disk nearly full" in request.reason
    assert sorted(request.items.values_list("path", flat=True)) == ["old_a.bin", "old_b.bin"]
    assert request.requested_by == operator
    event = AuditEvent.objects.get(action=AuditEvent.Action.REQUEST_PROPOSED)
    assert event.details["policy"] == "prefix"


def test_files_in_an_open_request_are_left_out(make_host, operator):
    host = make_host("ocr-1", {"old_a.bin": 10, "old_b.bin": 20})
    first = host.current_snapshot.files.get(path="old_a.bin")
    workflow.propose(host=host, files=[first], reason="by hand", user=operator)

    run = policies.run_policy(host, "prefix", user=operator)

    assert run.selection.skipped_busy == ["old_a.bin"]
    assert list(run.request.items.values_list("path", flat=True)) == ["old_b.bin"]
    again = policies.run_policy(host, "prefix", user=operator)
    assert again.request is None and sorted(again.selection.skipped_busy) == ["old_a.bin", "old_b.bin"]


def test_links_and_unhashed_files_are_left_out(make_host, operator):
    host = make_host("ocr-1", {"old_link.bin": 1, "old_unread.bin": 2, "old_ok.bin": 3})
    ModelFile.objects.filter(path="old_link.bin").update(is_symlink=True, sha256="")
    ModelFile.objects.filter(path="old_unread.bin").update(sha256="")

    selection = policies.select(host, "prefix")

    assert paths(selection.files) == ["old_ok.bin"]
    assert sorted(selection.skipped_unprunable) == ["old_link.bin", "old_unread.bin"]


def test_known_to_aspose_is_flagged_on_items(make_host, operator):
    host = make_host("ocr-1", {"Llama-3.2-3B-Instruct-Q4_K_M.gguf": 5, "mine.gguf": 1})

    run = policies.run_policy(host, "older_than", params={"days": 30}, user=operator)

    flags = dict(run.request.items.values_list("path", "known_to_aspose"))
    assert flags == {"Llama-3.2-3B-Instruct-Q4_K_M.gguf": True, "mine.gguf": False}
