"""Campaign, group and label pages: preview, propose, decide, steer; who may do what."""

from __future__ import annotations

import pytest
from django.urls import reverse

from models_admin.fleet import labels
from models_admin.models import AuditEvent, Campaign, Host, HostGroup
from models_admin.tests.conftest import sha

pytestmark = pytest.mark.django_db
OLD = "old_fr_ocr_v1.bin"


@pytest.fixture
def fleet(make_host, approver):
    for i in range(1, 4):
        labels.set_labels(make_host(f"ocr-{i}"), {"env": "prod"}, approver)
    return labels.save_group("prod", selector={"env": "prod"}, user=approver)


def query(**kw) -> dict:
    base = {
        "target_kind": "group",
        "group": "prod",
        "rule_kind": "policy",
        "policy": "prefix",
        "canary_size": "1",
        "failure_threshold": "0",
    }
    return {**base, **kw}


def test_new_campaign_previews_per_host_and_proposes(fleet, client_for, operator) -> None:
    client = client_for(operator)
    page = client.get(reverse("ocrdash-campaign-new"), query()).content.decode()
    assert "Hosts taking part" in page and "canary" in page and page.count(OLD) >= 3
    response = client.post(reverse("ocrdash-campaign-propose"), {**query(), "reason": "old French model"})
    campaign = Campaign.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse(
        "ocrdash-campaign", args=[campaign.id]
    )
    assert campaign.state == Campaign.State.PROPOSED and campaign.hosts.count() == 3
    detail = client.get(response["Location"]).content.decode()
    assert "Waiting for approval" in detail and "ocr-2" in detail
    assert "Approve and start" not in detail  # an operator sees no decision buttons


def test_a_bad_selector_is_shown_on_the_form(fleet, client_for, operator) -> None:
    page = client_for(operator).get(
        reverse("ocrdash-campaign-new"), query(target_kind="selector", selector="env")
    )
    assert "is not key=value" in page.content.decode()


def test_a_viewer_may_not_propose_and_an_anonymous_user_is_sent_to_log_in(fleet, client_for, viewer, client):
    assert client_for(viewer).get(reverse("ocrdash-campaign-new")).status_code == 403
    assert client_for(viewer).post(reverse("ocrdash-campaign-propose"), query(reason="x")).status_code == 403
    assert client.get(reverse("ocrdash-campaigns")).status_code == 302


def test_approve_pause_halt_from_the_page(
    fleet, client_for, operator, approver, host_queue, django_capture_on_commit_callbacks
) -> None:
    for i in range(1, 4):
        host_queue(f"ocr-{i}")
    client_for(operator).post(reverse("ocrdash-campaign-propose"), {**query(), "reason": "old model"})
    campaign = Campaign.objects.get()
    page = client_for(approver)
    assert page.get(reverse("ocrdash-campaign-approve", args=[campaign.id])).status_code == 405
    with django_capture_on_commit_callbacks(execute=True):
        page.post(reverse("ocrdash-campaign-approve", args=[campaign.id]), {"comment": "go"})
    campaign.refresh_from_db()
    assert campaign.state == Campaign.State.RUNNING and campaign.requests.count() == 1
    page.post(reverse("ocrdash-campaign-pause", args=[campaign.id]))
    page.post(reverse("ocrdash-campaign-halt", args=[campaign.id]), {"comment": "wrong model"})
    campaign.refresh_from_db()
    assert campaign.state == Campaign.State.HALTED and campaign.halt_reason == "halted by alice: wrong model"
    detail = page.get(reverse("ocrdash-campaign", args=[campaign.id])).content.decode()
    assert "halted by alice: wrong model" in detail
    listing = page.get(reverse("ocrdash-campaigns")).content.decode()
    assert campaign.short_id in listing and "Halted" in listing
    audit = page.get(reverse("ocrdash-audit")).content.decode()
    assert "Campaign halted" in audit


