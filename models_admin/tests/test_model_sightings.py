"""Each model's sightings per host (inventory/lifecycle.py), kept by ingest as a recount finds them."""

from __future__ import annotations

import pytest

from models_admin.inventory import lifecycle
from models_admin.models import Host, ModelSighting, Snapshot

from .conftest import ingest, sha
from .test_ingest import inventory

pytestmark = pytest.mark.django_db


def _rows() -> list[tuple]:
    return sorted(
        ModelSighting.objects.values_list(
            "host_name", "kind", "key", "first_seen", "present", "last_seen", "gone_since"
        )
    )


def _taken_at(result):
    return Snapshot.objects.get(pk=result.snapshot_id).taken_at


def test_ingest_keeps_the_sightings_a_recount_of_the_snapshots_finds(make_host):
    make_host("ocr-1", {})
    make_host("ocr-2", {})
    first = ingest(inventory("ocr-1", {"a/en.gguf": 20, "old_fr.bin": 10}))
    ingest(inventory("ocr-2", {"old_fr.bin": 10}))
    ingest(inventory("ocr-1", {"a/en.gguf": 20}))  # old_fr.bin leaves ocr-1
    ingest(inventory("ocr-1", {"a/en.gguf": 20}))  # seen again: no new snapshot
    back = ingest(inventory("ocr-1", {"b/en.gguf": 20, "old_fr.bin": 10}))  # en.gguf's content moved
    kept = _rows()

    lifecycle.rebuild()

    assert _rows() == kept
    [content] = lifecycle.hosts(sha("a/en.gguf"))
    assert (content.host, content.present, content.gone_since) == ("ocr-1", False, _taken_at(back))
    by_host = {h.host: h for h in lifecycle.hosts("old_fr.bin")}
    assert by_host["ocr-1"].present and by_host["ocr-1"].gone_since is None
    assert by_host["ocr-1"].first_seen == _taken_at(first)  # its first sighting, not its return
    assert lifecycle.counts("old_fr.bin") == (2, 2)
    assert lifecycle.counts("en.gguf") == (1, 1)


def test_a_model_gone_keeps_when_it_was_last_seen(make_host):
    make_host("ocr-1", {})
    ingest(inventory("ocr-1", {"old_fr.bin": 10}))
    ingest(inventory("ocr-1", {"old_fr.bin": 10}))  # seen again: the snapshot's last_seen_at moves
    [held] = lifecycle.hosts("old_fr.bin")
    last_seen_at = Host.objects.get(name="ocr-1").current_snapshot.last_seen_at
    assert (held.present, held.last_seen) == (True, last_seen_at)

    gone = ingest(inventory("ocr-1", {}))

    [host] = lifecycle.hosts("old_fr.bin")
    assert (host.present, host.last_seen, host.gone_since) == (False, last_seen_at, _taken_at(gone))
    assert lifecycle.counts("old_fr.bin") == (1, 0)
