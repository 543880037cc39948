"""Re-keying a live host: both fingerprints on its page, one decision, taken under a lock."""

from __future__ import annotations

import threading

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.management import call_command
from django.db import connection
from django.urls import reverse

from models_admin.errors import HostWrongState
from models_admin.fleet import hosts
from models_admin.models import AuditEvent, Host, HostKey
from workers.signing.keys import key_fingerprint, public_key_text

Action = AuditEvent.Action


def add_candidate(host: Host) -> Ed25519PrivateKey:
    """A new key enrolled over the host's active one, as a scoped token's enrollment leaves it."""
    key = Ed25519PrivateKey.generate()
    HostKey.objects.create(
        host=host, public_key=public_key_text(key), fingerprint=key_fingerprint(key), candidate=True
    )
    return key


@pytest.mark.django_db
def test_the_host_page_shows_both_fingerprints_and_accepts_the_new_key(client_for, approver, make_host):
    host = make_host("ocr-1")
    old = host.active_key.fingerprint
    new = key_fingerprint(add_candidate(host))
    client = client_for(approver)

    page = client.get(reverse("ocrdash-host", args=["ocr-1"])).content.decode()

    box = page[page.index('id="new-key"') :]
    assert box.index(old) < box.index(new), "current and new fingerprint side by side, current first"
    assert "Accept new key" in box and "Refuse new key" in box
    assert client.post(reverse("ocrdash-host-accept-key", args=["ocr-1"])).status_code == 302
    host.refresh_from_db()
    assert host.active_key.fingerprint == new and host.candidate_key is None
    assert 'id="new-key"' not in client.get(reverse("ocrdash-host", args=["ocr-1"])).content.decode()


@pytest.mark.django_db
def test_an_operator_can_neither_accept_nor_refuse_a_new_key(client_for, operator, make_host):
    host = make_host("ocr-1")
    add_candidate(host)
    client = client_for(operator)
    assert "Accept new key" not in client.get(reverse("ocrdash-host", args=["ocr-1"])).content.decode()
    for name in ("ocrdash-host-accept-key", "ocrdash-host-reject-key"):
        assert client.post(reverse(name, args=["ocr-1"])).status_code == 403
    assert host.candidate_key is not None


@pytest.mark.django_db
def test_each_key_button_says_what_it_did_to_which_key(client_for, approver, make_host):
    host = make_host("ocr-1")
    client = client_for(approver)

    def press(button: str) -> list[str]:
        response = client.post(reverse(button, args=["ocr-1"]), follow=True)
        return [str(m) for m in response.context["messages"]]

    refused = key_fingerprint(add_candidate(host))
    assert press("ocrdash-host-reject-key") == [f"New key {refused} of ocr-1 refused: the old key stays."]
    assert press("ocrdash-host-reject-key") == ["Ocr-1 has no new key waiting for acceptance"]
    new = key_fingerprint(add_candidate(host))
    assert press("ocrdash-host-accept-key") == [
        f"New key {new} of ocr-1 accepted: its old key is no longer valid."
    ]
    assert press("ocrdash-host-revoke-key") == [
        f"Key {new} of ocr-1 revoked: its messages are refused until it enrolls a new key with a new token."
    ]
    assert press("ocrdash-host-revoke-key") == ["Ocr-1 has no active key"]


@pytest.mark.django_db
def test_accept_host_new_key_command(make_host, approver, capsys):
    host = make_host("ocr-1")
    new = key_fingerprint(add_candidate(host))
    call_command("accept_host", "ocr-1", "--new-key", "--by", approver.username)
    assert new in capsys.readouterr().out
    assert host.active_key.fingerprint == new


def _decide(barrier: threading.Barrier, outcomes: dict, name: str, fn, host: Host, actor: str) -> None:
    """One approver's decision on its own connection, released at the same moment as the other's."""
    try:
        barrier.wait()
        fn(host, actor)
        outcomes[name] = "done"
    except HostWrongState:
        outcomes[name] = "refused"
    finally:
        connection.close()


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_accepting_and_refusing_a_new_key_at_once_leave_exactly_one_decision(make_host, approver):
    """Two approvers on two connections: one accepts while the other refuses the same new key.

    Without the host's row lock both could read the candidate, and the host would end with the
    new key both active and revoked, or with no active key at all.
    """
    for _ in range(5):
        Host.objects.filter(name="ocr-1").delete()
        host = make_host("ocr-1")
        old = host.active_key.fingerprint
        new = key_fingerprint(add_candidate(host))
        barrier = threading.Barrier(2)
        outcomes: dict[str, str] = {}
        threads = [
            threading.Thread(target=_decide, args=(barrier, outcomes, name, fn, host, approver.username))
            for name, fn in (("accept", hosts.accept_new_key), ("reject", hosts.reject_new_key))
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

        assert sorted(outcomes.values()) == ["done", "refused"], outcomes
        host.refresh_from_db()
        active = HostKey.objects.get(host=host, revoked_at__isnull=True)
        assert not active.candidate
        assert active.fingerprint == (new if outcomes["accept"] == "done" else old)
