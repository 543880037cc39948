"""Keys: the private key files (0600 in a 0700 folder), public key text and fingerprints.

A private key never leaves its file but to sign; a public key travels as ``ed25519:<base64>``
and is shown on pages and in logs only by its fingerprint.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
import stat
from contextlib import suppress
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from workers.signing.errors import KeyFileError

PUBLIC_KEY_PREFIX = "ed25519:"
_KEY_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC


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
