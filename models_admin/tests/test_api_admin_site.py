"""The Django admin is a read-only window: audit events cannot be added, changed or deleted."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from models_admin.models import AuditEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def root(db) -> User:
    return User.objects.create_superuser("root", "root@example.com", "pw-for-root-1")


def test_the_audit_admin_lists_but_never_writes(root, client_for, make_host):
    make_host("ocr-1")
    event = AuditEvent.record(AuditEvent.Action.HOST_ACCEPTED, actor="alice", host="ocr-1")
    admin = client_for(root)

    assert admin.get("/admin/models_admin/auditevent/").status_code == 200
    assert admin.get("/admin/models_admin/auditevent/add/").status_code == 403
    assert admin.get(f"/admin/models_admin/auditevent/{event.pk}/delete/").status_code == 403
    change = admin.post(f"/admin/models_admin/auditevent/{event.pk}/change/", {"actor": "mallory"})
    assert change.status_code == 403
    event.refresh_from_db()
    assert event.actor == "alice"


@pytest.mark.parametrize("model", ["host", "snapshot", "prunerequest", "receivedreport"])
def test_every_model_page_opens(root, client_for, make_host, model):
    make_host("ocr-1")
    assert client_for(root).get(f"/admin/models_admin/{model}/").status_code == 200
