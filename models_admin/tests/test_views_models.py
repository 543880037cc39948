"""The models index and a model's page across the fleet."""

from __future__ import annotations

from django.urls import reverse

from models_admin.models import Host, Snapshot

from .conftest import sha


def test_it_finds_a_name_on_every_host_that_holds_it_now(client_for, viewer, make_host):
    make_host("ocr-1", {"en.gguf": 10, "sub/fr.onnx": 5})
    make_host("ocr-2", {"models/en.gguf": 10})
    make_host("ocr-3", {"de.onnx": 1})
    make_host("ocr-old", {"en.gguf": 10}, status=Host.Status.RETIRED)
    response = client_for(viewer).get(reverse("ocrdash-model", args=["en.gguf"]))
    assert sorted((f.snapshot.host.name, f.path) for f in response.context["files"]) == [
        ("ocr-1", "en.gguf"),
        ("ocr-2", "models/en.gguf"),
    ]
    assert response.context["hosts"] == 2


def test_it_finds_by_hash(client_for, viewer, make_host):
    make_host("ocr-1", {"en.gguf": 10})
    response = client_for(viewer).get(reverse("ocrdash-model", args=[sha("en.gguf")]))
    assert response.context["by_hash"] and len(response.context["files"]) == 1


def test_it_ignores_files_of_older_snapshots(client_for, viewer, make_host):
    host = make_host("ocr-1", {"gone.bin": 10})
    host.current_snapshot = Snapshot.objects.create(host=host, digest="empty")
    host.save()
    response = client_for(viewer).get(reverse("ocrdash-model", args=["gone.bin"]))
    assert response.context["files"] == []
    assert "No host holds" in response.content.decode()


def test_it_searches_the_index(client_for, viewer, make_host):
    make_host("ocr-1", {"en_v1.gguf": 10, "fr.onnx": 5})
    make_host("ocr-2", {"en_v1.gguf": 10})
    models = list(client_for(viewer).get(reverse("ocrdash-models"), {"q": "en_"}).context["models"])
    assert [(m["name"], m["hosts"], m["copies"], m["bytes"]) for m in models] == [("en_v1.gguf", 2, 2, 20)]


def test_a_copy_links_its_host_and_content_in_as_many_queries_at_3_as_at_30_hosts(
    client_for, viewer, make_host
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client = client_for(viewer)
    counts: list[int] = []
    made = 0
    for hosts in (3, 30):
        for i in range(made, hosts):
            make_host(f"ocr-{i:02}", {"en.gguf": 10, f"own-{i}.bin": 1})
        with CaptureQueriesContext(connection) as queries:
            page = client.get(reverse("ocrdash-model", args=["en.gguf"])).content.decode()
        made = hosts
        counts.append(len(queries))
        assert page.count('href="/hosts/ocr-') == hosts
        assert '<a href="/hosts/ocr-02/" class="fw-semibold text-decoration-none">ocr-02</a>' in page
        assert page.count(f'href="/models/{sha("en.gguf")}/"') == hosts
    assert counts[0] == counts[1]
