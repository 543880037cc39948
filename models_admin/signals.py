"""Failed logins are security events: they go to the audit trail like every other action."""

from django.contrib.auth.signals import user_login_failed
from django.dispatch import receiver

from .models import AuditEvent


@receiver(user_login_failed)
def _audit_login_failed(sender, credentials: dict, request=None, **kwargs) -> None:
    # Never the password: only the name that was tried and where from.
    remote = request.META.get("REMOTE_ADDR", "") if request is not None else ""
    AuditEvent.record(
        AuditEvent.Action.LOGIN_FAILED,
        actor=str(credentials.get("username", ""))[:150] or "?",
        remote_addr=remote,
    )
