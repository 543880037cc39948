"""Signed orders and reports, key files, replay and enrollment, with real Ed25519 keys."""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import stat
import unicodedata
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from workers.schema import (
    INGEST_TASK,
    AgentTask,
    FileIdentity,
    HostFacts,
    InventoryReport,
    ModelDirState,
    PruneOrder,
    parse_order,
)
from workers.signing.canonical import canonical_bytes
from workers.signing.enrollment import (
    enrollment_proof,
    enrollment_verifier,
    new_enrollment_token,
    verify_enrollment_proof,
)
from workers.signing.envelope import DASHBOARD_SIGNER, sign, verify
from workers.signing.errors import FreshnessError, KeyFileError, ReplayError, SignatureError
from workers.signing.freshness import check_freshness, check_not_expired
from workers.signing.keys import (
    key_fingerprint,
    load_or_create_private_key,
    load_private_key,
    load_public_key,
    pinned_public_key,
    public_key_text,
)
from workers.signing.orders import verify_order
from workers.signing.replay import ReplayGuard
from workers.signing.reports import verify_report

NOW = datetime(2031, 5, 4, 12, 0, tzinfo=UTC)
SKEW = timedelta(minutes=5)


@pytest.fixture(scope="module")
def dashboard_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def host_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def guard(state_dir: Path) -> ReplayGuard:
    return ReplayGuard(state_dir)


def prune_order(**overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "host": "ocr-1",
        "request_id": "a" * 32,
        "sent_at": NOW,
        "expires_at": NOW + timedelta(hours=1),
        "items": [
            FileIdentity(path="old_model.gguf", size=10, mtime_ns=1, sha256="0" * 64),
            FileIdentity(path="café/model.onnx", size=20, mtime_ns=2, sha256="1" * 64),
        ],
    }
    fields.update(overrides)
    return PruneOrder(**fields).to_json()


def signed_order(key: Ed25519PrivateKey, **overrides: Any) -> dict[str, Any]:
    return sign(prune_order(**overrides), key, signer=DASHBOARD_SIGNER, purpose=AgentTask.PRUNE)


def over_the_wire(message: dict[str, Any]) -> dict[str, Any]:
    # What Celery's JSON serializer does to a message between the two sides.
    return json.loads(json.dumps(message))


# ---------------------------------------------------------------- canonical form


def test_it_gives_the_same_bytes_whatever_the_key_order() -> None:
    a = {"b": [1, {"y": 2, "x": "é"}], "a": "ü"}
    b = {"a": "ü", "b": [1, {"x": "é", "y": 2}]}
    assert canonical_bytes(a) == canonical_bytes(b)
    assert canonical_bytes(b) == '{"a":"ü","b":[1,{"x":"é","y":2}]}'.encode()


def test_it_encodes_unicode_as_utf8_without_normalising() -> None:
    nfc = unicodedata.normalize("NFC", "café")
    nfd = unicodedata.normalize("NFD", "café")
    assert "é".encode() in canonical_bytes({"path": nfc})
    assert canonical_bytes({"path": nfc}) != canonical_bytes({"path": nfd})


def test_it_refuses_values_that_have_no_single_json_form() -> None:
    with pytest.raises(TypeError, match="ISO strings"):
        canonical_bytes({"sent_at": NOW})
    with pytest.raises(TypeError, match="not a string"):
        canonical_bytes({"items": {1: "a"}})
    with pytest.raises(TypeError, match="no JSON form"):
        canonical_bytes({"size": float("nan")})
    with pytest.raises(TypeError, match=r"message\.files\.1\.path: a string holds a lone surrogate"):
        canonical_bytes({"files": [{"path": "ok"}, {"path": "bad\udcff"}]})
    with pytest.raises(TypeError, match="a key holds a lone surrogate"):
        canonical_bytes({"k\ud800": 1})
    with pytest.raises(TypeError, match="nested more than 32 levels"):
        deep: dict = {"x": 1}
        for _ in range(40):
            deep = {"x": [deep]}
        canonical_bytes(deep)
    with pytest.raises(TypeError, match="bytes is not JSON"):
        canonical_bytes({"a": [1, {"b": b"raw"}]})


