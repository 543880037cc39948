"""Every Host transition, in one place: accept, retire, enroll a key, accept or refuse a new
key, revoke the key.

    (first inventory) ──▶ pending ──accept──▶ active ──retire──▶ retired ──accept──▶ active
                             ▲                   │
                             └──revoke the key───┘

    key: (token) ──enroll──▶ active key, or a *candidate* beside an active one
         candidate ──accept_new_key──▶ active (the old key revoked)
         candidate ──reject_new_key──▶ revoked;   active ──revoke_key──▶ revoked

Lock order, the same in every transaction that changes a host or its requests (propose,
approve, reject, retire, accept, a key's decision, ingest of an answer): the **host row
first** (``lock_host``), then its keys or its requests, then their items. Two transactions
that lock in the same order wait for each other instead of deadlocking (approve during retire
once deadlocked: approve held the request and retire the host, each waiting for the other),
a proposal waits for a retirement in progress and then sees the host retired, and of two
approvers deciding one new key at once the second finds it decided (HostWrongState).

What other parts do when a host leaves or comes back (its proposals expire, its files leave
the models pages, a campaign stops waiting for it) they do as receivers of the
``host_retired`` and ``host_returned`` signals (``models_admin/signals.py``), called inside
this transaction, after the host row is locked: this module knows no request or campaign.

Refusals raise HostError (``HostNotAllowed``, ``HostWrongState``), shown to the user as is.
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from ..errors import HostNotAllowed, HostWrongState
from ..models import AuditEvent, EnrollmentToken, Host, HostKey
from ..security.roles import actor_name
from ..signals import host_retired, host_returned
from .trust import PendingEnrollment, Untrusted

Action = AuditEvent.Action


def lock_host(host: Host | int) -> Host:
    """The host's row, locked: the first lock of every transaction that changes a host or
    its requests (see the module docstring for the order). Call inside ``transaction.atomic``."""
    pk = host.pk if isinstance(host, Host) else host
    return Host.objects.select_for_update().get(pk=pk)


# ---------------------------------------------------------------- status


def accept_host(host: Host, user) -> Host:
    """Let orders be sent to a pending (or retired) host. Accepting an active host changes nothing.

    Refused (HostNotAllowed) while the host has no enrolled key: its reports could not be
    read, so orders would go out and no answer come back.
    """
    with transaction.atomic():
        host = lock_host(host)
        if host.status == Host.Status.ACTIVE:
            return host
        if host.active_key is None:
            raise HostNotAllowed(f"{host.name} has no enrolled key: it must enroll with a token first")
        returning = host.status == Host.Status.RETIRED
        host.status = Host.Status.ACTIVE
        host.accepted_by = actor_name(user)
        host.accepted_at = timezone.now()
        host.save(update_fields=["status", "accepted_by", "accepted_at"])
        if returning:
            host_returned.send(sender=Host, host=host)
        AuditEvent.record(Action.HOST_ACCEPTED, actor=actor_name(user), host=host.name, obj=host)
    return host


def retire_host(host: Host, user) -> Host:
    """Hide a host from the overview; its open requests can no longer be sent.

    Retiring a retired host changes nothing. The receivers of ``host_retired`` run under the
    host's lock, so a proposal racing the retirement waits and then finds the host retired.
    """
    with transaction.atomic():
        host = lock_host(host)
        if host.status == Host.Status.RETIRED:
            return host
        host.status = Host.Status.RETIRED
        host.save(update_fields=["status"])
        host_retired.send(sender=Host, host=host)
        AuditEvent.record(Action.HOST_RETIRED, actor=actor_name(user), host=host.name, obj=host)
    return host


# ---------------------------------------------------------------- keys


def enroll(host: Host, pending: PendingEnrollment, *, report_id: str) -> HostKey | None:
    """Enroll ``pending`` for ``host`` (locked by the caller) inside the ingest transaction.

    The token is claimed with a conditional UPDATE, so of two reports racing with one token
    exactly one enrolls; the other raises Untrusted (a refused report, not a user's error) and
    its transaction changes nothing. A key enrolled over an active one is only a *candidate*:
    the active key stays valid and the host keeps its status until an approver compares both
    fingerprints (``accept_new_key``), so a token in the wrong hands can neither inherit a
    trusted host nor knock it off the fleet. A newer candidate replaces an older one. Returns
    None when the key was enrolled meanwhile by an earlier report of the same agent.
    """
    now = timezone.now()
    current = host.keys.filter(revoked_at__isnull=True, candidate=False).first()
    previous = host.keys.filter(revoked_at__isnull=True, candidate=True).first()
    if pending.public_key in {k.public_key for k in (current, previous) if k is not None}:
        return None
    claimed = EnrollmentToken.objects.filter(
        id=pending.token_id, used_at__isnull=True, revoked_at__isnull=True, expires_at__gt=now
    ).update(used_at=now, used_by_host=host)
    if not claimed:
        raise Untrusted(
            "enrollment refused: the token was used or revoked meanwhile",
            host=host.name,
            fingerprint=pending.fingerprint,
        )
    replaced = []
    if previous is not None:
        replaced.append(previous.fingerprint)
        HostKey.objects.filter(pk=previous.pk).update(revoked_at=now, revoked_by="replaced by a newer key")
    key = HostKey.objects.create(
        host=host,
        public_key=pending.public_key,
        fingerprint=pending.fingerprint,
        created_at=now,
        enrolled_with_id=pending.token_id,
        candidate=current is not None,
    )
    AuditEvent.record(
        Action.HOST_ENROLLED,
        actor=f"agent:{host.name}"[:150],
        host=host.name,
        obj=host,
        fingerprint=key.fingerprint,
        token=pending.token_fingerprint,
        replaced=replaced,
        awaiting_acceptance=key.candidate,
        active_fingerprint=current.fingerprint if current is not None else "",
        status=host.status,
        report_id=report_id,
    )
    return key


def accept_new_key(host: Host, actor: str) -> HostKey:
    """An approver compared the fingerprints: the candidate key replaces the active one.

    Under the host's row lock, so accepting races neither a second acceptance nor a refusal,
    a revocation or a newer enrollment (which also lock the host first): exactly one of them
    decides which key is active. HostWrongState if the host has no key waiting.
    """
    now = timezone.now()
    with transaction.atomic():
        host = lock_host(host)
        keys = host.keys.select_for_update().filter(revoked_at__isnull=True)
        new = next((k for k in keys if k.candidate), None)
        if new is None:
            raise HostWrongState(f"{host.name} has no new key waiting for acceptance")
        old = next((k for k in keys if not k.candidate), None)
        if old is not None:
            HostKey.objects.filter(pk=old.pk).update(
                revoked_at=now, revoked_by=f"replaced, new key accepted by {actor}"[:150]
            )
        HostKey.objects.filter(pk=new.pk).update(candidate=False)
        AuditEvent.record(
            Action.HOST_KEY_ACCEPTED,
            actor=actor[:150],
            host=host.name,
            obj=host,
            fingerprint=new.fingerprint,
            replaced=[old.fingerprint] if old is not None else [],
        )
    new.refresh_from_db()
    return new


def reject_new_key(host: Host, actor: str) -> HostKey:
    """Refuse the candidate key (not the host's): the active key goes on as before.

    Under the host's row lock, like ``accept_new_key`` (see ``_revoke``). HostWrongState if no
    key waits.
    """
    return _revoke(host, actor, candidate=True, missing="no new key waiting for acceptance")


def revoke_key(host: Host, actor: str) -> HostKey:
    """Revoke the host's active key: its messages are refused until it enrolls a new one.

    An active host goes back to pending, so no order is sent to a host whose answers the
    dashboard can no longer read. Under the host's row lock (see ``_revoke``). HostWrongState
    if the host has no active key.
    """
    return _revoke(host, actor, candidate=False, missing="no active key")


def _revoke(host: Host, actor: str, *, candidate: bool, missing: str) -> HostKey:
    """Revoke the host's unrevoked key of one kind (the candidate, or the active key) and
    record HOST_KEY_REVOKED; revoking the active key also sends an active host back to pending.

    The host row is locked first, then the key (the module's lock order). The race this
    guards: ``accept_host`` checks for an active key under the same host lock, so a revocation
    racing an acceptance of the host ends with the host pending, never active without a key
    to read its answers with. Of a refusal racing an acceptance of the same candidate
    (``accept_new_key``) or a second refusal, exactly one decides the key and the other finds
    it decided: HostWrongState, ``missing`` saying what the host lacks.
    """
    with transaction.atomic():
        host = lock_host(host)
        key = host.keys.select_for_update().filter(revoked_at__isnull=True, candidate=candidate).first()
        if key is None:
            raise HostWrongState(f"{host.name} has {missing}")
        key.revoked_at, key.revoked_by = timezone.now(), actor[:150]
        key.save(update_fields=["revoked_at", "revoked_by"])
        if not candidate and host.status == Host.Status.ACTIVE:
            host.status = Host.Status.PENDING
            host.save(update_fields=["status"])
        # A refused candidate says so; the active key's event has carried no such field.
        marks = {"candidate": True} if candidate else {}
        AuditEvent.record(
            Action.HOST_KEY_REVOKED,
            actor=actor[:150],
            host=host.name,
            obj=host,
            fingerprint=key.fingerprint,
            **marks,
            status=host.status,
        )
    return key
