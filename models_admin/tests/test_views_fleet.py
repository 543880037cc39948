"""The fleet overview and its live rows endpoint."""

from __future__ import annotations

from datetime import timedelta

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from models_admin.approvals import workflow
from models_admin.models import Host


def test_it_lists_hosts_with_totals_and_pending_counts(client_for, viewer, operator, make_host):
    berlin = make_host("ocr-berlin", {"old_a.bin": 1_000, "b.bin": 3_000})
    make_host("ocr-paris", {"c.bin": 5_000})
    workflow.propose(
        host=berlin, files=list(berlin.current_snapshot.files.all()[:1]), reason="r", user=operator
    )
    response = client_for(viewer).get(reverse("ocrdash-fleet"))
    hosts = {h.name: h for h in response.context["hosts"]}
    assert hosts["ocr-berlin"].pending_count == 1 and hosts["ocr-paris"].pending_count == 0
    assert response.context["totals"] == {
        "hosts": 2,
        "files": 3,
        "bytes": 9_000,
        "pending": 1,
        "pending_campaigns": 0,
        "pending_hosts": 0,
        "errors": 0,
        "offline": 0,
        "low_disk": 0,
    }


def test_it_shows_an_empty_state_that_says_what_to_do(client_for, viewer):
    body = client_for(viewer).get(reverse("ocrdash-fleet")).content.decode()
    assert "python -m workers agent" in body


def test_it_hides_retired_hosts_unless_asked(client_for, viewer, make_host):
    make_host("ocr-live")
    make_host("ocr-gone", status=Host.Status.RETIRED)
    client = client_for(viewer)

    def names(response) -> list[str]:
        return [h.name for h in response.context["hosts"]]

    assert names(client.get(reverse("ocrdash-fleet"))) == ["ocr-live"]
    assert names(client.get(reverse("ocrdash-fleet"), {"retired": "1"})) == ["ocr-gone", "ocr-live"]


def test_it_sorts_by_size_both_ways(client_for, viewer, make_host):
    make_host("small", {"a": 1})
    make_host("big", {"a": 100})
    make_host("mid", {"a": 10})
    client = client_for(viewer)

    def order(sort: str) -> list[str]:
        return [h.name for h in client.get(reverse("ocrdash-fleet"), {"sort": sort}).context["hosts"]]

    assert order("size") == ["small", "mid", "big"]
    assert order("-size") == ["big", "mid", "small"]


def test_it_sorts_hosts_that_never_reported_last(client_for, viewer, make_host):
    make_host("seen")
    Host.objects.create(name="silent")
    client = client_for(viewer)
    for sort in ("last_seen", "-last_seen"):
        assert [h.name for h in client.get(reverse("ocrdash-fleet"), {"sort": sort}).context["hosts"]][
            -1
        ] == "silent"


def test_it_filters_by_name_status_errors_and_size(client_for, viewer, make_host):
    make_host("ocr-a", {"x": 2_000_000_000})
    broken = make_host("ocr-b", {"x": 10})
    broken.model_dir_state = Host.DirState.MISSING
    broken.save()
    make_host("other", {"x": 10}, status=Host.Status.PENDING)
    client = client_for(viewer)

    def names(**query):
        return sorted(h.name for h in client.get(reverse("ocrdash-fleet"), query).context["hosts"])

    assert names(q="ocr") == ["ocr-a", "ocr-b"]
    assert names(status="pending") == ["other"]
    assert names(errors="1") == ["ocr-b"]
    assert names(min_size="1G") == ["ocr-a"]


def test_it_marks_missing_offline_and_never_seen_hosts(client_for, viewer, make_host, settings):
    settings.OCRDASH = {
        **settings.OCRDASH,
        "HOST_OFFLINE_AFTER_MINUTES": 90,
        "HOST_MISSING_AFTER_MINUTES": 1440,
    }
    for name, silent in [("ocr-old", timedelta(days=2)), ("ocr-quiet", timedelta(hours=3))]:
        host = make_host(name)
        host.last_seen = timezone.now() - silent
        host.save()
    make_host("ocr-fresh")  # between two hourly inventories:
    Host.objects.filter(name="ocr-fresh").update(last_seen=timezone.now() - timedelta(minutes=59))
    Host.objects.create(name="ocr-new")
    response = client_for(viewer).get(reverse("ocrdash-fleet"))
    hosts = {h.name: h.presence() for h in response.context["hosts"]}
    assert hosts == {"ocr-old": "missing", "ocr-quiet": "offline", "ocr-fresh": "online", "ocr-new": "never"}
    assert ">offline</span>" in response.content.decode()


def test_it_offers_accept_only_to_approvers(client_for, viewer, approver, make_host):
    make_host("ocr-new", status=Host.Status.PENDING)
    accept = reverse("ocrdash-host-accept", args=["ocr-new"])
    assert accept in client_for(approver).get(reverse("ocrdash-fleet")).content.decode()
    assert accept not in client_for(viewer).get(reverse("ocrdash-fleet")).content.decode()


