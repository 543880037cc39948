"""Trust between the dashboard and the hosts: the dashboard's key, host keys, enrollment.

Anyone who can write to the broker can put a message on a host's queue or on the ingest
queue, so nothing here trusts the transport. Orders leave signed by the dashboard's key, which
every agent pins at install. Reports are taken only when signed by the key enrolled for the
host they name (``authenticate``); a host enrolls a key by proving it holds a one-time token
an approver made (``create_token``), without the token ever crossing the broker. What a
decision does to a host and its keys (enroll, accept or refuse a new key, revoke) is in
``hosts.py``, with every other Host transition.

Replay of reports: a report's id is inside what its signature covers, an accepted or rejected
id is kept unique in ReceivedReport, and a report sent more than OCRDASH_MAX_CLOCK_SKEW_SECONDS
ago (or ahead) is refused. A captured report replayed within the window is therefore a
duplicate of itself, and one replayed later is stale. (Reports refused here are stored
without their claimed id, so a forgery cannot take a real report's id first.)

Secrets: the dashboard's private key stays in its file; tokens are shown once and stored only
as a verifier; signatures and proofs are cut from stored payloads and never audited.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from workers.schema import HOST_NAME_PATTERN, ORDER_TASKS
from workers.signing.enrollment import enrollment_verifier, new_enrollment_token, verify_enrollment_proof
from workers.signing.envelope import DASHBOARD_SIGNER, SIGNATURE_FIELD, Verified, sign, verify
from workers.signing.errors import KeyFileError, SignatureError
from workers.signing.keys import key_fingerprint, load_or_create_private_key, load_public_key, public_key_text
from workers.signing.reports import verify_report

from ..errors import TokenError
from ..models import AuditEvent, EnrollmentToken, Host, HostKey

Action = AuditEvent.Action
REDACTED = "(redacted)"

# ---------------------------------------------------------------- the dashboard's key

_keys: dict[str, Ed25519PrivateKey] = {}


def signing_key_path() -> Path:
    return Path(settings.OCRDASH_SIGNING_KEY_FILE)


def dashboard_key() -> Ed25519PrivateKey:
    """The dashboard's private key, made on first use (0600 in a 0700 folder).

    Cached per path: a web process signs many orders, and the file never changes under it
    (replacing the key means re-pinning every agent, which is a restart anyway).
    """
    path = str(signing_key_path())
    key = _keys.get(path)
    if key is None:
        key = _keys[path] = load_or_create_private_key(Path(path))
    return key


def dashboard_public_key() -> str:
    """The text agents pin as OCRDASH_DASHBOARD_PUBLIC_KEY."""
    return public_key_text(dashboard_key())


def dashboard_fingerprint() -> str:
    return key_fingerprint(dashboard_key())


def sign_order(order: Any) -> dict[str, Any]:
    """The signed dict that crosses the broker for ``order`` (signed for its task's name).

    Every call signs afresh (a new nonce): a re-sent request is a new message, not a replay.
    """
    return sign(order.to_json(), dashboard_key(), signer=DASHBOARD_SIGNER, purpose=ORDER_TASKS[order.kind])


def max_skew() -> timedelta:
    return timedelta(seconds=settings.OCRDASH["MAX_CLOCK_SKEW_SECONDS"])


# ---------------------------------------------------------------- reports

RECEIPT_PURPOSE = "ocrdash.ingest.received"


def _report_digest(data: Any) -> str:
    sig = data.get(SIGNATURE_FIELD) if isinstance(data, Mapping) else None
    value = sig.get("value") if isinstance(sig, Mapping) else None
    return hashlib.sha256(str(value).encode("utf-8", "backslashreplace")).hexdigest()


def receipt_stamp(data: Any, received_at: datetime) -> dict[str, Any]:
    """The dashboard's signed note "this report first arrived at ``received_at``".

    A retry of the ingest task (the database was away) carries it, so the report's freshness
    is judged against the moment it first arrived, not the retry's clock: a report that was
    fresh then is not refused as a replay ten minutes later. It is signed, and bound to the
    report's own signature, so a message put on the queue by someone else cannot claim an
    old arrival time to pass a stale report.
    """
    body = {"report": _report_digest(data), "received_at": received_at.isoformat()}
    return sign(body, dashboard_key(), signer=DASHBOARD_SIGNER, purpose=RECEIPT_PURPOSE)


def receipt_time(data: Any, stamp: Any) -> datetime | None:
    """When ``data`` first arrived, from a stamp made by ``receipt_stamp``; None if it is not one."""
    if not isinstance(stamp, Mapping):
        return None
    try:
        verified = verify(
            stamp,
            dashboard_key().public_key(),
            expected_signer=DASHBOARD_SIGNER,
            expected_purpose=RECEIPT_PURPOSE,
        )
        if verified.body.get("report") != _report_digest(data):
            return None
        return datetime.fromisoformat(verified.body["received_at"])
    except (SignatureError, KeyError, TypeError, ValueError):
        return None


class Untrusted(Exception):
    """A report that must change nothing: its reason, the host it claims, and the key's fingerprint.

    ``str()`` never holds a signature, a token or a proof.
    """

    def __init__(self, reason: str, *, host: str = "", fingerprint: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.host = host
        self.fingerprint = fingerprint


@dataclass(frozen=True)
class PendingEnrollment:
    """A key that proved possession and a valid token; enrolled by ``hosts.enroll`` inside the
    ingest transaction."""

    public_key: str
    fingerprint: str
    token_id: uuid.UUID
    token_fingerprint: str


@dataclass(frozen=True)
class Authenticated:
    body: dict[str, Any]
    key: HostKey | None  # the enrolled key that signed, or None while enrolling
    enrollment: PendingEnrollment | None
    # True when the key came from this process's cache (``authenticate(cached=True)``): the
    # caller's write must itself confirm it is still the host's active key.
    cached: bool = False


# Host name -> the active key that last signed one of its reports in this process, and that
# key parsed. Only ``authenticate(cached=True)`` reads it (heartbeats: 333/s at 10,000 hosts),
# and its caller confirms the key in the same statement that applies the report (presence.py),
# so a key revoked or replaced since is never taken on the cache's word.
_active_keys: dict[str, tuple[HostKey, Ed25519PublicKey]] = {}


def forget(host_name: str) -> None:
    """Drop the cached key of ``host_name`` (its cached check failed: ask the database)."""
    _active_keys.pop(host_name, None)


def authenticate(data: Any, now: datetime | None = None, *, cached: bool = False) -> Authenticated:
    """Who sent ``data``, decided before anything is stored; raises Untrusted. Reads only.

    The key is chosen from the keys on record for the host the report names, never from the
    message: a report signed by host A's key that names host B is checked against B's key
    and fails. A report offering a new key (``enrollment``) must prove it holds that key (its
    signature) and an open token (the proof), and is enrolled only in ``hosts.enroll``.

    ``cached``: check the signature against the host's active key as this process last read
    it, without a query; the result says ``cached`` and the caller must confirm the key where
    it writes. A report the cached key does not verify takes the full path.
    """
    now = now or timezone.now()
    if not isinstance(data, Mapping):
        raise Untrusted(f"a report must be a JSON object, got {type(data).__name__}")
    host_name = data.get("host")
    if not isinstance(host_name, str) or not re.fullmatch(HOST_NAME_PATTERN, host_name):
        raise Untrusted("the report names no valid host")
    if data.get(SIGNATURE_FIELD) is None:
        raise Untrusted("unsigned", host=host_name)
    known = _active_keys.get(host_name) if cached else None
    if known is not None and data.get("enrollment") is None:
        try:
            verified = verify_report(data, known[1], host=host_name, now=now, max_skew=max_skew())
            return Authenticated(verified.body, known[0], None, cached=True)
        except SignatureError:
            forget(host_name)
    # The host's unrevoked keys (active and candidate) with the host, in one query: this runs
    # for every report. Only a name without any key looks up the host on its own.
    keys = list(HostKey.objects.filter(host__name=host_name, revoked_at__isnull=True).select_related("host"))
    host = keys[0].host if keys else Host.objects.filter(name=host_name).first()
    active = next((k for k in keys if not k.candidate), None)
    candidate = next((k for k in keys if k.candidate), None)
    enrollment = data.get("enrollment") if data.get("kind") == "inventory" else None
    offered = enrollment.get("public_key") if isinstance(enrollment, Mapping) else None

    if candidate is not None and (
        offered == candidate.public_key or (offered is None and _signed_by(data, candidate, host_name, now))
    ):
        raise Untrusted(
            "signed by the host's new key, which waits for an approver to accept it "
            "(the old key stays valid until then)",
            host=host_name,
            fingerprint=candidate.fingerprint,
        )
    if active is not None and (offered is None or offered == active.public_key):
        public = load_public_key(active.public_key)
        verified = _verify(data, public, host_name, active.fingerprint, now)
        if candidate is None:
            # A host with a candidate key is not cached: its beats must keep being checked
            # against the candidate (signed by it, they are refused until it is accepted).
            _active_keys[host_name] = (active, public)
        return Authenticated(verified.body, active, None)
    if not isinstance(offered, str):
        if host is not None and host.keys.exists():
            last = host.keys.order_by("-revoked_at").first()
            raise Untrusted(
                "key revoked: the host must enroll a new key with a new token",
                host=host_name,
                fingerprint=last.fingerprint if last else "",
            )
        raise Untrusted("no key is enrolled for this host: enroll it with a token", host=host_name)
    return _check_enrollment(data, host, host_name, offered, enrollment, now)


def _check_enrollment(
    data: Mapping[str, Any], host: Host | None, host_name: str, offered: str, enrollment: Any, now: datetime
) -> Authenticated:
    try:
        public_key = load_public_key(offered)
    except KeyFileError as exc:
        raise Untrusted(f"enrollment: {exc}", host=host_name) from None
    fingerprint = key_fingerprint(public_key)
    if offered != public_key_text(public_key):
        raise Untrusted("enrollment: the public key is not in its canonical form", host=host_name)
    known = HostKey.objects.filter(public_key=offered).select_related("host").first()
    if known is not None:
        # A public key is enrolled once, ever: a revoked key cannot return with a new token,
        # and a key copied to a second host cannot speak for it.
        reason = (
            "key revoked: the host must enroll a new key with a new token"
            if known.host.name == host_name
            else "this key is enrolled for another host"
        )
        raise Untrusted(reason, host=host_name, fingerprint=fingerprint)
    # Possession of the new key, the host name it signs for, and freshness: before the token.
    verified = _verify(data, public_key, host_name, fingerprint, now)
    proof, report_id = enrollment.get("proof"), data.get("report_id")
    if not isinstance(proof, str) or not isinstance(report_id, str):
        raise Untrusted("enrollment: malformed proof", host=host_name, fingerprint=fingerprint)
    # A name that ever had a key is re-keyed only with a token an approver made for that very
    # name: an unscoped token (the default, and valid for up to a year) enrolls new names only.
    has_key = host is not None and host.keys.exists()
    for token in open_tokens(now):
        if token.host_name != host_name and (token.host_name or has_key):
            continue
        if verify_enrollment_proof(
            token.verifier, host=host_name, public_key_text=offered, report_id=report_id, proof=proof
        ):
            pending = PendingEnrollment(offered, fingerprint, token.id, token.fingerprint)
            return Authenticated(verified.body, None, pending)
    if has_key and not open_tokens(now).filter(host_name=host_name).exists():
        raise Untrusted(
            f"enrollment refused: {host_name} already has a key, and re-keying it needs a token made "
            "for that host name (create_enrollment_token --host)",
            host=host_name,
            fingerprint=fingerprint,
        )
    raise Untrusted(
        "enrollment refused: no open token matches (unknown, used, expired, revoked, or for another host)",
        host=host_name,
        fingerprint=fingerprint,
    )


def _signed_by(data: Mapping[str, Any], key: HostKey, host_name: str, now: datetime) -> bool:
    try:
        verify_report(data, load_public_key(key.public_key), host=host_name, now=now, max_skew=max_skew())
    except SignatureError:
        return False
    return True


def _verify(
    data: Mapping[str, Any], key: Ed25519PublicKey, host_name: str, fingerprint: str, now: datetime
) -> Verified:
    try:
        return verify_report(data, key, host=host_name, now=now, max_skew=max_skew())
    except SignatureError as exc:
        raise Untrusted(str(exc), host=host_name, fingerprint=fingerprint) from None


def redacted(data: Any) -> Any:
    """``data`` without the signature value and the enrollment proof, for storage and display.

    Neither is a secret that enrolls or signs anything, but a page of rejected reports is no
    place for material an attacker could study, and the rule "no proof at rest" is simpler.
    """
    if not isinstance(data, Mapping):
        return data
    out = dict(data)
    if isinstance(out.get(SIGNATURE_FIELD), Mapping):
        out[SIGNATURE_FIELD] = {**out[SIGNATURE_FIELD], "value": REDACTED}
    if isinstance(out.get("enrollment"), Mapping):
        out["enrollment"] = {**out["enrollment"], "proof": REDACTED}
    return out


def claimed_signer(data: Any) -> str:
    sig = data.get(SIGNATURE_FIELD) if isinstance(data, Mapping) else None
    signer = sig.get("signer") if isinstance(sig, Mapping) else None
    return signer[:128] if isinstance(signer, str) else ""


# ---------------------------------------------------------------- tokens and keys


def open_tokens(now: datetime | None = None):
    now = now or timezone.now()
    return EnrollmentToken.objects.filter(used_at__isnull=True, revoked_at__isnull=True, expires_at__gt=now)


def create_token(
    actor: str, *, label: str = "", host_name: str = "", hours: float | None = None
) -> tuple[EnrollmentToken, str]:
    """A new one-time token; returns the row and the token text, which exists only in this return.

    The caller shows the text once (a page, a command's output) and keeps it nowhere else.
    """
    if host_name and not re.fullmatch(HOST_NAME_PATTERN, host_name):
        raise TokenError(f"not a valid host name: {host_name!r}")
    hours = settings.OCRDASH["ENROLLMENT_TOKEN_HOURS"] if hours is None else hours
    if not 0 < hours <= 24 * 365:
        raise TokenError("a token is valid for more than 0 hours and at most a year")
    token = new_enrollment_token()
    verifier = enrollment_verifier(token)
    now = timezone.now()
    with transaction.atomic():
        row = EnrollmentToken.objects.create(
            label=label.strip()[:200],
            host_name=host_name,
            verifier=verifier,
            fingerprint=key_fingerprint(verifier),
            created_by=actor[:150],
            created_at=now,
            expires_at=now + timedelta(hours=hours),
        )
        AuditEvent.record(
            Action.TOKEN_CREATED,
            actor=actor[:150],
            host=host_name,
            obj=row,
            token=row.fingerprint,
            label=row.label,
            expires_at=row.expires_at.isoformat(),
        )
    return row, token


def revoke_token(token_id: Any, actor: str) -> EnrollmentToken:
    """Withdraw an unused token. Raises TokenError if it is unknown or no longer open.

    Under the token's row lock: a revocation racing an enrollment's claim (a conditional
    UPDATE of the same row) ends one way only."""
    with transaction.atomic():
        row = EnrollmentToken.objects.select_for_update().filter(id=token_id).first()
        if row is None:
            raise TokenError("no such enrollment token")
        if row.state() != "open":
            raise TokenError(f"the token is {row.state()}, not open")
        row.revoked_at, row.revoked_by = timezone.now(), actor[:150]
        row.save(update_fields=["revoked_at", "revoked_by"])
        AuditEvent.record(
            Action.TOKEN_REVOKED, actor=actor[:150], host=row.host_name, obj=row, token=row.fingerprint
        )
    return row
