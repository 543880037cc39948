"""The dashboard's own signals, and the audit of failed logins.

Domain signals let a lower part announce a transition without importing the parts that
react to it (the layers point down only): ``fleet/hosts.py`` retires a host and the
approvals expire its proposals, the models pages drop its files, a campaign stops waiting for
it; ``approvals/workflow.py`` finishes a request and its campaign moves on. Receivers are
connected in ``apps.py`` and run synchronously, inside the sender's transaction and under its
locks (the host row first): a receiver that must not hold them defers with
``transaction.on_commit``.

Failed logins and lockouts are security events: they go to the audit trail, bounded
(security/logins.py).
"""

from axes.signals import user_locked_out
from django.contrib.auth.signals import user_login_failed
from django.dispatch import Signal, receiver

from .models import AuditEvent
from .security.logins import client_address, record_login_event

# A host was retired (``host=``), under its row lock, before the transaction commits.
host_retired = Signal()
# A retired host was accepted again (``host=``), under its row lock.
host_returned = Signal()
# A prune or restore request left the open states for good or as failed/partial (``request=``),
# under its host's and its own row lock.
request_finished = Signal()


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