# ---------------------------------------------------------------- sign and verify


def test_it_round_trips_an_order_through_json(dashboard_key: Ed25519PrivateKey) -> None:
    message = over_the_wire(signed_order(dashboard_key))
    verified = verify(
        message,
        dashboard_key.public_key(),
        expected_signer=DASHBOARD_SIGNER,
        expected_purpose=AgentTask.PRUNE,
    )
    assert verified.body == prune_order()
    assert "signature" not in verified.body
    assert parse_order(verified.body).items[1].path == "café/model.onnx"
    assert verified.signer == DASHBOARD_SIGNER
    assert len(verified.nonce) == 32


def test_it_does_not_change_the_message_it_signs(dashboard_key: Ed25519PrivateKey) -> None:
    order = prune_order()
    signed = sign(order, dashboard_key, signer=DASHBOARD_SIGNER, purpose=AgentTask.PRUNE)
    assert "signature" not in order
    resigned = sign(signed, dashboard_key, signer=DASHBOARD_SIGNER, purpose=AgentTask.PRUNE)
    assert resigned["signature"]["nonce"] != signed["signature"]["nonce"]


def _tamper(message: dict[str, Any], field: str) -> None:
    if field == "host":
        message["host"] = "ocr-2"
    elif field == "request_id":
        message["request_id"] = "b" * 32
    elif field == "items.sha256":
        message["items"][0]["sha256"] = "f" * 64
    elif field == "items.path":
        message["items"][1]["path"] = unicodedata.normalize("NFD", message["items"][1]["path"])
    elif field == "items.added":
        message["items"].append({"path": "keep.gguf", "size": 1, "mtime_ns": 1, "sha256": "2" * 64})
    elif field == "sent_at":
        message["sent_at"] = (NOW + timedelta(seconds=1)).isoformat()
    elif field == "expires_at":
        message["expires_at"] = (NOW + timedelta(days=30)).isoformat()
    elif field == "mode":
        message["mode"] = "delete"
    elif field == "extra":
        message["note"] = "hello"
    elif field == "signature.nonce":
        message["signature"]["nonce"] = "0" * 32
    elif field == "signature.signer":
        message["signature"]["signer"] = "ocr-1"
    elif field == "signature.purpose":
        message["signature"]["purpose"] = AgentTask.RESTORE.value
    else:
        raise AssertionError(field)


@pytest.mark.parametrize(
    "field",
    [
        "host",
        "request_id",
        "items.sha256",
        "items.path",
        "items.added",
        "sent_at",
        "expires_at",
        "mode",
        "extra",
        "signature.nonce",
        "signature.signer",
        "signature.purpose",
    ],
)
def test_it_refuses_a_tampered_field(dashboard_key: Ed25519PrivateKey, field: str) -> None:
    message = over_the_wire(signed_order(dashboard_key))
    _tamper(message, field)
    with pytest.raises(SignatureError, match=r"^bad signature$"):
        verify(
            message,
            dashboard_key.public_key(),
            expected_signer=message["signature"]["signer"],
            expected_purpose=message["signature"]["purpose"],
        )


def test_it_refuses_an_order_received_by_another_task(dashboard_key: Ed25519PrivateKey) -> None:
    with pytest.raises(
        SignatureError,
        match=re.escape("signed for 'ocrdash.agent.prune', received as 'ocrdash.agent.restore'"),
    ):
        verify(
            signed_order(dashboard_key),
            dashboard_key.public_key(),
            expected_signer=DASHBOARD_SIGNER,
            expected_purpose=AgentTask.RESTORE,
        )


def test_it_refuses_another_key(dashboard_key: Ed25519PrivateKey, host_key: Ed25519PrivateKey) -> None:
    forged = sign(prune_order(), host_key, signer=DASHBOARD_SIGNER, purpose=AgentTask.PRUNE)
    with pytest.raises(SignatureError, match=r"^bad signature$"):
        verify(
            forged,
            dashboard_key.public_key(),
            expected_signer=DASHBOARD_SIGNER,
            expected_purpose=AgentTask.PRUNE,
        )


