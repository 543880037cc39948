"""The one family of errors for a message that must not be acted on."""

from __future__ import annotations

from typing import Any


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
    """A key, key file or token that is missing, malformed, or readable by someone else."""
