"""Webhook routing per event and per group, labels or "the rest", proven with real HTTP receivers.

Events are raised by the code that raises them in production (the presence sweep, a refused
report, a campaign's proposal and halt), delivered by ``delivery.deliver`` (what the notify
worker runs) to real local HTTP servers; the test reads what each server received.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings
from django.utils import timezone
from kombu import Connection

from models_admin.campaigns import plan, rollout
from models_admin.fleet import labels
from models_admin.models import AuditEvent, Campaign, Host, Notification, WebhookChannel, WebhookRoute
from models_admin.notifications import Event, delivery
from models_admin.notifications import webhooks as hooks_admin
from models_admin.notifications.routing import About, webhooks_for
from models_admin.tests.conftest import ingest, sha
from ocrdash.celery import NOTIFY_QUEUE
from workers.schema import FreeReport

from .receivers import WebhookReceiver

pytestmark = pytest.mark.django_db
Scope = WebhookRoute.Scope
OLD = "old_fr_ocr_v1.bin"


@pytest.fixture(autouse=True)
def _notify_queue():
    with Connection(settings.CELERY_BROKER_URL) as conn:
        queue = conn.SimpleQueue(NOTIFY_QUEUE)
        queue.clear()
        yield
        queue.clear()
        queue.close()


@pytest.fixture
def receiver():
    with WebhookReceiver() as server:
        yield server


@pytest.fixture
def fleet(make_host, approver):
    """ocr-eu-1, ocr-eu-2 in prod-eu (by selector), ocr-us in prod-us, ocr-lab in no group."""
    hosts = {}
    for name, lab in [
        ("ocr-eu-1", {"env": "prod", "region": "eu"}),
        ("ocr-eu-2", {"env": "prod", "region": "eu"}),
        ("ocr-us", {"env": "prod", "region": "us"}),
        ("ocr-lab", {"env": "lab"}),
    ]:
        host = make_host(name, {"en_ocr_v1.gguf": 2_000, OLD: 1_000})
        hosts[name] = labels.set_labels(host, lab, approver)
    labels.save_group("prod-eu", user=approver, selector={"env": "prod", "region": "eu"})
    labels.save_group("prod-us", user=approver, selector={"env": "prod", "region": "us"})
    return hosts


def hook(name: str, receiver: WebhookReceiver, *routes: tuple, user=None) -> WebhookChannel:
    """A webhook posting to ``receiver`` under /<name>, with ``routes`` of (event, scope[, group|labels])."""
    channel = hooks_admin.add_webhook(name, receiver.url(f"/{name}"), user=user)
    for event, scope, *target in routes:
        group = labels.HostGroup.objects.get(name=target[0]) if scope == Scope.GROUP else None
        selector = labels.parse_selector(target[0]) if scope == Scope.LABELS else None
        hooks_admin.add_route(channel, event, scope, user=user, group=group, selector=selector)
    return channel


def deliver_all() -> list[str]:
    return [
        delivery.deliver(n.id)[0] for n in Notification.objects.filter(status=Notification.Status.PENDING)
    ]


def received(receiver: WebhookReceiver) -> dict[str, list[str]]:
    """Titles each webhook path received."""
    got: dict[str, list[str]] = {}
    for path, body in receiver.posts:
        got.setdefault(path.strip("/"), []).append(body.get("title", ""))
    return {k: sorted(v) for k, v in got.items()}


def go_offline(*hosts: Host, capture) -> None:
    now = timezone.now()
    assert delivery.check_presence(now) == 0  # the first look records, tells nothing
    Host.objects.filter(pk__in=[h.pk for h in hosts]).update(last_seen=now - timedelta(hours=3))
    with capture(execute=True):
        assert delivery.check_presence(now) == len(hosts)


def test_host_offline_in_a_group_goes_to_its_webhook_and_the_rest_to_another(
    fleet, receiver, approver, django_capture_on_commit_callbacks
):
    hook("eu", receiver, (Event.HOST_OFFLINE, Scope.GROUP, "prod-eu"), user=approver)
    hook("general", receiver, (Event.HOST_OFFLINE, Scope.REST), user=approver)
    hook("pager", receiver, (Event.HOST_OFFLINE, Scope.ALL), (Event.HOST_MISSING, Scope.ALL))
    hook("quiet", receiver, (Event.MODEL_DIR_GONE, Scope.ALL))  # another event: hears nothing
    go_offline(
        fleet["ocr-eu-1"], fleet["ocr-us"], fleet["ocr-lab"], capture=django_capture_on_commit_callbacks
    )
    assert set(deliver_all()) == {Notification.Status.SENT}
    assert received(receiver) == {
        "eu": ["ocr-eu-1 is offline"],
        "general": ["ocr-lab is offline", "ocr-us is offline"],
        "pager": ["ocr-eu-1 is offline", "ocr-lab is offline", "ocr-us is offline"],
    }
    # The delivery log names the host and the (masked) webhook of each message.
    assert set(Notification.objects.filter(webhook__name="eu").values_list("host", flat=True)) == {"ocr-eu-1"}


def test_label_routes_explicit_groups_and_one_message_per_webhook(
    fleet, receiver, approver, django_capture_on_commit_callbacks
):
    lab = labels.save_group("lab-list", user=approver, hosts=["ocr-lab"])
    assert not lab.is_selector
    hook(
        "prod",
        receiver,
        (Event.HOST_OFFLINE, Scope.LABELS, "env=prod"),
        (Event.HOST_OFFLINE, Scope.GROUP, "prod-us"),  # ocr-us matches both routes: one message
    )
    hook("lab", receiver, (Event.HOST_OFFLINE, Scope.GROUP, "lab-list"))
    hook("rest", receiver, (Event.HOST_OFFLINE, Scope.REST))
    go_offline(
        fleet["ocr-eu-2"], fleet["ocr-us"], fleet["ocr-lab"], capture=django_capture_on_commit_callbacks
    )
    deliver_all()
    assert received(receiver) == {
        "prod": ["ocr-eu-2 is offline", "ocr-us is offline"],
        "lab": ["ocr-lab is offline"],
    }


def test_labels_a_host_reports_about_itself_route_nothing(fleet, receiver, approver):
    hook("eu", receiver, (Event.HOST_OFFLINE, Scope.LABELS, "region=eu"))
    hook("rest", receiver, (Event.HOST_OFFLINE, Scope.REST))
    Host.objects.filter(name="ocr-lab").update(reported_labels={"region": "eu"})
    assert [h.name for h in webhooks_for(Event.HOST_OFFLINE, About.host("ocr-lab"))] == ["rest"]
    assert [h.name for h in webhooks_for(Event.HOST_OFFLINE, About.host("ocr-eu-1"))] == ["eu"]
    # A disabled webhook is routed nothing; the rest is then decided without it.
    WebhookChannel.objects.filter(name="eu").update(enabled=False)
    assert [h.name for h in webhooks_for(Event.HOST_OFFLINE, About.host("ocr-eu-1"))] == ["rest"]


def test_a_refused_report_routes_by_the_host_it_names_or_else_to_the_rest(
    fleet, receiver, django_capture_on_commit_callbacks
):
    hook("eu", receiver, (Event.REPORT_REFUSED, Scope.GROUP, "prod-eu"))
    hook("rest", receiver, (Event.REPORT_REFUSED, Scope.REST))
    stranger = Ed25519PrivateKey.generate()  # not the key ocr-eu-1 enrolled with: a forgery
    with django_capture_on_commit_callbacks(execute=True):
        assert ingest(FreeReport(host="ocr-eu-1", freed=True), key=stranger).status == "rejected"
        assert ingest(FreeReport(host="ocr-nowhere", freed=True), key=stranger).status == "rejected"
    deliver_all()
    got = received(receiver)
    assert got.keys() == {"eu", "rest"}
    assert got["eu"] == ["A report claiming to come from ocr-eu-1 was refused"]
    assert got["rest"] == ["A report claiming to come from ocr-nowhere was refused"]


def campaign_spec(**kw) -> plan.Spec:
    kw.setdefault("rule_kind", Campaign.Rule.IDENTITY)
    kw.setdefault("model_name", OLD)
    kw.setdefault("model_sha256", sha(OLD))
    return plan.Spec(**kw)


def test_a_campaign_routes_by_its_target_group_or_selector(
    fleet, receiver, operator, approver, django_capture_on_commit_callbacks
):
    hook("eu", receiver, (Event.CAMPAIGN_WAITING, Scope.GROUP, "prod-eu"))
    hook("prod", receiver, (Event.CAMPAIGN_WAITING, Scope.LABELS, "env=prod"))
    hook("rest", receiver, (Event.CAMPAIGN_WAITING, Scope.REST))
    prod_eu = labels.HostGroup.objects.get(name="prod-eu")
    with django_capture_on_commit_callbacks(execute=True):
        by_group = rollout.propose(
            campaign_spec(target_kind=Campaign.Target.GROUP, group=prod_eu), user=operator, reason="old"
        )
        by_selector = rollout.propose(
            campaign_spec(target_kind=Campaign.Target.SELECTOR, selector={"env": "prod", "region": "us"}),
            user=operator,
            reason="old",
        )
        by_model = rollout.propose(
            campaign_spec(target_kind=Campaign.Target.MODEL), user=operator, reason="old"
        )
    deliver_all()
    got = received(receiver)
    # The group's campaign: its group's route, and the labels route its selector implies.
    assert got["eu"] == [f"Campaign {by_group.short_id} on group prod-eu waits for your approval"]
    assert sorted(got["prod"]) == sorted(
        [
            f"Campaign {by_group.short_id} on group prod-eu waits for your approval",
            f"Campaign {by_selector.short_id} on {by_selector.target_label} waits for your approval",
        ]
    )
    # Every host holding a model: no group, no labels, so only the rest hears of it.
    assert got["rest"] == [f"Campaign {by_model.short_id} on {by_model.target_label} waits for your approval"]


def test_a_campaign_halting_routes_by_its_group_too(
    fleet, receiver, operator, approver, host_queue, django_capture_on_commit_callbacks
):
    hook("eu", receiver, (Event.CAMPAIGN_HALTED, Scope.GROUP, "prod-eu"))
    hook("us", receiver, (Event.CAMPAIGN_HALTED, Scope.GROUP, "prod-us"))
    host_queue("ocr-eu-1")
    prod_eu = labels.HostGroup.objects.get(name="prod-eu")
    campaign = rollout.propose(
        campaign_spec(target_kind=Campaign.Target.GROUP, group=prod_eu), user=operator, reason="old"
    )
    with django_capture_on_commit_callbacks(execute=True):
        rollout.approve(campaign.id, approver)
        rollout.halt(campaign.id, approver, comment="wrong model")
    deliver_all()
    assert received(receiver) == {"eu": [f"Campaign {campaign.short_id} on group prod-eu halted"]}
    mail = Notification.objects.get(event=Event.CAMPAIGN_HALTED, kind=Notification.Kind.EMAIL)
    assert mail.user == operator and "halted by alice: wrong model" in mail.body  # the approver halted


def test_deleting_a_group_drops_its_routes_and_its_hosts_fall_to_the_rest(fleet, receiver, approver):
    hook("eu", receiver, (Event.HOST_OFFLINE, Scope.GROUP, "prod-eu"))
    hook("rest", receiver, (Event.HOST_OFFLINE, Scope.REST))
    labels.delete_group(labels.HostGroup.objects.get(name="prod-eu"), approver)
    assert not WebhookRoute.objects.filter(webhook__name="eu").exists()
    assert [h.name for h in webhooks_for(Event.HOST_OFFLINE, About.host("ocr-eu-1"))] == ["rest"]


def test_the_webhooks_page_adds_routes_refuses_bad_ones_and_never_shows_the_url(
    client_for, approver, operator, fleet
):
    client = client_for(approver)
    assert client_for(operator).get("/settings/webhooks/").status_code == 403
    response = client.post(
        "/settings/webhooks/add/", {"name": "ops-eu", "url": "json://127.0.0.1:9/hooks/very-secret-token"}
    )
    assert response.status_code == 302
    assert client.post("/settings/webhooks/add/", {"name": "x", "url": "nonsense"}).status_code == 302
    assert not WebhookChannel.objects.filter(name="x").exists()
    add = {"webhook": "ops-eu", "event": Event.HOST_OFFLINE.value, "scope": "group", "group": "prod-eu"}
    assert client.post("/settings/webhooks/routes/add/", add).status_code == 302
    # A group route without its group, labels that are not key=value: refused, nothing stored.
    client.post("/settings/webhooks/routes/add/", add | {"group": ""})
    client.post("/settings/webhooks/routes/add/", add | {"scope": "labels", "selector": "prod"})
    client.post("/settings/webhooks/routes/add/", add | {"scope": "labels", "selector": "env=prod"})
    routes = {(r.scope, r.group.name if r.group else "", str(r.selector)) for r in WebhookRoute.objects.all()}
    assert routes == {("group", "prod-eu", "{}"), ("labels", "", "{'env': 'prod'}")}
    page = client.get("/settings/webhooks/").content.decode()
    assert "very-secret-token" not in page and "json://127.0.0.1:9/h…s/v…n" in page
    assert "hosts of group prod-eu" in page and "hosts with labels env=prod" in page
    route = WebhookRoute.objects.get(scope="labels")
    assert client.post(f"/settings/webhooks/routes/{route.id}/delete/").status_code == 302
    assert (
        client.post("/settings/webhooks/change/", {"webhook": "ops-eu", "do": "disable"}).status_code == 302
    )
    assert not WebhookChannel.objects.get(name="ops-eu").enabled
    said = list(
        AuditEvent.objects.filter(action=AuditEvent.Action.SETTINGS_CHANGED, actor=approver.username)
        .order_by("at")
        .values_list("details__what", flat=True)
    )
    assert said == [
        "webhook ops-eu added",
        "webhook ops-eu: route added",
        "webhook ops-eu: route added",
        "webhook ops-eu: route removed",
        "webhook ops-eu disabled",
    ]
    assert not any("very-secret-token" in str(e.details) for e in AuditEvent.objects.all())
    assert (
        client_for(operator)
        .post("/settings/webhooks/change/", {"webhook": "ops-eu", "do": "delete"})
        .status_code
        == 403
    )
    assert client.post("/settings/webhooks/change/", {"webhook": "ops-eu", "do": "delete"}).status_code == 302
    assert not WebhookChannel.objects.exists() and not WebhookRoute.objects.exists()