def test_it_refuses_a_signer_mismatch(host_key: Ed25519PrivateKey) -> None:
    # A host's own key, but the host claims to be the dashboard.
    message = sign(prune_order(), host_key, signer=DASHBOARD_SIGNER, purpose=AgentTask.PRUNE)
    with pytest.raises(SignatureError, match="signed by 'dashboard', expected 'ocr-1'"):
        verify(message, host_key.public_key(), expected_signer="ocr-1", expected_purpose=AgentTask.PRUNE)


@pytest.mark.parametrize(
    ("signature", "reason"),
    [
        (None, "^unsigned$"),
        ("abc", r"^malformed signature$"),
        ({"alg": "ed25519", "signer": "dashboard"}, r"^malformed signature$"),
        (
            {"alg": "hmac", "signer": "dashboard", "purpose": "x", "nonce": "n", "value": "AAAA"},
            "unsupported signature algorithm 'hmac'",
        ),
        (
            {"alg": "ed25519", "signer": "dashboard", "purpose": "x", "nonce": "n", "value": "not base64!"},
            r"^malformed signature$",
        ),
    ],
)
def test_it_refuses_unsigned_and_malformed_messages(
    dashboard_key: Ed25519PrivateKey, signature: Any, reason: str
) -> None:
    message = prune_order()
    if signature is not None:
        message["signature"] = signature
    with pytest.raises(SignatureError, match=reason):
        verify(message, dashboard_key.public_key(), expected_signer=DASHBOARD_SIGNER, expected_purpose="x")


# ---------------------------------------------------------------- whole order and report checks


def test_it_accepts_a_good_order_once(dashboard_key: Ed25519PrivateKey, guard: ReplayGuard) -> None:
    message = over_the_wire(signed_order(dashboard_key))
    pub = dashboard_key.public_key()
    body = verify_order(message, pub, host="ocr-1", task=AgentTask.PRUNE, guard=guard, now=NOW)
    assert parse_order(body).request_id == "a" * 32
    with pytest.raises(ReplayError, match="replayed"):
        verify_order(message, pub, host="ocr-1", task=AgentTask.PRUNE, guard=guard, now=NOW)


def test_it_accepts_a_resend_of_the_same_request_with_a_fresh_signature(
    dashboard_key: Ed25519PrivateKey, guard: ReplayGuard
) -> None:
    pub = dashboard_key.public_key()
    first, again = signed_order(dashboard_key), signed_order(dashboard_key)
    verify_order(first, pub, host="ocr-1", task=AgentTask.PRUNE, guard=guard, now=NOW)
    body = verify_order(again, pub, host="ocr-1", task=AgentTask.PRUNE, guard=guard, now=NOW)
    assert body["request_id"] == first["request_id"]


def test_it_refuses_another_hosts_order(dashboard_key: Ed25519PrivateKey, guard: ReplayGuard) -> None:
    with pytest.raises(SignatureError, match="order for host 'ocr-1' reached 'ocr-2'"):
        verify_order(
            signed_order(dashboard_key),
            dashboard_key.public_key(),
            host="ocr-2",
            task=AgentTask.PRUNE,
            guard=guard,
            now=NOW,
        )
    assert len(guard) == 0


def test_it_refuses_an_expired_order_without_claiming_its_nonce(
    dashboard_key: Ed25519PrivateKey, guard: ReplayGuard
) -> None:
    message = signed_order(dashboard_key)
    late = NOW + timedelta(hours=1) + SKEW + timedelta(seconds=1)
    with pytest.raises(FreshnessError, match="expired at"):
        verify_order(
            message, dashboard_key.public_key(), host="ocr-1", task=AgentTask.PRUNE, guard=guard, now=late
        )
    assert len(guard) == 0


def test_it_refuses_an_order_without_expiry(dashboard_key: Ed25519PrivateKey, guard: ReplayGuard) -> None:
    message = signed_order(dashboard_key, expires_at=None)
    with pytest.raises(FreshnessError, match="expires_at is missing"):
        verify_order(
            message, dashboard_key.public_key(), host="ocr-1", task=AgentTask.PRUNE, guard=guard, now=NOW
        )


