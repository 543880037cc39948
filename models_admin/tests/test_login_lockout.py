"""Finding 1: a password guesser is locked out, by user name and by address, and the audit
trail stays bounded however long it guesses. Before: 50 wrong passwords, then the right one
logged in, and each failure added an audit row."""

from __future__ import annotations

import io

import pytest
from axes.models import AccessAttempt
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from models_admin.models import AuditEvent
from models_admin.security import logins

from .conftest import PASSWORD

Action = AuditEvent.Action
pytestmark = pytest.mark.django_db
LOGIN = reverse("login")


def attempt(client: Client, username: str, password: str, address: str = "10.0.0.1"):
    return client.post(LOGIN, {"username": username, "password": password}, REMOTE_ADDR=address)


def test_fifty_wrong_passwords_then_the_right_one_stays_locked_out(viewer, settings):
    client = Client()
    for _ in range(50):
        assert attempt(client, viewer.username, "wrong").status_code in (200, 429)

    response = attempt(client, viewer.username, PASSWORD)

    assert response.status_code == 429
    page = response.content.decode()
    assert "Too many failed logins" in page and f"After {settings.AXES_FAILURE_LIMIT} wrong passwords" in page
    assert "15 minutes" in page and 'name="password"' in page  # the login form, with the message
    assert "_auth_user_id" not in client.session


def test_a_user_name_is_locked_whatever_address_guesses_it(viewer, settings):
    for i in range(settings.AXES_FAILURE_LIMIT):
        attempt(Client(), viewer.username, "wrong", address=f"10.0.1.{i}")
    assert attempt(Client(), viewer.username, PASSWORD, address="10.0.9.9").status_code == 429


def test_an_address_is_locked_whatever_user_names_it_tries(viewer, operator, settings):
    for i in range(settings.AXES_FAILURE_LIMIT):
        attempt(Client(), f"nobody-{i}", "wrong", address="10.0.2.2")
    # Even a real user with the right password, from that address ...
    assert attempt(Client(), operator.username, PASSWORD, address="10.0.2.2").status_code == 429
    # ... while the same user from elsewhere logs in.
    assert attempt(Client(), operator.username, PASSWORD, address="10.0.3.3").status_code == 302


def test_a_client_cannot_dodge_the_address_lock_with_a_forwarded_header(viewer, settings):
    for i in range(settings.AXES_FAILURE_LIMIT):
        Client().post(
            LOGIN,
            {"username": f"nobody-{i}", "password": "wrong"},
            REMOTE_ADDR="10.0.4.4",
            HTTP_X_FORWARDED_FOR=f"192.0.2.{i}",
        )
    assert attempt(Client(), viewer.username, PASSWORD, address="10.0.4.4").status_code == 429


def test_an_administrator_unlocks_a_user_name(viewer, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        attempt(Client(), viewer.username, "wrong")
    assert attempt(Client(), viewer.username, PASSWORD, address="10.0.5.5").status_code == 429

    call_command("axes_reset_username", viewer.username, stdout=io.StringIO())

    assert attempt(Client(), viewer.username, PASSWORD, address="10.0.5.5").status_code == 302


def test_the_django_admin_lists_and_deletes_lockouts(viewer, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        attempt(Client(), viewer.username, "wrong")
    admin = Client()
    admin.force_login(User.objects.create_superuser("root", "root@example.com", "x" * 20))
    page = admin.get("/admin/axes/accessattempt/")
    assert page.status_code == 200 and viewer.username in page.content.decode()
    attempt_id = AccessAttempt.objects.get(username=viewer.username).pk
    response = admin.post(
        "/admin/axes/accessattempt/",
        {"action": "delete_selected", "_selected_action": [attempt_id], "post": "yes"},
    )
    assert response.status_code == 302 and not AccessAttempt.objects.exists()
    assert attempt(Client(), viewer.username, PASSWORD, address="10.0.6.6").status_code == 302


def test_failed_logins_leave_a_bounded_audit_trail(viewer):
    client = Client()
    for _ in range(50):
        attempt(client, viewer.username, "wrong")

    failed = AuditEvent.objects.filter(action=Action.LOGIN_FAILED)
    locked = AuditEvent.objects.filter(action=Action.LOGIN_LOCKED_OUT)
    assert failed.count() == 1 and locked.count() == 1
    assert failed.get().actor == viewer.username and failed.get().details["remote_addr"] == "10.0.0.1"
    assert "wrong" not in str(failed.get().details)


def test_many_names_from_many_addresses_are_capped_per_minute(db):
    for i in range(3 * logins.LOGIN_AUDIT_PER_MINUTE):
        attempt(Client(), f"nobody-{i}", "wrong", address=f"10.1.{i // 200}.{i % 200}")
    assert AuditEvent.objects.filter(action=Action.LOGIN_FAILED).count() == logins.LOGIN_AUDIT_PER_MINUTE


def test_a_success_resets_the_count(viewer, settings):
    client = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        attempt(client, viewer.username, "wrong")
    assert attempt(client, viewer.username, PASSWORD).status_code == 302
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        attempt(Client(), viewer.username, "wrong")
    assert attempt(Client(), viewer.username, PASSWORD).status_code == 302
