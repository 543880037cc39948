"""The agent's whole check of an order, before it touches a file."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from workers.schema import ORDER_TASKS
from workers.signing.envelope import DASHBOARD_SIGNER, verify
from workers.signing.errors import FreshnessError, ReplayError, SignatureError
from workers.signing.freshness import DEFAULT_MAX_SKEW, check_not_expired, parse_time
from workers.signing.replay import ReplayGuard


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