def test_the_proposer_cannot_approve_from_the_page(fleet, client_for, approver2) -> None:
    client = client_for(approver2)  # operator and approver
    client.post(reverse("ocrdash-campaign-propose"), {**query(), "reason": "old model"})
    campaign = Campaign.objects.get()
    detail = client.get(reverse("ocrdash-campaign", args=[campaign.id])).content.decode()
    assert "another approver must approve it" in detail
    client.post(reverse("ocrdash-campaign-approve", args=[campaign.id]))
    assert Campaign.objects.get().state == Campaign.State.PROPOSED


def test_groups_page_saves_and_deletes_and_fleet_filters(fleet, make_host, client_for, approver, operator):
    make_host("ocr-9")
    client = client_for(approver)
    client.post(reverse("ocrdash-group-save"), {"name": "pair", "hosts": "ocr-1 ocr-9"})
    assert set(HostGroup.objects.get(name="pair").hosts.values_list("name", flat=True)) == {"ocr-1", "ocr-9"}
    page = client.get(reverse("ocrdash-groups")).content.decode()
    assert "pair" in page and "env=prod" in page
    rows = client.get(reverse("ocrdash-fleet-rows"), {"group": "pair"}).json()["tbody"]
    assert "ocr-9" in rows and "ocr-2" not in rows
    rows = client.get(reverse("ocrdash-fleet-rows"), {"label": "env=prod"}).json()["tbody"]
    assert "ocr-2" in rows and "ocr-9" not in rows
    assert (
        client_for(operator).post(reverse("ocrdash-group-save"), {"name": "x", "hosts": "ocr-1"}).status_code
        == 403
    )
    client.post(reverse("ocrdash-group-delete", args=["pair"]))
    assert not HostGroup.objects.filter(name="pair").exists()


def test_host_page_sets_labels_and_shows_reported_ones_apart(
    make_host, client_for, approver, operator
) -> None:
    host = make_host("ocr-1")
    Host.objects.filter(pk=host.pk).update(reported_labels={"rack": "b7"})
    client = client_for(approver)
    client.post(reverse("ocrdash-host-labels", args=["ocr-1"]), {"labels": "env=prod, region=eu"})
    assert Host.objects.get(pk=host.pk).labels == {"env": "prod", "region": "eu"}
    page = client.get(reverse("ocrdash-host", args=["ocr-1"])).content.decode()
    assert "Reported by the host" in page and "rack=b7" in page and "env=prod" in page
    client.post(reverse("ocrdash-host-labels", args=["ocr-1"]), {"labels": "Bad Label"})
    assert Host.objects.get(pk=host.pk).labels == {"env": "prod", "region": "eu"}
    assert (
        client_for(operator).post(reverse("ocrdash-host-labels", args=["ocr-1"]), {"labels": ""}).status_code
        == 403
    )
    assert AuditEvent.objects.filter(action=AuditEvent.Action.HOST_LABELED).count() == 1


def test_model_page_offers_remove_everywhere(make_host, client_for, operator) -> None:
    make_host("ocr-1")
    make_host("ocr-2")
    page = client_for(operator).get(reverse("ocrdash-model", args=[OLD])).content.decode()
    assert "everywhere" in page and sha(OLD) in page and "target_kind=model" in page


def test_a_campaign_waiting_for_approval_is_counted_in_the_nav_and_on_the_fleet_page(
    fleet, client_for, operator, approver
) -> None:
    client = client_for(operator)
    client.post(reverse("ocrdash-campaign-propose"), {**query(), "reason": "old French model"})
    fleet_page = client_for(approver).get("/").content.decode()
    assert "1 campaign waiting for an approver" in fleet_page  # the nav badge's title
    assert 'href="/campaigns/?state=proposed"' in fleet_page and ">1 campaign</a>" in fleet_page


def test_the_campaign_live_panel_sends_the_body_and_the_state(fleet, client_for, operator, approver) -> None:
    client_for(operator).post(reverse("ocrdash-campaign-propose"), {**query(), "reason": "old French model"})
    campaign = Campaign.objects.get()
    live = client_for(approver).get(reverse("ocrdash-campaign-live", args=[campaign.id])).json()
    assert live["state"] == "proposed" and live["busy"] is False
    assert 'id="campaign-hosts"' in live["html"] and "In quarantine" in live["html"]
    assert "Approve and start" not in live["html"]  # the buttons stay outside the swapped panel