def test_it_returns_rendered_rows_with_the_same_filters(client_for, viewer, make_host):
    make_host("ocr-a")
    make_host("zzz-b")
    data = client_for(viewer).get(reverse("ocrdash-fleet-rows"), {"q": "ocr"}).json()
    assert "ocr-a" in data["tbody"] and "zzz-b" not in data["tbody"]
    assert "Model files" in data["totals"]


def test_it_asks_the_same_number_of_queries_for_2_or_20_hosts(
    client_for, viewer, operator, make_host, django_assert_num_queries
):
    client = client_for(viewer)

    def fleet(n_from: int, n_to: int) -> None:
        for i in range(n_from, n_to):
            host = make_host(f"ocr-{i:02}")
            workflow.propose(
                host=host, files=list(host.current_snapshot.files.all()[:1]), reason="r", user=operator
            )

    fleet(0, 2)
    client.get(reverse("ocrdash-fleet"))  # warm the session and the user's roles
    with CaptureQueriesContext(connection) as few:
        client.get(reverse("ocrdash-fleet"))
    with CaptureQueriesContext(connection) as few_rows:
        client.get(reverse("ocrdash-fleet-rows"))
    fleet(2, 20)
    with django_assert_num_queries(len(few)):
        response = client.get(reverse("ocrdash-fleet"))
    assert len(response.context["hosts"]) == 20
    with django_assert_num_queries(len(few_rows)):
        client.get(reverse("ocrdash-fleet-rows"))


def test_hosts_that_need_attention_come_first(client_for, viewer, make_host):
    make_host("a-fine")
    broken = make_host("b-error")
    Host.objects.filter(pk=broken.pk).update(last_error="inventory: permission denied")
    silent = make_host("c-offline")
    Host.objects.filter(pk=silent.pk).update(last_seen=timezone.now() - timedelta(days=2))
    full = make_host("d-full")
    Host.objects.filter(pk=full.pk).update(disk_total=1000, disk_free=50)
    make_host("e-pending", status=Host.Status.PENDING)
    make_host("f-fine")
    beating = make_host("c-beats-missed")  # three 30-s beats missed: offline long before the silence limit
    Host.objects.filter(pk=beating.pk).update(
        heartbeat_seconds=30, last_seen=timezone.now() - timedelta(minutes=2)
    )
    alive = make_host("g-beating")
    Host.objects.filter(pk=alive.pk).update(
        heartbeat_seconds=30, last_seen=timezone.now() - timedelta(seconds=20)
    )

    response = client_for(viewer).get(reverse("ocrdash-fleet"))

    assert [h.name for h in response.context["hosts"]] == [
        "b-error", "c-beats-missed", "c-offline", "d-full", "e-pending", "a-fine", "f-fine", "g-beating"
    ]  # fmt: skip
    totals = response.context["totals"]
    assert (totals["errors"], totals["offline"], totals["low_disk"], totals["pending_hosts"]) == (1, 2, 1, 1)
    assert "Hosts that need someone come first" in response.content.decode()


def test_it_pages_the_fleet_and_the_poller_sends_one_page(client_for, viewer, make_host):
    from models_admin.views.fleet import PAGE_SIZE

    for i in range(PAGE_SIZE + 5):
        Host.objects.create(name=f"ocr-{i:03d}", status=Host.Status.ACTIVE, last_seen=timezone.now())
    client = client_for(viewer)

    first = client.get(reverse("ocrdash-fleet"))
    second = client.get(reverse("ocrdash-fleet"), {"page": 2})
    rows = client.get(reverse("ocrdash-fleet-rows"), {"page": 2})

    assert len(first.context["hosts"]) == PAGE_SIZE
    assert [h.name for h in second.context["hosts"]] == [
        f"ocr-{i:03d}" for i in range(PAGE_SIZE, PAGE_SIZE + 5)
    ]
    assert first.context["totals"]["hosts"] == PAGE_SIZE + 5
    assert "Page 1 of 2" in first.content.decode() and "Next" in first.content.decode()
    tbody = rows.json()["tbody"]
    assert tbody.count("<tr") == 5 and "ocr-000" not in tbody


def test_the_fleet_page_costs_the_same_queries_at_any_size(client_for, viewer, make_host):
    client = client_for(viewer)
    make_host("ocr-1")
    with CaptureQueriesContext(connection) as small:
        client.get(reverse("ocrdash-fleet"))
    for i in range(120):
        Host.objects.create(name=f"more-{i:03d}", status=Host.Status.ACTIVE, last_seen=timezone.now())
    with CaptureQueriesContext(connection) as large:
        client.get(reverse("ocrdash-fleet"))
    assert len(large) == len(small)
