"""Signatures between the dashboard and the agents: who may send what to whom.

Anyone who can write to the broker can put a message on a host's queue or on the ingest
queue. Celery's own message signing covers only the body (the task name and the headers go
unsigned), does not stop replays and lets any certificate send any task, so this module signs
our messages themselves, end to end, and the receiver decides from the message alone.

The rules, in one place:

* Every order is signed by the dashboard's Ed25519 key; every report by the sending agent's
  own key. The signature covers the whole message (every field but ``signature`` itself)
  plus a small header: algorithm, signer, purpose and nonce. The *purpose* is the Celery task
  name the message is meant for, so an order signed for ``ocrdash.agent.restore`` cannot be
  delivered to ``ocrdash.agent.prune``, and an agent's report can never pass as an order.
* The *nonce* is fresh for every signature, not the request id: the dashboard re-sends an
  unanswered request under the same request id (the agent is idempotent by request id), and
  that re-send must not look like a replay. A replay is the same signed bytes arriving again.
* Receivers check, in this order: signature, signer, purpose, host, time, then replay. Replay
  comes last so that a forged or stale message never takes a row in the replay table.
* Keys and tokens never appear in a message, an exception text or a log line. A public key
  is shown by its fingerprint.

Enrollment (a host joining) uses a one-time token an admin creates. The token itself is never
stored by the dashboard and never crosses the broker: it is the seed of an Ed25519 key pair,
the dashboard stores only that pair's public half (the *verifier*), and the agent proves it
holds the token by signing its host name and new public key with the token-derived key. A
leaked database row or a recorded enrollment message is therefore useless for enrolling
another host or another key. (An HMAC proof would have needed the raw token at rest on the
server until it was used, and a hash of the token used as the HMAC key is just as secret as
the token; a signature needs neither.)

This module imports no Django: the agent uses it on hosts that have only Python.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import os
import secrets
import sqlite3
import stat
from collections.abc import Iterator, Mapping
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from workers.schema import INGEST_TASK, ORDER_TASKS

ALG = "ed25519"
SIGNATURE_FIELD = "signature"
DASHBOARD_SIGNER = "dashboard"
PUBLIC_KEY_PREFIX = "ed25519:"
ENROLLMENT_TOKEN_PREFIX = "ocrdash-enroll-"
ENROLLMENT_PURPOSE = "ocrdash.enroll"
DEFAULT_MAX_SKEW = timedelta(minutes=5)

# Prefixed to every signed input, so a signature made here can never be valid for another
# protocol that happens to use the same key type, nor an enrollment proof for a message.
_MESSAGE_DOMAIN = b"ocrdash-message-v1\x00"
_ENROLLMENT_DOMAIN = b"ocrdash-enrollment-v1\x00"
_ENROLLMENT_KDF_INFO = b"ocrdash enrollment key v1"
_TOKEN_BYTES = 32
_KEY_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC


class SignatureError(ValueError):
    """A message that must not be acted on; ``str()`` is a reason fit for an error report.

    The reason never contains key material, a token or a proof.
    """


class FreshnessError(SignatureError):
    """A correctly signed message outside its time window (stale, expired or from the future)."""


class ReplayError(SignatureError):
    """A correctly signed message whose nonce was seen before.

    ``body`` is the verified body: the message is authentic, only not new, and the receiver
    may still decide that a broker's redelivery of unfinished work is not a replay.
    """

    def __init__(self, reason: str, body: dict[str, Any] | None = None) -> None:
        super().__init__(reason)
        self.body = body


class KeyFileError(SignatureError):
    """A key file that is missing, malformed, or readable by someone other than its owner."""


# ---------------------------------------------------------------- canonical form


# Deeper than any message we send; a hostile message nested deeper is refused, not recursed.
_MAX_DEPTH = 32


def _is_utf8(text: str) -> bool:
    # A lone surrogate has no UTF-8 form: the canonical bytes could not be built.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_json(value: Any, where: str, depth: int = 0) -> None:
    # json.dumps would quietly turn an int key into a string (so {1: a} and {"1": a} would
    # share a signature) and would reject a datetime only deep in the encoder; refuse both
    # here with the path to the bad value, so a producer bug is found at once.
    if depth > _MAX_DEPTH:
        raise TypeError(f"{where[:200]}: nested more than {_MAX_DEPTH} levels deep")
    if isinstance(value, str):
        if not value.isascii() and not _is_utf8(value):
            raise TypeError(f"{where[:200]}: a string holds a lone surrogate (not valid Unicode)")
        return
    if value is None or isinstance(value, bool | int):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TypeError(f"{where[:200]}: {value!r} has no JSON form")
        return
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check_json(item, f"{where}.{i}", depth + 1)
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where[:200]}: key {key!r:.100} is not a string")
            if not key.isascii() and not _is_utf8(key):
                raise TypeError(f"{where[:200]}: a key holds a lone surrogate (not valid Unicode)")
            _check_json(item, f"{where}.{key[:100]}", depth + 1)
        return
    raise TypeError(
        f"{where[:200]}: {type(value).__name__} is not JSON; sign the dict that crosses the broker "
        "(model_dump(mode='json')), where datetimes are already ISO strings"
    )


def canonical_bytes(message: Mapping[str, Any]) -> bytes:
    """The exact bytes a signature covers: the message without ``signature``, as compact JSON.

    Signer and verifier build this independently from their own dict, so it must not depend
    on anything but the values: keys sorted, no whitespace, UTF-8 (not ``\\uXXXX`` escapes),
    no NaN. Strings are taken as they are, never Unicode-normalised: two paths that differ
    only in normal form are two different files on disk and must not share a signature.
    Datetimes are expected as the ISO strings the JSON messages already carry; re-parsing and
    re-formatting them on one side only would change the bytes.
    """
    body = {k: v for k, v in message.items() if k != SIGNATURE_FIELD}
    _check_json(body, "message")
    return json.dumps(
        body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


# ---------------------------------------------------------------- keys


def _check_private_dir(directory: Path) -> None:
    info = os.stat(directory)
    if info.st_mode & 0o022:
        # Whoever can write to the folder can swap the key file for their own.
        raise KeyFileError(
            f"the key folder {directory} is writable by group or others "
            f"(mode {stat.S_IMODE(info.st_mode):04o}); make it 0700"
        )


def _read_key_file(path: Path) -> bytes:
    # Open once without following a symlink and check the descriptor we read from, so the
    # file checked is the file read. Explicit mode bits, not os.access: root passes access().
    try:
        fd = os.open(path, _KEY_FILE_FLAGS)
    except FileNotFoundError:
        raise KeyFileError(f"no key file at {path}") from None
    except OSError as exc:
        raise KeyFileError(f"cannot open the key file {path}: {exc.strerror or exc}") from None
    with open(fd, "rb") as fh:
        info = os.fstat(fh.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise KeyFileError(f"the key file {path} is not a regular file")
        if info.st_mode & 0o077:
            raise KeyFileError(
                f"the key file {path} is readable or writable by group or others "
                f"(mode {stat.S_IMODE(info.st_mode):04o}); it must be 0600"
            )
        if hasattr(os, "geteuid") and info.st_uid != os.geteuid():
            raise KeyFileError(f"the key file {path} belongs to uid {info.st_uid}, not to this user")
        return fh.read(64 * 1024)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """Read an existing private key (PKCS#8 PEM, unencrypted), checking its permissions."""
    path = Path(path)
    _check_private_dir(path.parent)
    data = _read_key_file(path)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise KeyFileError(f"the key file {path} does not hold an unencrypted PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"the key file {path} holds a {type(key).__name__}, not an Ed25519 key")
    return key


def load_or_create_private_key(path: Path) -> Ed25519PrivateKey:
    """The key at ``path``, made on first use; the file is 0600 and its folder 0700.

    Two processes starting at once (the worker and a CLI) must end with one key, not one
    each: the new key is written completely to a private temporary file and then hard-linked
    to ``path``, which fails if ``path`` exists. The loser discards its key and reads the
    winner's, which is complete, because a link only ever names a finished file.
    """
    path = Path(path)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    _check_private_dir(path.parent)
    if os.path.lexists(path):
        return load_private_key(path)

    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        # The umask can only remove bits, but be explicit: 0600 whatever the umask was.
        os.fchmod(fd, 0o600)
        with open(fd, "wb", closefd=False) as fh:
            fh.write(pem)
            fh.flush()
            os.fsync(fh.fileno())
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)
    except FileExistsError:
        return load_private_key(path)
    finally:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
    return key


def _public(key: Ed25519PrivateKey | Ed25519PublicKey) -> Ed25519PublicKey:
    return key.public_key() if isinstance(key, Ed25519PrivateKey) else key


def public_key_text(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """``ed25519:<base64 of the raw 32 bytes>``: short enough for an env variable or a form."""
    raw = _public(key).public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return PUBLIC_KEY_PREFIX + base64.b64encode(raw).decode("ascii")


def load_public_key(text: str) -> Ed25519PublicKey:
    """Parse ``public_key_text`` output; raises KeyFileError with a readable reason on junk."""
    if not isinstance(text, str):
        raise KeyFileError(f"a public key must be text, got {type(text).__name__}")
    text = text.strip()
    if not text.startswith(PUBLIC_KEY_PREFIX):
        raise KeyFileError(f"a public key must start with {PUBLIC_KEY_PREFIX!r}")
    try:
        raw = base64.b64decode(text[len(PUBLIC_KEY_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise KeyFileError("the public key is not valid base64") from None
    if len(raw) != 32:
        raise KeyFileError(f"an Ed25519 public key has 32 bytes, this one has {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


def pinned_public_key(value: str) -> Ed25519PublicKey:
    """The dashboard key an agent trusts, from a setting that holds the key or a file path.

    Meant for OCRDASH_DASHBOARD_PUBLIC_KEY: ``ed25519:...`` is the key itself, anything else
    is the path of a file containing it (a public key is not secret: no mode check).
    """
    value = value.strip()
    if not value:
        raise KeyFileError("no dashboard public key is configured")
    if value.startswith(PUBLIC_KEY_PREFIX):
        return load_public_key(value)
    try:
        text = Path(value).read_text(encoding="utf-8")
    except OSError as exc:
        raise KeyFileError(
            f"cannot read the dashboard public key from {value}: {exc.strerror or exc}"
        ) from None
    return load_public_key(text)


def key_fingerprint(key: Ed25519PrivateKey | Ed25519PublicKey | str) -> str:
    """``SHA256:`` and 16 hex digits of the raw public key: for pages, logs and audit rows."""
    pub = load_public_key(key) if isinstance(key, str) else _public(key)
    raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    digest = hashlib.sha256(raw).hexdigest()[:16]
    return "SHA256:" + ":".join(digest[i : i + 4] for i in range(0, 16, 4))


# ---------------------------------------------------------------- sign and verify


@dataclass(frozen=True)
class Verified:
    """A message whose signature checked out; ``body`` is the message without ``signature``.

    ``body`` is what goes on to ``schema.parse_order``/``parse_report`` (the schema forbids
    unknown fields, so the signature must be gone by then). ``nonce`` is for the replay check.
    """

    body: dict[str, Any]
    signer: str
    purpose: str
    nonce: str


def _signed_input(body: Mapping[str, Any], *, signer: str, purpose: str, nonce: str) -> bytes:
    envelope = {"alg": ALG, "signer": signer, "purpose": purpose, "nonce": nonce, "message": body}
    return _MESSAGE_DOMAIN + canonical_bytes(envelope)


def sign(
    message: Mapping[str, Any],
    private_key: Ed25519PrivateKey,
    *,
    signer: str,
    purpose: str,
    nonce: str | None = None,
) -> dict[str, Any]:
    """A copy of ``message`` with ``signature: {alg, signer, purpose, nonce, value}``.

    ``signer`` is ``"dashboard"`` for orders and the host name for reports; ``purpose`` is the
    task name the message is sent to. Signing an already signed message replaces the old
    signature (and its nonce): that is how a re-send gets a fresh nonce.
    """
    if not signer or not purpose:
        raise ValueError("signer and purpose are required")
    # str(): a StrEnum task name must sign, and read back in reasons, as its plain value.
    signer, purpose = str(signer), str(purpose)
    body = {k: v for k, v in message.items() if k != SIGNATURE_FIELD}
    nonce = nonce or secrets.token_hex(16)
    value = private_key.sign(_signed_input(body, signer=signer, purpose=purpose, nonce=nonce))
    return {
        **body,
        SIGNATURE_FIELD: {
            "alg": ALG,
            "signer": signer,
            "purpose": purpose,
            "nonce": nonce,
            "value": base64.b64encode(value).decode("ascii"),
        },
    }


def verify(
    message: Mapping[str, Any],
    public_key: Ed25519PublicKey,
    *,
    expected_signer: str,
    expected_purpose: str,
) -> Verified:
    """Check the signature of ``message``; raises SignatureError with the reason.

    Checks only the signature and its header. Time, host and replay are the callers' (or
    ``verify_order``/``verify_report``'s) job, because what counts as fresh differs.
    """
    expected_signer, expected_purpose = str(expected_signer), str(expected_purpose)
    if not isinstance(message, Mapping):
        raise SignatureError(f"a message must be a JSON object, got {type(message).__name__}")
    sig = message.get(SIGNATURE_FIELD)
    if sig is None:
        raise SignatureError("unsigned")
    if not isinstance(sig, Mapping) or not all(
        isinstance(sig.get(k), str) and sig.get(k) for k in ("alg", "signer", "purpose", "nonce", "value")
    ):
        raise SignatureError("malformed signature")
    if sig["alg"] != ALG:
        raise SignatureError(f"unsupported signature algorithm {sig['alg'][:32]!r}")
    try:
        value = base64.b64decode(sig["value"], validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError("malformed signature") from None
    body = {k: v for k, v in message.items() if k != SIGNATURE_FIELD}
    try:
        signed = _signed_input(body, signer=sig["signer"], purpose=sig["purpose"], nonce=sig["nonce"])
    except (TypeError, ValueError, RecursionError) as exc:
        # Hostile input (a lone surrogate, NaN, a 5,000-digit integer, deep nesting) is a
        # rejection with a reason, never an exception out of verify().
        raise SignatureError(f"not a JSON message: {str(exc)[:300]!r}") from None
    try:
        public_key.verify(value, signed)
    except InvalidSignature:
        # Checked before the signer's name: an unverified name is only a claim, and the
        # reason must not let an attacker probe which names we expect.
        raise SignatureError("bad signature") from None
    if sig["signer"] != expected_signer:
        raise SignatureError(f"signed by {sig['signer'][:128]!r}, expected {expected_signer!r}")
    if sig["purpose"] != expected_purpose:
        raise SignatureError(f"signed for {sig['purpose'][:200]!r}, received as {expected_purpose!r}")
    return Verified(body=body, signer=sig["signer"], purpose=sig["purpose"], nonce=sig["nonce"])


# ---------------------------------------------------------------- time


def parse_time(value: Any, field: str) -> datetime:
    """An ISO 8601 timestamp with a time zone; raises FreshnessError naming the field."""
    if not isinstance(value, str):
        raise FreshnessError(f"{field} is missing")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise FreshnessError(f"{field} is not an ISO 8601 time: {value[:40]!r}") from None
    if moment.tzinfo is None:
        raise FreshnessError(f"{field} has no time zone: {value[:40]!r}")
    return moment


def check_freshness(sent_at_iso: Any, *, now: datetime, max_skew: timedelta = DEFAULT_MAX_SKEW) -> datetime:
    """A report must be sent within ``max_skew`` of ``now``, either way (clocks drift)."""
    sent_at = parse_time(sent_at_iso, "sent_at")
    if sent_at > now + max_skew:
        raise FreshnessError(f"sent_at {sent_at_iso} is in the future (more than {max_skew} ahead)")
    if sent_at < now - max_skew:
        raise FreshnessError(f"sent_at {sent_at_iso} is too old (more than {max_skew} ago); replay refused")
    return sent_at


def check_not_expired(
    expires_at_iso: Any, *, now: datetime, max_skew: timedelta = DEFAULT_MAX_SKEW
) -> datetime:
    """An order is good until its ``expires_at`` (plus the skew allowance for a slow clock).

    A signed order must carry an expiry: without one, a captured order would stay valid for
    as long as the replay table remembers nonces, that is, for ever.
    """
    expires_at = parse_time(expires_at_iso, "expires_at")
    if now > expires_at + max_skew:
        raise FreshnessError(f"expired at {expires_at_iso}; nothing done")
    return expires_at


# ---------------------------------------------------------------- replay


class ReplayGuard:
    """The nonces an agent has accepted, in a small sqlite table in its state folder.

    ``seen_before`` claims a nonce with one INSERT OR IGNORE, so of two workers that receive
    the same message at once exactly one wins (sqlite's file lock serialises the writers;
    the busy timeout makes the other wait instead of failing). A nonce is kept until its
    message could no longer pass the time checks anyway, plus a margin for a clock that is
    set back; after that the time checks refuse the message, so forgetting it is safe.
    """

    # Rows outlive their message's window by this much, in case the clock is set back.
    KEEP_MARGIN = timedelta(hours=1)

    def __init__(self, state_dir: Path, *, filename: str = "replay.sqlite3") -> None:
        state_dir = Path(state_dir)
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.path = state_dir / filename
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS seen_nonces ("
                " signer TEXT NOT NULL, nonce TEXT NOT NULL, keep_until REAL NOT NULL,"
                " PRIMARY KEY (signer, nonce))"
            )
            # For the prune in seen_before: DELETE ... WHERE keep_until < now.
            db.execute("CREATE INDEX IF NOT EXISTS seen_nonces_keep_until ON seen_nonces (keep_until)")

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        with closing(sqlite3.connect(self.path, timeout=30, isolation_level=None)) as db:
            yield db

    def seen_before(
        self, nonce: str, *, signer: str, valid_until: datetime, now: datetime | None = None
    ) -> bool:
        """Claim ``nonce``; True if it was claimed before (the message is a replay).

        ``valid_until`` is the last moment the time checks would still accept the message
        (for an order: ``expires_at + max_skew``).
        """
        now = now or datetime.now(UTC)
        keep_until = (valid_until + self.KEEP_MARGIN).timestamp()
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute("DELETE FROM seen_nonces WHERE keep_until < ?", (now.timestamp(),))
                inserted = db.execute(
                    "INSERT OR IGNORE INTO seen_nonces (signer, nonce, keep_until) VALUES (?, ?, ?)",
                    (signer, nonce, keep_until),
                ).rowcount
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        return inserted == 0

    def __len__(self) -> int:
        with self._connect() as db:
            return db.execute("SELECT COUNT(*) FROM seen_nonces").fetchone()[0]


# ---------------------------------------------------------------- whole checks


def verify_order(
    message: Mapping[str, Any],
    dashboard_key: Ed25519PublicKey,
    *,
    host: str,
    task: str,
    guard: ReplayGuard,
    now: datetime | None = None,
    max_skew: timedelta = DEFAULT_MAX_SKEW,
    signer: str = DASHBOARD_SIGNER,
) -> dict[str, Any]:
    """Everything an agent checks before acting on an order; returns the body to parse.

    Raises SignatureError (or its FreshnessError/ReplayError) with the reason for the error
    report. ``task`` is the name of the task that received the message. ``signer`` is
    ``"dashboard"`` but for the one order an agent signs itself (its startup inventory,
    checked with its own key): the caller decides which tasks accept which signer.
    """
    now = now or datetime.now(UTC)
    task = str(task)
    verified = verify(message, dashboard_key, expected_signer=signer, expected_purpose=task)
    body = verified.body
    kind = body.get("kind")
    if isinstance(kind, str) and kind in ORDER_TASKS and ORDER_TASKS[kind] != task:
        raise SignatureError(f"a {kind!r} order was signed for {task}")
    if body.get("host") != host:
        raise SignatureError(f"order for host {str(body.get('host'))[:128]!r} reached {host!r}")
    sent_at = parse_time(body.get("sent_at"), "sent_at")
    if sent_at > now + max_skew:
        raise FreshnessError(f"sent_at {body['sent_at']} is in the future (more than {max_skew} ahead)")
    expires_at = check_not_expired(body.get("expires_at"), now=now, max_skew=max_skew)
    if guard.seen_before(verified.nonce, signer=verified.signer, valid_until=expires_at + max_skew, now=now):
        raise ReplayError(
            f"replayed: this signed order (nonce {verified.nonce[:32]}) was received before", body
        )
    return body


def verify_report(
    message: Mapping[str, Any],
    host_key: Ed25519PublicKey,
    *,
    host: str,
    now: datetime | None = None,
    max_skew: timedelta = DEFAULT_MAX_SKEW,
    purpose: str = INGEST_TASK,
) -> Verified:
    """The dashboard's check of a report from ``host`` (whose enrolled key is ``host_key``).

    Replay is not checked here: the dashboard remembers nonces in its database, where a
    unique constraint on ``(host, Verified.nonce)`` claims them in the ingest transaction.
    Reports outside the skew window are refused, so that table only needs rows younger than
    ``2 * max_skew``.
    """
    now = now or datetime.now(UTC)
    verified = verify(message, host_key, expected_signer=host, expected_purpose=purpose)
    if verified.body.get("host") != host:
        raise SignatureError(
            f"report names host {str(verified.body.get('host'))[:128]!r} but is signed by {host!r}"
        )
    check_freshness(verified.body.get("sent_at"), now=now, max_skew=max_skew)
    return verified


# ---------------------------------------------------------------- enrollment


def new_enrollment_token() -> str:
    """A one-time token for an admin to hand to one host's installer; shown once, never stored."""
    raw = secrets.token_bytes(_TOKEN_BYTES)
    return ENROLLMENT_TOKEN_PREFIX + base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _enrollment_key(token: str) -> Ed25519PrivateKey:
    token = token.strip() if isinstance(token, str) else ""
    encoded = token[len(ENROLLMENT_TOKEN_PREFIX) :]
    try:
        raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    except (binascii.Error, ValueError):
        raw = b""
    if not token.startswith(ENROLLMENT_TOKEN_PREFIX) or len(raw) != _TOKEN_BYTES:
        # Say what is wrong with the shape only: a truncated paste is the usual cause.
        raise KeyFileError(
            f"an enrollment token starts with {ENROLLMENT_TOKEN_PREFIX!r} and has 43 more characters"
        )
    # HKDF turns the token into a key seed bound to this one use; the token's 256 random
    # bits make a salt unnecessary.
    seed = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_ENROLLMENT_KDF_INFO).derive(raw)
    return Ed25519PrivateKey.from_private_bytes(seed)


def enrollment_verifier(token: str) -> str:
    """What the dashboard stores for a token instead of the token: a public key text.

    It can check proofs but not make them, so reading it from the database does not let
    anyone enroll. ``key_fingerprint(verifier)`` is a safe id to show for the token.
    """
    return public_key_text(_enrollment_key(token))


def _enrollment_input(host: str, public_key_text: str, report_id: str) -> bytes:
    fields = {"host": host, "public_key": public_key_text, "report_id": report_id}
    return _ENROLLMENT_DOMAIN + canonical_bytes(fields)


def enrollment_proof(token: str, *, host: str, public_key_text: str, report_id: str) -> str:
    """The agent's proof that it holds ``token``, bound to its host name and new public key.

    The proof travels instead of the token; it only ever enrolls this key for this host.
    """
    value = _enrollment_key(token).sign(_enrollment_input(host, public_key_text, report_id))
    return base64.b64encode(value).decode("ascii")


def verify_enrollment_proof(
    verifier: str, *, host: str, public_key_text: str, report_id: str, proof: str
) -> bool:
    """True if ``proof`` was made with the token behind ``verifier`` for exactly these values."""
    try:
        value = base64.b64decode(proof, validate=True)
        load_public_key(verifier).verify(value, _enrollment_input(host, public_key_text, report_id))
    except (InvalidSignature, KeyFileError, binascii.Error, ValueError, TypeError):
        return False
    return True
