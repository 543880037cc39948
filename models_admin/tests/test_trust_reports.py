"""Ingest takes only reports signed by the key enrolled for the host they name.

Every refused report must leave the inventory as it was (snapshots, files, host facts) and
leave a security audit event that says why without carrying a signature, token or proof.
"""

from __future__ import annotations

import copy
import json
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.utils import timezone

from models_admin.errors import HostNotAllowed, HostWrongState
from models_admin.fleet import hosts, trust
from models_admin.ingest import ingest_report
from models_admin.models import (
    AuditEvent,
    EnrollmentToken,
    Host,
    HostKey,
    ModelFile,
    ReceivedReport,
    Snapshot,
)
from workers.schema import FileEntry, FreeReport, HostFacts, InventoryReport, ModelDirState
from workers.signing.enrollment import enrollment_proof
from workers.signing.keys import key_fingerprint, public_key_text

from .conftest import HOST_KEYS, sha, signed_report

Action = AuditEvent.Action
pytestmark = pytest.mark.django_db


def inventory(host: str, files: dict[str, int], **kw) -> dict:
    facts = HostFacts(hostname=f"{host}.example", model_dir="/srv/models", model_dir_state=ModelDirState.OK)
    entries = [FileEntry(path=p, size=s, mtime_ns=1, sha256=sha(p)) for p, s in files.items()]
    return InventoryReport(host=host, facts=facts, files=entries, **kw).to_json()


def enrolling(report: dict, token: str, key: Ed25519PrivateKey) -> dict:
    public = public_key_text(key)
    proof = enrollment_proof(
        token, host=report["host"], public_key_text=public, report_id=report["report_id"]
    )
    return {**report, "enrollment": {"public_key": public, "proof": proof}}


def inventory_state() -> tuple:
    """Everything a report could change about the inventory, for before/after comparisons."""
    hosts = list(
        Host.objects.order_by("name").values_list(
            "name", "status", "last_seen", "current_snapshot_id", "file_count", "total_bytes", "hostname"
        )
    )
    snapshots = list(
        Snapshot.objects.order_by("id").values_list("id", "digest", "seen_count", "last_seen_at")
    )
    files = list(ModelFile.objects.order_by("id").values_list("id", "path", "size"))
    keys = list(HostKey.objects.order_by("id").values_list("id", "revoked_at"))
    accepted = ReceivedReport.objects.filter(status=ReceivedReport.Status.ACCEPTED).count()
    return hosts, snapshots, files, keys, accepted


def assert_refused(data, reason: str, *, host: str = "ocr-1") -> AuditEvent:
    before = inventory_state()
    result = ingest_report(data)
    assert result.status == "rejected", result
    assert reason in result.reason
    assert inventory_state() == before
    event = AuditEvent.objects.filter(action=Action.SECURITY_REJECTED).latest("id")
    assert event.host == host and reason in event.details["reason"]
    row = ReceivedReport.objects.get(pk=event.object_id)
    assert row.status == ReceivedReport.Status.REJECTED and row.report_id is None
    text = json.dumps(event.details) + json.dumps(row.payload)
    if isinstance(data, dict) and isinstance(data.get("signature"), dict):
        assert data["signature"]["value"] not in text
    return event


@pytest.fixture
def host_a(enrolled_host):
    return enrolled_host("ocr-1", {"en.gguf": 20, "old_fr.bin": 10})


def test_a_signed_report_of_the_host_is_taken(host_a):
    host, key = host_a
    assert ingest_report(signed_report(inventory("ocr-1", {"en.gguf": 20}), key)).status == "accepted"
    host.refresh_from_db()
    assert list(host.current_snapshot.files.values_list("path", flat=True)) == ["en.gguf"]


def test_an_unsigned_report_is_refused(host_a):
    assert_refused(inventory("ocr-1", {}), "unsigned")


def test_a_report_signed_by_another_key_is_refused(host_a):
    event = assert_refused(
        signed_report(inventory("ocr-1", {}), Ed25519PrivateKey.generate()), "bad signature"
    )
    assert event.details["fingerprint"] == HostKey.objects.get(host__name="ocr-1").fingerprint


TAMPERINGS = {
    "files": lambda m: m["files"].pop(),
    "file size": lambda m: m["files"][0].update(size=1),
    "facts": lambda m: m["facts"].update(model_dir="/elsewhere"),
    "report_id": lambda m: m.update(report_id="r-other"),
    "sent_at": lambda m: m.update(sent_at=timezone.now().isoformat()),
    "kind": lambda m: m.update(kind="free"),
    "signer": lambda m: m["signature"].update(signer="ocr-2"),
    "nonce": lambda m: m["signature"].update(nonce="0" * 32),
}


