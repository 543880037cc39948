"""Every Host transition of fleet/hosts.py: what it does, what it refuses, and how it races.

The refusals are DomainErrors (HostNotAllowed, HostWrongState) whose message is what a page,
the API and a command show. The races run on PostgreSQL with two real connections released
together by a barrier: every transition takes the host row first, so of two decisions made at
once the second sees the first's result.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from io import StringIO
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction

from models_admin.approvals import workflow
from models_admin.errors import DomainError, HostError, HostNotAllowed, HostWrongState, NotAllowed, WrongState
from models_admin.fleet import hosts, trust
from models_admin.models import AuditEvent, Host, HostKey, ModelSummary, PruneRequest
from workers.signing.keys import key_fingerprint, public_key_text

A = AuditEvent.Action
Status = Host.Status


def add_candidate(host: Host) -> str:
    """A new key enrolled over the host's active one; returns its fingerprint."""
    key = Ed25519PrivateKey.generate()
    HostKey.objects.create(
        host=host, public_key=public_key_text(key), fingerprint=key_fingerprint(key), candidate=True
    )
    return key_fingerprint(key)


def pending_enrollment(approver, host_name: str = "") -> trust.PendingEnrollment:
    """What ``trust.authenticate`` hands ingest for a report that proved a key and a token."""
    row, _text = trust.create_token(approver.username, host_name=host_name)
    key = Ed25519PrivateKey.generate()
    return trust.PendingEnrollment(public_key_text(key), key_fingerprint(key), row.id, row.fingerprint)


def enroll(host: Host, pending: trust.PendingEnrollment) -> HostKey | None:
    with transaction.atomic():
        return hosts.enroll(hosts.lock_host(host), pending, report_id="r-1")


def audits(action: str, host: Host) -> int:
    return AuditEvent.objects.filter(action=action, host=host.name).count()


# ---------------------------------------------------------------- accept and retire


@pytest.mark.django_db
def test_accepting_a_pending_host_with_a_key_makes_it_active_once(make_host, approver):
    host = make_host("ocr-1", status=Status.PENDING)
    accepted = hosts.accept_host(host, approver)
    assert accepted.status == Status.ACTIVE and accepted.accepted_by == approver.username
    assert audits(A.HOST_ACCEPTED, host) == 1
    # Accepting an active host changes nothing and audits nothing.
    hosts.accept_host(accepted, approver)
    assert audits(A.HOST_ACCEPTED, host) == 1


@pytest.mark.django_db
def test_it_refuses_to_accept_a_host_without_a_key(approver):
    host = Host.objects.create(name="ocr-nokey", status=Status.PENDING)
    with pytest.raises(HostNotAllowed, match="ocr-nokey has no enrolled key") as refused:
        hosts.accept_host(host, approver)
    # One family for every caller: pages, the API (403) and commands catch DomainError.
    assert isinstance(refused.value, HostError | NotAllowed | DomainError)
    host.refresh_from_db()
    assert host.status == Status.PENDING and audits(A.HOST_ACCEPTED, host) == 0


@pytest.mark.django_db
def test_retiring_expires_the_proposals_and_takes_the_files_off_the_models_pages(
    make_host, operator, approver
):
    host = make_host("ocr-1")
    request = workflow.propose(
        host=host,
        files=[host.current_snapshot.files.get(path="old_fr_ocr_v1.bin")],
        reason="old",
        user=operator,
    )
    assert ModelSummary.objects.get(name="en_ocr_v1.gguf").hosts == 1

    retired = hosts.retire_host(host, approver)

    assert retired.status == Status.RETIRED
    request.refresh_from_db()
    assert request.state == PruneRequest.State.EXPIRED
    assert not request.items.filter(open_on_host__isnull=False).exists()
    assert not ModelSummary.objects.filter(name="en_ocr_v1.gguf").exists()
    assert audits(A.HOST_RETIRED, host) == 1
    # Retiring a retired host changes nothing.
    hosts.retire_host(retired, approver)
    assert audits(A.HOST_RETIRED, host) == 1


