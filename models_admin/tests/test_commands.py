"""Management commands a setup script uses: create_user, accept_host, retire_host."""

from __future__ import annotations

import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.db import connection
from rest_framework.exceptions import AuthenticationFailed

from models_admin.api.tokens import DigestTokenAuthentication
from models_admin.models import AuditEvent, Host
from models_admin.security.roles import Action, can

pytestmark = pytest.mark.django_db


def run(*args, **env) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue().strip()


def groups(username: str) -> list[str]:
    return sorted(User.objects.get(username=username).groups.values_list("name", flat=True))


def test_create_user_is_idempotent_and_updates_roles_and_password():
    run("create_user", "carol", "--role", "operator", "--password", "first-secret-1")
    run("create_user", "carol", "--role", "operator", "--password", "first-secret-1")
    assert User.objects.filter(username="carol").count() == 1
    assert groups("carol") == ["operator", "viewer"]

    run("create_user", "carol", "--role", "approver", "--password", "second-secret-2")

    carol = User.objects.get(username="carol")
    assert groups("carol") == ["approver", "viewer"]
    assert carol.check_password("second-secret-2")
    assert can(carol, Action.APPROVE) and not can(carol, Action.PROPOSE)


def test_create_user_without_role_keeps_roles(monkeypatch):
    run("create_user", "dan", "--role", "approver")
    monkeypatch.setenv("DAN_PASSWORD", "from-the-environment")
    run("create_user", "dan", "--password-env", "DAN_PASSWORD")
    dan = User.objects.get(username="dan")
    assert groups("dan") == ["approver", "viewer"]
    assert dan.check_password("from-the-environment")


def test_create_user_refuses_an_empty_password_variable(monkeypatch):
    monkeypatch.delenv("NOPE", raising=False)
    with pytest.raises(CommandError, match="NOPE"):
        run("create_user", "x", "--password-env", "NOPE")
    assert not User.objects.filter(username="x").exists()


def test_create_user_token_is_shown_once_and_a_new_one_replaces_it():
    first = run("create_user", "bot", "--role", "viewer", "--token")
    second = run("create_user", "bot", "--token")
    assert first != second and first.startswith("ocd_")
    auth = DigestTokenAuthentication()
    assert auth.authenticate_credentials(second)[0].username == "bot"
    with pytest.raises(AuthenticationFailed):
        auth.authenticate_credentials(first)


def test_create_user_superuser_flag():
    run("create_user", "root", "--superuser")
    assert User.objects.get(username="root").is_superuser
    run("create_user", "root", "--no-superuser")
    assert not User.objects.get(username="root").is_superuser


def test_accept_host_activates_a_pending_host_and_audits(make_host, approver):
    make_host("ocr-new", status=Host.Status.PENDING)

    assert run("accept_host", "ocr-new", "--by", approver.username) == "ocr-new: pending -> active"

    host = Host.objects.get(name="ocr-new")
    assert host.status == Host.Status.ACTIVE and host.accepted_by == approver.username
    event = AuditEvent.objects.get(action=AuditEvent.Action.HOST_ACCEPTED)
    assert event.actor == approver.username and event.host == "ocr-new"


def test_accept_host_by_system_and_unknown_names(make_host):
    make_host("ocr-new", status=Host.Status.PENDING)
    run("accept_host", "ocr-new")
    assert AuditEvent.objects.get(action=AuditEvent.Action.HOST_ACCEPTED).actor == "system"
    with pytest.raises(CommandError, match="no host"):
        run("accept_host", "ghost")
    with pytest.raises(CommandError, match="no user"):
        run("accept_host", "ocr-new", "--by", "ghost")


def test_retire_host(make_host):
    make_host("ocr-1")
    assert run("retire_host", "ocr-1") == "ocr-1: active -> retired"
    assert AuditEvent.objects.filter(action=AuditEvent.Action.HOST_RETIRED, host="ocr-1").exists()


def test_accept_host_on_a_host_without_a_key_ends_in_one_line(db):
    """Case 10: this once ended in a traceback of workflow.NotAllowed."""
    Host.objects.create(name="ocr-nokey", status=Host.Status.PENDING)
    with pytest.raises(CommandError) as exc:
        call_command("accept_host", "ocr-nokey", stdout=StringIO())
    assert "has no enrolled key" in str(exc.value)
    assert "\n" not in str(exc.value)
    assert Host.objects.get(name="ocr-nokey").status == Host.Status.PENDING


def test_every_command_turns_a_domain_refusal_into_a_command_error():
    from django.core.management import get_commands, load_command_class

    from models_admin.management.base import DomainCommand

    ours = [name for name, app in get_commands().items() if app == "models_admin"]
    assert ours
    for name in ours:
        assert isinstance(load_command_class("models_admin", name), DomainCommand), name


@pytest.mark.django_db(transaction=True)
def test_a_refused_command_run_as_a_process_ends_in_one_line_without_a_traceback():
    """Case 10, as an operator meets it: ``manage.py accept_host`` on a host without a key, a
    real process on the test database, says why on one line of stderr and exits 1."""
    Host.objects.create(name="ocr-nokey-proc", status=Host.Status.PENDING)
    db = connection.settings_dict
    url = f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "ocrdash.settings_test", "OCRDASH_TEST_DATABASE_URL": url}
    done = subprocess.run(
        [sys.executable, "manage.py", "accept_host", "ocr-nokey-proc"],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    [line] = done.stderr.strip().splitlines()
    assert "has no enrolled key" in line
    assert Host.objects.get(name="ocr-nokey-proc").status == Host.Status.PENDING
