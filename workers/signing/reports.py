"""The dashboard's check of a report's signature, signer, host and time."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from workers.schema import INGEST_TASK
from workers.signing.envelope import Verified, verify
from workers.signing.errors import SignatureError
from workers.signing.freshness import DEFAULT_MAX_SKEW, check_freshness


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

    Replay is not checked here, and the dashboard keeps no nonces: the report id is inside
    what the signature covers and unique among received reports, so a copy replayed within
    the skew window is a duplicate of itself, and one replayed later is refused here as stale.
    """
    now = now or datetime.now(UTC)
    verified = verify(message, host_key, expected_signer=host, expected_purpose=purpose)
    if verified.body.get("host") != host:
        raise SignatureError(
            f"report names host {str(verified.body.get('host'))[:128]!r} but is signed by {host!r}"
        )
    check_freshness(verified.body.get("sent_at"), now=now, max_skew=max_skew)
    return verified
