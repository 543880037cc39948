"""Enrollment: a host proves it holds a one-time token, and the token never travels.

The token an admin creates is the seed of an Ed25519 key pair. The dashboard stores only
that pair's public half (the *verifier*), and the agent proves it holds the token by signing
its host name and new public key with the token-derived key. A leaked database row or a
recorded enrollment message is therefore useless for enrolling another host or another key.
(An HMAC proof would have needed the raw token at rest on the server until it was used, and
a hash of the token used as the HMAC key is just as secret as the token; a signature needs
neither.)
"""

from __future__ import annotations

import base64
import binascii
import secrets

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from workers.signing.canonical import canonical_bytes
from workers.signing.errors import KeyFileError
from workers.signing.keys import load_public_key, public_key_text

ENROLLMENT_TOKEN_PREFIX = "ocrdash-enroll-"

# Prefixed to every proof's input, so a proof can never pass as a message signature.
_ENROLLMENT_DOMAIN = b"ocrdash-enrollment-v1\x00"
_ENROLLMENT_KDF_INFO = b"ocrdash enrollment key v1"
_TOKEN_BYTES = 32


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