@pytest.mark.parametrize("field", sorted(TAMPERINGS))
def test_a_report_changed_after_signing_is_refused(host_a, field):
    message = copy.deepcopy(signed_report(inventory("ocr-1", {"en.gguf": 20}), host_a[1]))
    TAMPERINGS[field](message)
    assert_refused(message, "bad signature")


def test_a_host_cannot_report_for_another_host(host_a, enrolled_host):
    enrolled_host("ocr-2", {"de.gguf": 5})
    # Host A's key, naming host B, whether it claims to be A or B.
    for signer in ("ocr-1", "ocr-2"):
        message = signed_report(inventory("ocr-2", {}), host_a[1], signer=signer)
        assert_refused(message, "bad signature", host="ocr-2")


@pytest.mark.parametrize("minutes", [-10, 10])
def test_a_report_outside_the_clock_window_is_refused(host_a, minutes):
    sent_at = (timezone.now() + timedelta(minutes=minutes)).isoformat()
    message = signed_report({**inventory("ocr-1", {}), "sent_at": sent_at}, host_a[1])
    assert_refused(message, "future" if minutes > 0 else "too old")


def test_a_replayed_report_changes_nothing(host_a):
    message = signed_report(FreeReport(host="ocr-1", freed=True), host_a[1])
    assert ingest_report(message).status == "accepted"
    before = inventory_state(), AuditEvent.objects.count()
    assert ingest_report(copy.deepcopy(message)).status == "duplicate"
    assert (inventory_state(), AuditEvent.objects.count()) == before


def test_a_forgery_cannot_take_a_real_report_id_first(host_a):
    report = FreeReport(host="ocr-1", freed=True)
    assert_refused(signed_report(report, Ed25519PrivateKey.generate()), "bad signature")
    assert ingest_report(signed_report(report, host_a[1])).status == "accepted"


def test_a_revoked_key_is_refused_and_the_host_can_take_no_orders(host_a, approver):
    host, key = host_a
    hosts.revoke_key(host, approver.username)
    host.refresh_from_db()
    assert host.status == Host.Status.PENDING and host.active_key is None
    event = AuditEvent.objects.get(action=Action.HOST_KEY_REVOKED)
    assert event.actor == approver.username and event.details["fingerprint"] == key_fingerprint(key)

    assert_refused(signed_report(inventory("ocr-1", {}), key), "key revoked")
    with pytest.raises(HostNotAllowed, match="no enrolled key"):
        hosts.accept_host(host, approver)


def test_a_key_revoked_after_the_process_cached_it_is_refused_for_every_kind(host_a, approver):
    # The ingest process verifies a known host's reports against the key it last read (no
    # query) and confirms it under the host's lock: a revocation since must win anyway.
    host, key = host_a
    assert ingest_report(signed_report(inventory("ocr-1", {"en.gguf": 3}), key)).status == "accepted"
    assert ingest_report(signed_report(FreeReport(host="ocr-1", freed=True), key)).status == "accepted"
    assert "ocr-1" in trust._active_keys  # the precondition: the next reports take the cached path

    hosts.revoke_key(host, approver.username)
    before = inventory_state()

    assert_refused(signed_report(inventory("ocr-1", {"evil.gguf": 1}), key), "key revoked")
    assert_refused(signed_report(FreeReport(host="ocr-1", freed=True), key), "key revoked")
    assert inventory_state() == before


def test_a_cached_key_replaced_by_an_accepted_new_one_is_refused(host_a, enrollment_token, approver):
    host, old = host_a
    assert ingest_report(signed_report(inventory("ocr-1", {"en.gguf": 3}), old)).status == "accepted"
    assert "ocr-1" in trust._active_keys
    new = Ed25519PrivateKey.generate()
    token = enrollment_token(host_name="ocr-1")
    ingest_report(signed_report(enrolling(inventory("ocr-1", {}), token, new), new))
    hosts.accept_new_key(host, approver.username)
    before = inventory_state()

    assert_refused(signed_report(inventory("ocr-1", {"evil.gguf": 1}), old), "bad signature")
    assert inventory_state() == before
    assert ingest_report(signed_report(inventory("ocr-1", {"fr.gguf": 2}), new)).status == "accepted"


# ---------------------------------------------------------------- enrollment


