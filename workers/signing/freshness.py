"""Time checks: a message is acted on only inside its window, whatever the transport did.

Clocks drift, so every bound allows ``max_skew`` either way.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from workers.signing.errors import FreshnessError

DEFAULT_MAX_SKEW = timedelta(minutes=5)


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

    A signed order must carry an expiry: the agent's replay guard forgets a nonce once its
    order can no longer pass this check, so an order without one would have to be remembered
    for ever, and a captured copy would stay valid for ever once it was forgotten.
    """
    expires_at = parse_time(expires_at_iso, "expires_at")
    if now > expires_at + max_skew:
        raise FreshnessError(f"expired at {expires_at_iso}; nothing done")
    return expires_at
