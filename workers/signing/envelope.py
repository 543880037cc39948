"""The envelope: ``sign`` puts a ``signature`` field on a message, ``verify`` checks it.

The signature covers ``signed_bytes``: a domain prefix, then the canonical JSON of the header
(algorithm, signer, purpose, nonce) with the message inside it. Only the signature and its
header are checked here; host, time and replay are the callers' (``orders``, ``reports``),
because what counts as fresh differs.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from workers.signing.canonical import canonical_bytes
from workers.signing.errors import SignatureError

ALG = "ed25519"
SIGNATURE_FIELD = "signature"
DASHBOARD_SIGNER = "dashboard"

# Prefixed to every signed input, so a signature made here can never be valid for another
# protocol that happens to use the same key type, nor for an enrollment proof.
_MESSAGE_DOMAIN = b"ocrdash-message-v1\x00"


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


def unsigned(message: Mapping[str, Any]) -> dict[str, Any]:
    """``message`` without its ``signature`` field: the body that is signed and parsed."""
    return {k: v for k, v in message.items() if k != SIGNATURE_FIELD}


def signed_bytes(body: Mapping[str, Any], *, signer: str, purpose: str, nonce: str) -> bytes:
    """The exact bytes the Ed25519 signature of ``body`` covers (part of the wire format).

    The header travels inside them, so changing any of signer, purpose or nonce after
    signing breaks the signature like changing a field of the message does.
    """
    header = {"alg": ALG, "signer": signer, "purpose": purpose, "nonce": nonce, "message": body}
    return _MESSAGE_DOMAIN + canonical_bytes(header)


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
    body = unsigned(message)
    nonce = nonce or secrets.token_hex(16)
    value = private_key.sign(signed_bytes(body, signer=signer, purpose=purpose, nonce=nonce))
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
    ``orders.verify_order``/``reports.verify_report``'s) job, because what counts as fresh differs.
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
    body = unsigned(message)
    try:
        signed = signed_bytes(body, signer=sig["signer"], purpose=sig["purpose"], nonce=sig["nonce"])
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