@pytest.mark.django_db
def test_accepting_a_retired_host_brings_its_files_back(make_host, approver):
    host = hosts.retire_host(make_host("ocr-1"), approver)
    back = hosts.accept_host(host, approver)
    assert back.status == Status.ACTIVE
    assert ModelSummary.objects.get(name="en_ocr_v1.gguf").hosts == 1


@pytest.mark.django_db
def test_a_proposal_for_a_retired_host_is_refused(make_host, operator, approver):
    host = hosts.retire_host(make_host("ocr-1"), approver)
    with pytest.raises(workflow.WorkflowError, match="ocr-1 is retired"):
        workflow.propose(
            host=host, files=list(host.current_snapshot.files.all()[:1]), reason="late", user=operator
        )


# ---------------------------------------------------------------- keys


@pytest.mark.django_db
def test_enrolling_a_new_host_gives_it_an_active_key_and_uses_the_token(approver):
    host = Host.objects.create(name="ocr-new", status=Status.PENDING)
    pending = pending_enrollment(approver)
    key = enroll(host, pending)
    assert key is not None and not key.candidate and host.active_key == key
    assert host.status == Status.PENDING  # an approver still accepts the host
    # The same agent's next report with the same enrollment changes nothing.
    assert enroll(host, pending) is None
    # A used token enrolls nothing more: the report is refused, not shown to a user.
    second = trust.PendingEnrollment(
        public_key_text(Ed25519PrivateKey.generate()), "f" * 16, pending.token_id, pending.token_fingerprint
    )
    with pytest.raises(trust.Untrusted, match="used or revoked meanwhile"):
        enroll(host, second)


@pytest.mark.django_db
def test_a_key_enrolled_over_an_active_one_waits_as_a_candidate(make_host, approver):
    host = make_host("ocr-1")
    old = host.active_key
    key = enroll(host, pending_enrollment(approver, host_name="ocr-1"))
    assert key is not None and key.candidate
    assert host.active_key == old and host.candidate_key == key
    host.refresh_from_db()
    assert host.status == Status.ACTIVE


@pytest.mark.django_db
def test_accepting_the_new_key_revokes_the_old_one(make_host, approver):
    host = make_host("ocr-1")
    old = host.active_key.fingerprint
    new = add_candidate(host)
    assert hosts.accept_new_key(host, approver.username).fingerprint == new
    assert host.active_key.fingerprint == new and host.candidate_key is None
    assert HostKey.objects.get(fingerprint=old).revoked_at is not None
    with pytest.raises(HostWrongState, match="ocr-1 has no new key waiting"):
        hosts.accept_new_key(host, approver.username)


@pytest.mark.django_db
def test_refusing_the_new_key_keeps_the_old_one(make_host, approver):
    host = make_host("ocr-1")
    old = host.active_key.fingerprint
    add_candidate(host)
    hosts.reject_new_key(host, approver.username)
    assert host.active_key.fingerprint == old and host.candidate_key is None
    with pytest.raises(HostWrongState, match="ocr-1 has no new key waiting"):
        hosts.reject_new_key(host, approver.username)


@pytest.mark.django_db
def test_revoking_the_key_sends_an_active_host_back_to_pending(make_host, approver):
    host = make_host("ocr-1")
    fingerprint = host.active_key.fingerprint
    assert hosts.revoke_key(host, approver.username).fingerprint == fingerprint
    host.refresh_from_db()
    assert host.status == Status.PENDING and host.active_key is None
    with pytest.raises(HostWrongState, match="ocr-1 has no active key") as refused:
        hosts.revoke_key(host, approver.username)
    assert isinstance(refused.value, WrongState)
    # Accepting it now is refused too: there is no key to read its answers with.
    with pytest.raises(HostNotAllowed):
        hosts.accept_host(host, approver)


