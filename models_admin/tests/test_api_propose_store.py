"""Proposing by path through the API names the store: an OCR resources file can be pruned
too, and a path is looked up only in the store the call names (llm by default)."""

from __future__ import annotations

import pytest

from models_admin.models import ModelFile, PruneRequest

pytestmark = pytest.mark.django_db

URL = "/api/hosts/ocr-1/prune-requests/"


@pytest.fixture
def host_with_both_stores(make_host):
    host = make_host("ocr-1", {"old_fr_ocr_v1.bin": 1_000, "shared.bin": 10})
    # The OCR store holds an engine file, and a file of the same relative path as an LLM one.
    for path, size in {"old_engine.OCR": 5_000, "shared.bin": 20}.items():
        ModelFile.objects.create(
            snapshot=host.current_snapshot,
            store="ocr",
            path=path,
            name=path,
            size=size,
            mtime_ns=1_700_000_000_000_000_000,
            sha256=f"{size:064x}",
        )
    return host


def post(api, body):
    return api.post(URL, body, content_type="application/json")


def test_an_ocr_store_file_is_proposed_with_store_ocr(host_with_both_stores, client_for, operator):
    response = post(
        client_for(operator), {"files": ["old_engine.OCR"], "reason": "old engine", "store": "ocr"}
    )

    assert response.status_code == 201, response.json()
    [item] = response.json()["items"]
    assert (item["path"], item["store"], item["size"]) == ("old_engine.OCR", "ocr", 5_000)
    assert PruneRequest.objects.get().items.get().store == "ocr"


def test_without_store_a_path_is_looked_up_in_the_llm_folder_only(
    host_with_both_stores, client_for, operator
):
    api = client_for(operator)
    shared = post(api, {"files": ["shared.bin"], "reason": "x"})
    assert shared.status_code == 201
    assert [(i["store"], i["size"]) for i in shared.json()["items"]] == [("llm", 10)]

    ocr_only = post(api, {"files": ["old_engine.OCR"], "reason": "x"})
    assert ocr_only.status_code == 400
    assert "old_engine.OCR" in ocr_only.json()["error"] and "LLM folder" in ocr_only.json()["error"]


def test_the_same_path_in_the_other_store_is_a_separate_file(host_with_both_stores, client_for, operator):
    api = client_for(operator)
    assert post(api, {"files": ["shared.bin"], "reason": "x", "store": "llm"}).status_code == 201
    other = post(api, {"files": ["shared.bin"], "reason": "x", "store": "ocr"})
    assert other.status_code == 201, other.json()
    assert [(i["store"], i["size"]) for i in other.json()["items"]] == [("ocr", 20)]


def test_an_unknown_store_is_refused_with_the_choices(host_with_both_stores, client_for, operator):
    response = post(client_for(operator), {"files": ["old_fr_ocr_v1.bin"], "reason": "x", "store": "tmp"})
    assert response.status_code == 400
    body = response.json()
    assert body["error"].startswith("store:") and "tmp" in body["error"]
    assert not PruneRequest.objects.exists()
