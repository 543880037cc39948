"""Failed logins and lockouts are security events: they go to the audit trail, bounded
(security/logins.py)."""

from axes.signals import user_locked_out
from django.contrib.auth.signals import user_login_failed
from django.dispatch import receiver

from .models import AuditEvent
from .security.logins import client_address, record_login_event


@receiver(user_login_failed)
def _audit_login_failed(sender, credentials: dict, request=None, **kwargs) -> None:
    # Never the password: only the name that was tried and where from.
    record_login_event(
        AuditEvent.Action.LOGIN_FAILED,
        str(credentials.get("username", "")),
        client_address(request),
        note="first failure of this name and address in the lockout window; see Axes in the admin",
    )


@receiver(user_locked_out)
def _audit_locked_out(sender, request=None, username=None, ip_address=None, **kwargs) -> None:
    record_login_event(
        AuditEvent.Action.LOGIN_LOCKED_OUT,
        str(username or ""),
        str(ip_address or client_address(request)),
        note="logins of this name and from this address are refused until the lockout ends or an "
        "administrator unlocks them",
    )
