"""Failed logins in the audit trail, bounded however hard someone guesses.

django-axes counts the failures and locks a user name or an address (settings.AXES_*); this
module only decides what the audit trail keeps of them. One row per failure would let a
guesser grow the append-only table without limit, so it keeps:

- the first failure of a (user name, address) pair within the lockout window,
- one "locked out" row when axes locks that pair,
- and at most ``LOGIN_AUDIT_PER_MINUTE`` such rows a minute in all (many names from many
  addresses); what is left out is counted in a log line instead.

Each row says how the rest can be found: axes keeps the count of every pair in its
AccessAttempt table (Django admin, *Axes*), where an administrator also unlocks it.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from ..models import AuditEvent

log = logging.getLogger(__name__)
Action = AuditEvent.Action
LOGIN_AUDIT_PER_MINUTE = 30


def _window() -> timedelta:
    cool_off = settings.AXES_COOLOFF_TIME
    return cool_off if isinstance(cool_off, timedelta) else timedelta(minutes=15)


def client_address(request) -> str:
    """The address axes locks on (its ipware reading), else the connection's."""
    if request is None:
        return ""
    return str(getattr(request, "axes_ip_address", "") or request.META.get("REMOTE_ADDR", ""))


def record_login_event(action: str, username: str, address: str, **details) -> bool:
    """Append a login event unless the pair already has one in the window or the minute is full.

    Returns whether a row was written. Two processes racing may both write the pair's row:
    harmless, the bound per minute is what keeps the table small.
    """
    now = timezone.now()
    actor = (username or "?")[:150]
    events = AuditEvent.objects.filter(action=action)
    if events.filter(actor=actor, at__gte=now - _window(), details__remote_addr=address).exists():
        return False
    if events.filter(at__gte=now - timedelta(minutes=1)).count() >= LOGIN_AUDIT_PER_MINUTE:
        log.warning("login event not audited (more than %d a minute): %s", LOGIN_AUDIT_PER_MINUTE, action)
        return False
    AuditEvent.record(action, actor=actor, remote_addr=address, **details)
    return True