def test_a_valid_token_enrolls_a_new_pending_host(enrollment_token):
    token, key = enrollment_token(label="rack 4"), Ed25519PrivateKey.generate()
    report = enrolling(inventory("fresh-1", {"en.gguf": 3}), token, key)

    assert ingest_report(signed_report(report, key)).status == "accepted"

    host = Host.objects.get(name="fresh-1")
    assert host.status == Host.Status.PENDING and host.current_snapshot.file_count == 1
    assert host.active_key.fingerprint == key_fingerprint(key)
    row = EnrollmentToken.objects.get()
    assert row.used_by_host == host and row.state() == "used"
    event = AuditEvent.objects.get(action=Action.HOST_ENROLLED)
    assert event.details["fingerprint"] == key_fingerprint(key)
    everything = json.dumps(list(AuditEvent.objects.values_list("details", flat=True)))
    everything += json.dumps(list(ReceivedReport.objects.values_list("payload", flat=True)))
    assert token not in everything and report["enrollment"]["proof"] not in everything
    # The next reports need no token: the key is on record.
    assert ingest_report(signed_report(FreeReport(host="fresh-1", freed=True), key)).status == "accepted"


def test_a_token_is_used_once(enrollment_token):
    token = enrollment_token()
    first = Ed25519PrivateKey.generate()
    ingest_report(signed_report(enrolling(inventory("fresh-1", {}), token, first), first))
    second = Ed25519PrivateKey.generate()
    assert_refused(
        signed_report(enrolling(inventory("fresh-2", {}), token, second), second),
        "no open token matches",
        host="fresh-2",
    )
    assert not Host.objects.filter(name="fresh-2").exists()


def test_an_expired_or_revoked_token_is_refused(enrollment_token, approver):
    expired = enrollment_token(hours=1)
    EnrollmentToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    revoked = enrollment_token()
    trust.revoke_token(EnrollmentToken.objects.get(expires_at__gt=timezone.now()).id, approver.username)
    for token in (expired, revoked):
        key = Ed25519PrivateKey.generate()
        message = signed_report(enrolling(inventory("fresh-1", {}), token, key), key)
        assert_refused(message, "no open token matches", host="fresh-1")
    assert not Host.objects.filter(name="fresh-1").exists()


def test_a_token_for_a_named_host_enrolls_only_that_host(enrollment_token):
    token = enrollment_token(host_name="fresh-1")
    key = Ed25519PrivateKey.generate()
    message = signed_report(enrolling(inventory("fresh-2", {}), token, key), key)
    assert_refused(message, "no open token matches", host="fresh-2")


def test_a_proof_made_for_another_key_is_refused(enrollment_token):
    token, key, thief = enrollment_token(), Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    # A recorded enrollment, re-signed by someone else with the victim's key swapped for theirs.
    report = enrolling(inventory("fresh-1", {}), token, key)
    report["enrollment"]["public_key"] = public_key_text(thief)
    assert_refused(signed_report(report, thief), "no open token matches", host="fresh-1")


def test_an_enrollment_not_signed_by_the_offered_key_is_refused(enrollment_token):
    token, key = enrollment_token(), Ed25519PrivateKey.generate()
    message = signed_report(enrolling(inventory("fresh-1", {}), token, key), Ed25519PrivateKey.generate())
    assert_refused(message, "bad signature", host="fresh-1")
    assert EnrollmentToken.objects.get().state() == "open"


def test_an_unscoped_token_cannot_re_key_a_host_that_has_a_key(host_a, enrollment_token):
    host, old = host_a
    new = Ed25519PrivateKey.generate()
    report = enrolling(inventory("ocr-1", {"evil.gguf": 1}), enrollment_token(), new)

    assert_refused(signed_report(report, new), "re-keying it needs a token made for that host name")

    host.refresh_from_db()
    assert host.status == Host.Status.ACTIVE and host.active_key.fingerprint == key_fingerprint(old)
    assert EnrollmentToken.objects.get().state() == "open"
    assert ingest_report(signed_report(FreeReport(host="ocr-1", freed=True), old)).status == "accepted"


def test_a_revoked_host_re_enrolls_only_with_a_token_for_its_name(host_a, enrollment_token, approver):
    host, _ = host_a
    hosts.revoke_key(host, approver.username)
    new = Ed25519PrivateKey.generate()
    unscoped = signed_report(enrolling(inventory("ocr-1", {}), enrollment_token(), new), new)
    assert_refused(unscoped, "needs a token made for that host name")

    scoped = signed_report(enrolling(inventory("ocr-1", {}), enrollment_token(host_name="ocr-1"), new), new)
    assert ingest_report(scoped).status == "accepted"
    host.refresh_from_db()
    # No valid key was left to protect: the new one is the host's key, the host waits as pending.
    assert host.active_key.fingerprint == key_fingerprint(new) and host.candidate_key is None
    assert host.status == Host.Status.PENDING


