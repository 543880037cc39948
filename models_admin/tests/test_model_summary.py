"""The per-model summary ingest keeps for the models pages always equals a recount."""

from __future__ import annotations

import random

import pytest

from models_admin.fleet import hosts
from models_admin.inventory import summary
from models_admin.models import Host, ModelSummary, ModelVersion

from .conftest import ingest
from .test_ingest import inventory

pytestmark = pytest.mark.django_db


def tables() -> tuple[list, list]:
    names = list(
        ModelSummary.objects.order_by("name").values_list("name", "hosts", "copies", "bytes", "known")
    )
    versions = list(
        ModelVersion.objects.order_by("name", "sha256").values_list(
            "name", "sha256", "hosts", "copies", "bytes"
        )
    )
    return names, versions


def recount() -> tuple[list, list]:
    kept = tables()
    summary.rebuild()
    fresh = tables()
    assert kept == fresh
    return fresh


def test_it_follows_new_changed_and_emptied_inventories(make_host):
    make_host("ocr-1", {})
    make_host("ocr-2", {})
    ingest(inventory("ocr-1", {"a/en.gguf": 10, "b/en.gguf": 10, "fr.onnx": 5}))
    ingest(inventory("ocr-2", {"en.gguf": 10}))
    assert ModelSummary.objects.get(name="en.gguf").hosts == 2
    assert ModelSummary.objects.get(name="en.gguf").copies == 3

    ingest(inventory("ocr-1", {"fr.onnx": 5}))  # both en.gguf copies gone from ocr-1
    ingest(inventory("ocr-2", {}))  # and ocr-2 empty

    assert not ModelSummary.objects.filter(name="en.gguf").exists()
    assert list(ModelSummary.objects.values_list("name", "hosts", "copies", "bytes")) == [
        ("fr.onnx", 1, 1, 5)
    ]
    recount()


def test_retired_hosts_leave_it_and_come_back_when_accepted(make_host, approver):
    host = make_host("ocr-1", {"en.gguf": 10})
    hosts.retire_host(host, approver)
    assert not ModelSummary.objects.filter(copies__gt=0).exists()
    recount()
    hosts.accept_host(Host.objects.get(pk=host.pk), approver)
    assert ModelSummary.objects.get(name="en.gguf").copies == 1
    recount()


def test_it_equals_a_recount_after_many_random_inventories(make_host):
    rng = random.Random(7)
    hosts = [make_host(f"ocr-{i}", {}).name for i in range(4)]
    for _ in range(30):
        files = {
            f"{rng.choice(['a', 'b'])}/{rng.choice(['en', 'fr', 'de', 'old_en'])}.gguf": rng.choice([10, 20])
            for _ in range(rng.randrange(0, 5))
        }
        ingest(inventory(rng.choice(hosts), files))
    names, versions = recount()
    assert names and versions