def test_it_refuses_an_order_from_the_future(dashboard_key: Ed25519PrivateKey, guard: ReplayGuard) -> None:
    message = signed_order(dashboard_key, sent_at=NOW + timedelta(minutes=6))
    with pytest.raises(FreshnessError, match="in the future"):
        verify_order(
            message, dashboard_key.public_key(), host="ocr-1", task=AgentTask.PRUNE, guard=guard, now=NOW
        )


def test_it_refuses_a_report_signed_by_another_host(host_key: Ed25519PrivateKey) -> None:
    report = InventoryReport(host="ocr-2", sent_at=NOW, facts=_facts(), files=[]).to_json()
    # ocr-1 signs a report that claims to come from ocr-2.
    message = sign(report, host_key, signer="ocr-1", purpose=INGEST_TASK)
    with pytest.raises(SignatureError, match="report names host 'ocr-2' but is signed by 'ocr-1'"):
        verify_report(message, host_key.public_key(), host="ocr-1", now=NOW)
    with pytest.raises(SignatureError, match="signed by 'ocr-1', expected 'ocr-2'"):
        verify_report(message, host_key.public_key(), host="ocr-2", now=NOW)


def test_it_accepts_a_fresh_report_and_refuses_a_stale_one(host_key: Ed25519PrivateKey) -> None:
    report = InventoryReport(host="ocr-1", sent_at=NOW, facts=_facts(), files=[]).to_json()
    message = over_the_wire(sign(report, host_key, signer="ocr-1", purpose=INGEST_TASK))
    verified = verify_report(message, host_key.public_key(), host="ocr-1", now=NOW + SKEW)
    assert verified.body["report_id"] == report["report_id"]
    with pytest.raises(FreshnessError, match="too old"):
        verify_report(message, host_key.public_key(), host="ocr-1", now=NOW + SKEW + timedelta(seconds=1))


def _facts() -> HostFacts:
    return HostFacts(hostname="ocr", model_dir="models", model_dir_state=ModelDirState.OK)


# ---------------------------------------------------------------- time windows


@pytest.mark.parametrize(
    ("offset", "ok"),
    [
        (timedelta(0), True),
        (SKEW, True),
        (-SKEW, True),
        (SKEW + timedelta(seconds=1), False),
        (-SKEW - timedelta(seconds=1), False),
    ],
)
def test_it_keeps_reports_within_the_skew_window(offset: timedelta, ok: bool) -> None:
    sent_at = (NOW + offset).isoformat()
    if ok:
        assert check_freshness(sent_at, now=NOW, max_skew=SKEW) == NOW + offset
    else:
        with pytest.raises(FreshnessError):
            check_freshness(sent_at, now=NOW, max_skew=SKEW)


@pytest.mark.parametrize("value", [None, "yesterday", "2031-05-04T12:00:00"])
def test_it_refuses_times_it_cannot_place(value: Any) -> None:
    with pytest.raises(FreshnessError, match="sent_at"):
        check_freshness(value, now=NOW)


def test_it_accepts_the_pydantic_z_suffix() -> None:
    assert check_not_expired("2031-05-04T12:00:00Z", now=NOW, max_skew=timedelta(0)) == NOW
    with pytest.raises(FreshnessError):
        check_not_expired("2031-05-04T11:59:59Z", now=NOW, max_skew=timedelta(0))


# ---------------------------------------------------------------- key files


def test_it_creates_a_private_key_readable_only_by_its_owner(tmp_path: Path) -> None:
    path = tmp_path / "state" / "keys" / "agent.key"
    key = load_or_create_private_key(path)
    # Tests may run as root, which ignores modes: check the bits themselves.
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert public_key_text(load_or_create_private_key(path)) == public_key_text(key)
    assert [p.name for p in path.parent.iterdir()] == ["agent.key"]


