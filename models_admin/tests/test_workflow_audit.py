"""The audit trail is append-only: through the ORM, and on PostgreSQL through SQL too."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied
from django.db import DatabaseError, connection, transaction

from models_admin.models import AuditEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def event() -> AuditEvent:
    return AuditEvent.record(AuditEvent.Action.HOST_ACCEPTED, actor="alice", host="ocr-1")


def test_the_orm_refuses_to_change_or_delete_events(event):
    event.actor = "mallory"
    with pytest.raises(PermissionDenied):
        event.save()
    with pytest.raises(PermissionDenied):
        event.delete()
    with pytest.raises(PermissionDenied):
        AuditEvent.objects.filter(pk=event.pk).update(actor="mallory")
    with pytest.raises(PermissionDenied):
        AuditEvent.objects.all().delete()
    event.refresh_from_db()
    assert event.actor == "alice"


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the trigger exists on PostgreSQL only")
@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE models_admin_auditevent SET actor = 'mallory' WHERE id = %s",
        "DELETE FROM models_admin_auditevent WHERE id = %s",
    ],
)
def test_postgresql_refuses_raw_sql_changes(event, sql):
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cur:
        cur.execute(sql, [event.pk])
    event.refresh_from_db()
    assert event.actor == "alice"
