"""Labels and groups: selectors match approver-set labels only, with an audit trail."""

from __future__ import annotations

import pytest

from models_admin.fleet import labels
from models_admin.models import AuditEvent, Host, HostGroup

pytestmark = pytest.mark.django_db


def test_selectors_parse_and_bad_ones_say_why() -> None:
    assert labels.parse_selector("env=prod, region=eu") == {"env": "prod", "region": "eu"}
    assert labels.format_selector({"region": "eu", "env": "prod"}) == "env=prod,region=eu"
    for bad, why in (
        ("env", "key=value"),
        ("Env=x", "lower-case"),
        ("env=a b", "value"),
        ("a=1,a=2", "twice"),
    ):
        with pytest.raises(labels.LabelError, match=why):
            labels.parse_selector(bad)


def test_set_labels_is_audited_and_matching_ignores_reported_labels(make_host, approver) -> None:
    a, b, c = make_host("ocr-a"), make_host("ocr-b"), make_host("ocr-c")
    labels.set_labels(a, {"env": "prod", "region": "eu"}, approver)
    labels.set_labels(b, {"env": "prod", "region": "us"}, approver)
    # ocr-c says it is prod itself: that is shown, never matched.
    Host.objects.filter(pk=c.pk).update(reported_labels={"env": "prod", "region": "eu"})
    prod_eu = labels.matching(Host.objects.all(), {"env": "prod", "region": "eu"})
    assert list(prod_eu.values_list("name", flat=True)) == ["ocr-a"]
    assert set(labels.matching(Host.objects.all(), {"env": "prod"}).values_list("name", flat=True)) == {
        "ocr-a",
        "ocr-b",
    }
    event = AuditEvent.objects.filter(action=AuditEvent.Action.HOST_LABELED, host="ocr-a").get()
    assert event.details == {"before": {}, "after": {"env": "prod", "region": "eu"}}
    labels.set_labels(a, {"env": "prod", "region": "eu"}, approver)  # unchanged: no new event
    assert AuditEvent.objects.filter(action=AuditEvent.Action.HOST_LABELED, host="ocr-a").count() == 1
    with pytest.raises(labels.LabelError):
        labels.set_labels(a, {"Bad": "x"}, approver)


def test_groups_are_a_selector_or_a_list(make_host, approver) -> None:
    a, b = make_host("ocr-a"), make_host("ocr-b")
    labels.set_labels(a, {"env": "prod"}, approver)
    by_label = labels.save_group("prod", selector={"env": "prod"}, user=approver)
    listed = labels.save_group("pair", hosts=["ocr-a", "ocr-b"], user=approver)
    assert list(labels.group_hosts(by_label, Host.objects.all()).values_list("name", flat=True)) == ["ocr-a"]
    assert set(labels.group_hosts(listed, Host.objects.all()).values_list("name", flat=True)) == {
        "ocr-a",
        "ocr-b",
    }
    labels.set_labels(b, {"env": "prod"}, approver)  # a selector group follows the labels
    assert labels.group_hosts(by_label, Host.objects.all()).count() == 2
    for kwargs, why in (
        ({"name": "Bad Name", "selector": {"env": "x"}}, "group name"),
        ({"name": "both", "selector": {"env": "x"}, "hosts": ["ocr-a"]}, "not both"),
        ({"name": "none"}, "selector"),
        ({"name": "ghost", "hosts": ["ocr-zzz"]}, "no such host"),
    ):
        with pytest.raises(labels.LabelError, match=why):
            labels.save_group(user=approver, **kwargs)
    labels.delete_group(listed, approver)
    assert not HostGroup.objects.filter(name="pair").exists()
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {AuditEvent.Action.GROUP_SAVED, AuditEvent.Action.GROUP_DELETED} <= actions
