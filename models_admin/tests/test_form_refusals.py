"""A posted form that is refused says why in one flash message: every error of every field,
worded as any refusal is (first letter upper case, the rest as the form wrote it)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from models_admin.notifications import webhooks as hooks_admin

pytestmark = pytest.mark.django_db


def refusal(response) -> list[str]:
    return [str(m) for m in response.context["messages"] if m.level_tag == "error"]


def test_a_webhook_form_says_all_that_is_wrong_at_once(client_for, approver):
    hooks_admin.add_webhook("ops-eu", "json://127.0.0.1:9/hooks/x", user=approver)
    response = client_for(approver).post(
        "/settings/webhooks/add/", {"name": "ops-eu", "url": "nonsense"}, follow=True
    )
    assert refusal(response) == [
        "There is already a webhook named ops-eu; apprise does not know this kind of URL"
    ]


def test_a_group_form_says_why_it_was_refused(client_for, approver):
    response = client_for(approver).post(
        reverse("ocrdash-group-save"), {"name": "", "selector": "env"}, follow=True
    )
    assert refusal(response) == ["This field is required; selector: 'env' is not key=value"]


def test_a_proposal_says_every_reason_it_was_refused(client_for, operator, make_host):
    make_host("ocr-1", {"old_a.bin": 10})
    response = client_for(operator).post(
        reverse("ocrdash-host-propose", args=["ocr-1"]), {"files": ["999999"], "reason": ""}, follow=True
    )
    assert refusal(response) == [
        "Select a valid choice. 999999 is not one of the available choices; a request needs a reason"
    ]