def test_it_creates_0600_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        path = tmp_path / "agent.key"
        tmp_path.chmod(0o700)
        load_or_create_private_key(path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_it_refuses_a_key_file_readable_by_others(tmp_path: Path) -> None:
    tmp_path.chmod(0o700)
    path = tmp_path / "agent.key"
    load_or_create_private_key(path)
    path.chmod(0o644)
    with pytest.raises(KeyFileError, match="mode 0644"):
        load_or_create_private_key(path)
    with pytest.raises(KeyFileError, match="must be 0600"):
        load_private_key(path)


def test_it_refuses_a_key_folder_writable_by_others(tmp_path: Path) -> None:
    folder = tmp_path / "keys"
    folder.mkdir(mode=0o700)
    load_or_create_private_key(folder / "agent.key")
    folder.chmod(0o777)
    with pytest.raises(KeyFileError, match="writable by group or others"):
        load_private_key(folder / "agent.key")


def test_it_refuses_a_symlinked_key_file(tmp_path: Path) -> None:
    tmp_path.chmod(0o700)
    real = tmp_path / "real.key"
    load_or_create_private_key(real)
    (tmp_path / "agent.key").symlink_to(real)
    with pytest.raises(KeyFileError, match="cannot open"):
        load_or_create_private_key(tmp_path / "agent.key")


def test_it_refuses_a_key_file_that_is_not_a_key(tmp_path: Path) -> None:
    tmp_path.chmod(0o700)
    path = tmp_path / "agent.key"
    path.write_text("hello")
    path.chmod(0o600)
    with pytest.raises(KeyFileError, match="does not hold an unencrypted PEM private key"):
        load_private_key(path)


def _create_key(path: str, barrier: Any) -> str:
    barrier.wait()
    return public_key_text(load_or_create_private_key(Path(path)))


def test_two_processes_creating_the_key_at_once_end_with_one(tmp_path: Path) -> None:
    tmp_path.chmod(0o700)
    path = tmp_path / "agent.key"
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager:
        barrier = manager.Barrier(4)
        with ctx.Pool(4) as pool:
            keys = pool.starmap(_create_key, [(str(path), barrier)] * 4)
    assert len(set(keys)) == 1
    assert keys[0] == public_key_text(load_private_key(path))


# ---------------------------------------------------------------- public keys


def test_it_round_trips_a_public_key_and_shows_a_fingerprint(host_key: Ed25519PrivateKey) -> None:
    text = public_key_text(host_key)
    assert text.startswith("ed25519:") and len(text) == len("ed25519:") + 44
    assert public_key_text(load_public_key(f"  {text}\n")) == text
    fingerprint = key_fingerprint(host_key)
    assert fingerprint == key_fingerprint(text) == key_fingerprint(host_key.public_key())
    assert fingerprint.startswith("SHA256:") and len(fingerprint) == len("SHA256:") + 19
    assert fingerprint != key_fingerprint(Ed25519PrivateKey.generate())


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("AAAA", "must start with 'ed25519:'"),
        ("ed25519:not base64!", "not valid base64"),
        ("ed25519:AAAA", "has 32 bytes, this one has 3"),
    ],
)
def test_it_explains_a_bad_public_key(text: str, reason: str) -> None:
    with pytest.raises(KeyFileError, match=reason):
        load_public_key(text)


def test_it_reads_the_pinned_dashboard_key_from_a_value_or_a_file(
    tmp_path: Path, dashboard_key: Ed25519PrivateKey
) -> None:
    text = public_key_text(dashboard_key)
    (tmp_path / "dashboard.pub").write_text(text + "\n")
    assert public_key_text(pinned_public_key(text)) == text
    assert public_key_text(pinned_public_key(str(tmp_path / "dashboard.pub"))) == text
    with pytest.raises(KeyFileError, match="cannot read"):
        pinned_public_key(str(tmp_path / "missing.pub"))
    with pytest.raises(KeyFileError, match="no dashboard public key"):
        pinned_public_key(" ")


# ---------------------------------------------------------------- replay guard


def test_the_replay_guard_refuses_a_second_use(guard: ReplayGuard) -> None:
    until = NOW + timedelta(hours=1)
    assert guard.seen_before("n1", signer=DASHBOARD_SIGNER, valid_until=until, now=NOW) is False
    assert guard.seen_before("n1", signer=DASHBOARD_SIGNER, valid_until=until, now=NOW) is True
    # Nonces are per signer: another signer's equal nonce is a different message.
    assert guard.seen_before("n1", signer="ocr-1", valid_until=until, now=NOW) is False


