"""Every page needs a login and a role; every mutating view refuses GET.

One table of URLs, so a page added without its checks is caught here.
"""

from __future__ import annotations

import pytest
from django.urls import reverse

from models_admin.approvals import workflow

READ_PAGES = [
    ("ocrdash-fleet", {}),
    ("ocrdash-fleet-rows", {}),
    ("ocrdash-host", {"name": "ocr-1"}),
    ("ocrdash-models", {}),
    ("ocrdash-model", {"key": "en_ocr_v1.gguf"}),
    ("ocrdash-requests", {}),
    ("ocrdash-request", {"request_id": None}),
    ("ocrdash-audit", {}),
    ("ocrdash-audit-export", {}),
    ("ocrdash-rejected-reports", {}),
]
MUTATIONS = [
    ("ocrdash-host-propose", {"name": "ocr-1"}),
    ("ocrdash-host-propose-policy", {"name": "ocr-1"}),
    ("ocrdash-host-inventory", {"name": "ocr-1"}),
    ("ocrdash-host-free", {"name": "ocr-1"}),
    ("ocrdash-host-accept", {"name": "ocr-1"}),
    ("ocrdash-host-retire", {"name": "ocr-1"}),
    ("ocrdash-host-revoke-key", {"name": "ocr-1"}),
    ("ocrdash-enrollment-create", {}),
    ("ocrdash-request-approve", {"request_id": None}),
    ("ocrdash-request-reject", {"request_id": None}),
    ("ocrdash-request-restore", {"request_id": None}),
]


@pytest.fixture
def url_for(make_host, operator):
    host = make_host("ocr-1")
    prune = workflow.propose(
        host=host, files=list(host.current_snapshot.files.all()), reason="r", user=operator
    )

    def build(name: str, kwargs: dict) -> str:
        kwargs = {k: (prune.id if v is None else v) for k, v in kwargs.items()}
        return reverse(name, kwargs=kwargs)

    return build


@pytest.mark.parametrize(("name", "kwargs"), READ_PAGES + MUTATIONS)
def test_it_sends_anonymous_users_to_login(client, url_for, name, kwargs):
    url = url_for(name, kwargs)
    response = client.post(url) if (name, kwargs) in MUTATIONS else client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize(("name", "kwargs"), READ_PAGES)
def test_it_refuses_users_without_a_role(client_for, outsider, url_for, name, kwargs):
    assert client_for(outsider).get(url_for(name, kwargs)).status_code == 403


@pytest.mark.parametrize(("name", "kwargs"), READ_PAGES)
def test_it_shows_every_page_to_a_viewer(client_for, viewer, url_for, name, kwargs):
    assert client_for(viewer).get(url_for(name, kwargs)).status_code == 200


@pytest.mark.parametrize(("name", "kwargs"), MUTATIONS)
def test_it_refuses_get_on_mutations(client_for, approver2, url_for, name, kwargs):
    assert client_for(approver2).get(url_for(name, kwargs)).status_code == 405


@pytest.mark.parametrize(("name", "kwargs"), MUTATIONS)
def test_it_refuses_mutations_to_a_viewer(client_for, viewer, url_for, name, kwargs):
    assert client_for(viewer).post(url_for(name, kwargs)).status_code == 403


def test_it_renders_the_login_page_styled(client):
    response = client.get(reverse("login"))
    assert response.status_code == 200
    assert b"bootstrap.min.css" in response.content
    assert b'name="csrfmiddlewaretoken"' in response.content


def test_it_shows_the_nav_with_a_pending_badge_and_a_post_logout(client_for, viewer, url_for):
    body = client_for(viewer).get(reverse("ocrdash-fleet")).content.decode()
    assert 'action="/accounts/logout/"' in body and 'method="post"' in body
    assert "vera" in body and "viewer" in body
    assert 'title="1 request waiting for an approver">1</span>' in body
