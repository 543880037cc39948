"""A quarantined file that a restore moved back is shown as restored wherever a file's
quarantine state is shown: the prune's own files table, the model's lifecycle and the API.

The prune's item keeps ``quarantined`` (what that prune did; the restore's own item says
``restored``), and these places read that outcome alone: a file back in its folder for weeks
was still listed as in quarantine.
"""

from __future__ import annotations

import re

import pytest

from models_admin.models import PruneItem
from workers.schema import Outcome

from .test_quarantine_purge import quarantined

pytestmark = pytest.mark.django_db


def badges(html: str, path: str) -> list[str]:
    """The outcome badges of the row (or lifecycle line) that names ``path``."""
    rows = [r for r in re.split(r"<tr|<div class=\"mb-1\">", html) if f">{path}<" in r]
    assert rows, f"{path} not on the page"
    found = (re.findall(r'<span class="badge text-bg-\w+[^"]*">([^<]+)</span>', row) for row in rows)
    return [b.lower() for bs in found for b in bs]


@pytest.fixture
def half_restored(make_host, dispatched_request, restore_answer):
    host = make_host("ocr-1", {"old_a.bin": 100, "old_b.bin": 50, "en.gguf": 10})
    prune = quarantined(dispatched_request(host, ["old_a.bin", "old_b.bin"]), days_ago=1)
    restore_answer(prune, {"old_a.bin": Outcome.RESTORED, "old_b.bin": Outcome.REFUSED})
    return prune


def test_the_prunes_files_table_says_restored_for_a_file_moved_back(half_restored, client_for, viewer):
    page = client_for(viewer).get(f"/requests/{half_restored.id}/").content.decode()
    files = page.split(">Files</h2>", 1)[1]

    assert "restored" in badges(files, "old_a.bin") and "quarantined" not in badges(files, "old_a.bin")
    assert "quarantined" in badges(files, "old_b.bin")
    # What the prune did is not rewritten: its item still says it quarantined the file.
    assert half_restored.items.get(path="old_a.bin").outcome == PruneItem.Outcome.QUARANTINED


def test_the_models_lifecycle_says_restored_for_a_file_moved_back(half_restored, client_for, viewer):
    page = client_for(viewer).get("/models/old_a.bin/lifecycle/").content.decode()
    removals = page.split('id="lifecycle"', 1)[1]

    assert "restored" in badges(removals, "old_a.bin") and "quarantined" not in badges(removals, "old_a.bin")


def test_the_api_says_which_files_are_still_in_quarantine(half_restored, client_for, viewer):
    body = client_for(viewer).get(f"/api/prune-requests/{half_restored.id}/").json()
    items = {i["path"]: i for i in body["items"]}

    assert (items["old_a.bin"]["outcome"], items["old_a.bin"]["restored"]) == ("quarantined", True)
    assert items["old_a.bin"]["in_quarantine"] is False
    assert (items["old_b.bin"]["restored"], items["old_b.bin"]["in_quarantine"]) == (False, True)
    assert body["bytes_in_quarantine"] == 50