def test_re_keying_keeps_the_old_key_valid_until_an_approver_accepts_the_new_one(
    host_a, enrollment_token, approver
):
    host, old = host_a
    before = host.current_snapshot_id
    new = Ed25519PrivateKey.generate()
    token = enrollment_token(host_name="ocr-1")
    report = enrolling(inventory("ocr-1", {"evil.gguf": 1}), token, new)

    result = ingest_report(signed_report(report, new))

    assert result.status == "accepted" and "once an approver accepts it" in result.reason
    host.refresh_from_db()
    # The host keeps its status, its key and its inventory: the new key's report is not taken.
    assert host.status == Host.Status.ACTIVE and host.current_snapshot_id == before
    assert host.active_key.fingerprint == key_fingerprint(old)
    assert host.candidate_key.fingerprint == key_fingerprint(new)
    event = AuditEvent.objects.get(action=Action.HOST_ENROLLED)
    assert event.details["awaiting_acceptance"] is True
    assert event.details["active_fingerprint"] == key_fingerprint(old)
    assert ingest_report(signed_report(FreeReport(host="ocr-1", freed=True), old)).status == "accepted"
    for message in (
        signed_report(FreeReport(host="ocr-1", freed=True), new),
        # The agent keeps sending its enrollment while it still holds the (used) token.
        signed_report(enrolling(inventory("ocr-1", {}), token, new), new),
    ):
        assert_refused(message, "waits for an approver to accept it")

    accepted = hosts.accept_new_key(host, approver.username)

    assert accepted.fingerprint == key_fingerprint(new)
    host.refresh_from_db()
    assert host.status == Host.Status.ACTIVE and host.candidate_key is None
    assert host.active_key.fingerprint == key_fingerprint(new)
    assert AuditEvent.objects.get(action=Action.HOST_KEY_ACCEPTED).actor == approver.username
    assert_refused(signed_report(FreeReport(host="ocr-1", freed=True), old), "bad signature")
    assert ingest_report(signed_report(FreeReport(host="ocr-1", freed=True), new)).status == "accepted"


def test_a_refused_new_key_leaves_the_old_one_in_charge(host_a, enrollment_token, approver):
    host, old = host_a
    new = Ed25519PrivateKey.generate()
    ingest_report(
        signed_report(enrolling(inventory("ocr-1", {}), enrollment_token(host_name="ocr-1"), new), new)
    )

    hosts.reject_new_key(host, approver.username)

    host.refresh_from_db()
    assert host.candidate_key is None and host.active_key.fingerprint == key_fingerprint(old)
    assert_refused(signed_report(FreeReport(host="ocr-1", freed=True), new), "bad signature")
    assert ingest_report(signed_report(FreeReport(host="ocr-1", freed=True), old)).status == "accepted"
    with pytest.raises(HostWrongState, match="no new key waiting"):
        hosts.accept_new_key(host, approver.username)


def test_a_revoked_key_cannot_come_back_with_a_new_token(host_a, enrollment_token, approver):
    host, key = host_a
    hosts.revoke_key(host, approver.username)
    message = signed_report(enrolling(inventory("ocr-1", {}), enrollment_token(), key), key)
    assert_refused(message, "key revoked")


def test_a_host_keeps_sending_its_enrollment_harmlessly(enrollment_token):
    token, key = enrollment_token(), Ed25519PrivateKey.generate()
    for _ in range(2):  # the agent still holds the (now used) token
        message = signed_report(enrolling(inventory("fresh-1", {}), token, key), key)
        assert ingest_report(message).status == "accepted"
    assert HostKey.objects.filter(host__name="fresh-1").count() == 1


def test_a_message_that_is_not_an_object_is_refused(db):
    assert ingest_report("not a dict").status == "rejected"
    event = AuditEvent.objects.get(action=Action.SECURITY_REJECTED)
    assert "JSON object" in event.details["reason"]


def test_host_keys_fixture_matches_the_database(host_a):
    # Guards the helpers the other ingest tests rely on.
    assert HostKey.objects.get(host=host_a[0]).public_key == public_key_text(HOST_KEYS["ocr-1"])