def test_the_replay_guard_survives_a_restart(state_dir: Path) -> None:
    until = NOW + timedelta(hours=1)
    assert ReplayGuard(state_dir).seen_before("n1", signer="d", valid_until=until, now=NOW) is False
    assert ReplayGuard(state_dir).seen_before("n1", signer="d", valid_until=until, now=NOW) is True


def test_the_replay_guard_forgets_nonces_only_after_their_window(guard: ReplayGuard) -> None:
    until = NOW + timedelta(hours=1)
    guard.seen_before("n1", signer="d", valid_until=until, now=NOW)
    just_before = until + ReplayGuard.KEEP_MARGIN
    guard.seen_before("other", signer="d", valid_until=just_before + timedelta(days=1), now=just_before)
    assert guard.seen_before("n1", signer="d", valid_until=until, now=just_before) is True
    later = until + ReplayGuard.KEEP_MARGIN + timedelta(seconds=1)
    guard.seen_before("other-2", signer="d", valid_until=later + timedelta(days=1), now=later)
    assert len(guard) == 2  # "other" and "other-2": "n1" was pruned
    assert guard.seen_before("n1", signer="d", valid_until=until, now=later) is False


def _claim_all(state_dir: str, nonces: list[str], barrier: Any) -> list[str]:
    guard = ReplayGuard(Path(state_dir))
    until = datetime.now(UTC) + timedelta(hours=1)
    barrier.wait()
    return [n for n in nonces if not guard.seen_before(n, signer="dashboard", valid_until=until)]


def test_the_replay_guard_lets_exactly_one_process_claim_a_nonce(state_dir: Path) -> None:
    nonces = [f"nonce-{i}" for i in range(300)]
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager:
        barrier = manager.Barrier(3)
        with ctx.Pool(3) as pool:
            claimed = pool.starmap(_claim_all, [(str(state_dir), nonces, barrier)] * 3)
    everything = [n for part in claimed for n in part]
    assert sorted(everything) == sorted(nonces)


# ---------------------------------------------------------------- enrollment


def test_an_enrollment_proof_checks_out_against_the_stored_verifier(host_key: Ed25519PrivateKey) -> None:
    token = new_enrollment_token()
    verifier = enrollment_verifier(token)
    assert token not in verifier and token[15:] not in verifier
    pub = public_key_text(host_key)
    proof = enrollment_proof(token, host="ocr-1", public_key_text=pub, report_id="r1")
    assert token[15:] not in proof
    assert verify_enrollment_proof(verifier, host="ocr-1", public_key_text=pub, report_id="r1", proof=proof)


@pytest.mark.parametrize("change", ["host", "public_key", "report_id", "token", "proof"])
def test_an_enrollment_proof_binds_host_key_and_report(host_key: Ed25519PrivateKey, change: str) -> None:
    token = new_enrollment_token()
    pub = public_key_text(host_key)
    proof = enrollment_proof(token, host="ocr-1", public_key_text=pub, report_id="r1")
    args = {"host": "ocr-1", "public_key_text": pub, "report_id": "r1", "proof": proof}
    verifier = enrollment_verifier(token)
    if change == "host":
        args["host"] = "ocr-2"
    elif change == "public_key":
        args["public_key_text"] = public_key_text(Ed25519PrivateKey.generate())
    elif change == "report_id":
        args["report_id"] = "r2"
    elif change == "token":
        verifier = enrollment_verifier(new_enrollment_token())
    else:
        args["proof"] = "junk"
    assert verify_enrollment_proof(verifier, **args) is False


def test_it_explains_a_mangled_enrollment_token() -> None:
    token = new_enrollment_token()
    assert enrollment_verifier(f" {token}\n") == enrollment_verifier(token)
    with pytest.raises(KeyFileError, match="enrollment token starts with"):
        enrollment_verifier(token[:-3])
    with pytest.raises(KeyFileError, match="enrollment token starts with"):
        enrollment_verifier("hunter2")