@pytest.mark.django_db
def test_refusing_and_revoking_each_take_only_their_own_key(make_host, approver):
    """Both go through one revocation step: a refusal leaves the host and its active key as
    they were and marks its event as the candidate's; a revocation takes the active key only,
    the candidate still waiting, and sends the host back to pending."""
    host = make_host("ocr-1")
    old = host.active_key.fingerprint
    refused = add_candidate(host)
    assert hosts.reject_new_key(host, approver.username).fingerprint == refused
    host.refresh_from_db()
    assert host.status == Status.ACTIVE and host.active_key.fingerprint == old
    assert HostKey.objects.get(fingerprint=refused).revoked_by == approver.username

    waiting = add_candidate(host)
    assert hosts.revoke_key(host, approver.username).fingerprint == old
    host.refresh_from_db()
    assert host.status == Status.PENDING and host.active_key is None
    assert host.candidate_key.fingerprint == waiting
    events = AuditEvent.objects.filter(action=A.HOST_KEY_REVOKED, host="ocr-1").order_by("id")
    assert [(e.actor, e.details) for e in events] == [
        (approver.username, {"fingerprint": refused, "candidate": True, "status": Status.ACTIVE}),
        (approver.username, {"fingerprint": old, "status": Status.PENDING}),
    ]


@pytest.mark.django_db
def test_a_refused_transition_ends_a_command_in_one_line(make_host):
    host = make_host("ocr-1")
    call_command("revoke_host_key", "ocr-1", stdout=StringIO())
    with pytest.raises(CommandError) as refused:
        call_command("revoke_host_key", "ocr-1", stdout=StringIO())
    assert str(refused.value) == "ocr-1 has no active key"
    host.refresh_from_db()
    assert host.status == Status.PENDING


# ---------------------------------------------------------------- races (two connections)


def race(*steps: Callable[[], Any]) -> list[Any]:
    """Run each step on its own thread (its own connection), released together by a barrier;
    each returns its value or the exception it raised."""
    barrier = threading.Barrier(len(steps))
    results: list[Any] = [None] * len(steps)

    def run(i: int, step: Callable[[], Any]) -> None:
        try:
            barrier.wait()
            results[i] = step()
        except Exception as exc:  # the outcome under test, compared by the caller
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, s)) for i, s in enumerate(steps)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a racer is stuck (deadlock?)"
    return results


@pytest.mark.django_db(transaction=True)
def test_two_approvers_accepting_one_new_key_at_once_accept_it_once(make_host, approver):
    for attempt in range(5):
        host = make_host(f"ocr-{attempt}")
        new = add_candidate(host)
        results = race(*[lambda host=host: hosts.accept_new_key(host, approver.username)] * 2)
        accepted = [r for r in results if isinstance(r, HostKey)]
        refused = [r for r in results if isinstance(r, HostWrongState)]
        assert len(accepted) == 1 and len(refused) == 1, (attempt, results)
        assert accepted[0].fingerprint == new
        assert list(
            HostKey.objects.filter(host=host, revoked_at__isnull=True).values_list("fingerprint", "candidate")
        ) == [(new, False)]
        assert audits(A.HOST_KEY_ACCEPTED, host) == 1


@pytest.mark.django_db(transaction=True)
def test_accepting_a_host_while_its_key_is_revoked_never_leaves_it_active_without_a_key(make_host, approver):
    """Without the host lock, accept could read the key, revoke remove it, and accept then
    make the host active with no key to read its answers: orders out, nothing back."""
    for attempt in range(5):
        host = make_host(f"ocr-{attempt}", status=Status.PENDING)
        accepted, revoked = race(
            lambda: hosts.accept_host(host, approver),  # noqa: B023  (joined before the next round)
            lambda: hosts.revoke_key(host, approver.username),  # noqa: B023
        )
        assert isinstance(revoked, HostKey), (attempt, revoked)
        # Either accept came first (and the revocation sent the host back), or it found no key.
        assert isinstance(accepted, Host | HostNotAllowed), (attempt, accepted)
        host.refresh_from_db()
        assert host.status == Status.PENDING and host.active_key is None, (attempt, accepted)
