"""The account page makes and revokes the user's own API token; the key is shown once."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse

from models_admin.models import ApiToken, AuditEvent

pytestmark = pytest.mark.django_db


def _key(html: str) -> str:
    match = re.search(r'id="new-api-token">([^<]+)<', html)
    assert match, "the new key is not on the page"
    return match.group(1)


def _api(key: str) -> int:
    return Client().get("/api/hosts/", HTTP_AUTHORIZATION=f"Token {key}").status_code


def test_a_user_makes_replaces_and_revokes_their_token(client_for, operator):
    client = client_for(operator)
    assert "You have no API token." in client.get(reverse("ocrdash-account")).content.decode()

    made = client.post(reverse("ocrdash-api-token-create"))
    assert "no-store" in made["Cache-Control"]
    first = _key(made.content.decode())
    assert _api(first) == 200
    page = client.get(reverse("ocrdash-account")).content.decode()
    assert first not in page and f"<code>{first[:8]}…</code>" in page  # shown once, then only its prefix

    second = _key(client.post(reverse("ocrdash-api-token-create")).content.decode())
    assert second != first and _api(first) == 401 and _api(second) == 200

    revoked = client.post(reverse("ocrdash-api-token-revoke"), follow=True)
    assert "API token revoked" in revoked.content.decode()
    assert _api(second) == 401 and not ApiToken.objects.filter(user=operator).exists()
    actions = list(AuditEvent.objects.filter(actor=operator.username).values_list("action", flat=True))
    assert actions.count(AuditEvent.Action.API_TOKEN_ISSUED) == 2
    assert actions.count(AuditEvent.Action.API_TOKEN_REVOKED) == 1
    assert not [e for e in AuditEvent.objects.all() if first in str(e.details) or second in str(e.details)]


def test_token_changes_are_post_only_and_need_a_login(client_for, operator):
    assert client_for(operator).get(reverse("ocrdash-api-token-create")).status_code == 405
    anonymous = Client().post(reverse("ocrdash-api-token-create"))
    assert anonymous.status_code == 302 and not ApiToken.objects.exists()
