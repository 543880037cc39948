"""The signed-in user's own page: who am I here, and what may I do."""

from __future__ import annotations

from django.contrib import messages
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_POST

from ..api.tokens import issue_token, revoke_token
from ..models import ApiToken, AuditEvent
from ..security.roles import GRANTS, Action, can, roles_of

WHAT = {
    Action.VIEW: "See the fleet, requests, models and the audit log",
    Action.PROPOSE: "Propose deletions (by hand or by policy)",
    Action.REQUEST_INVENTORY: "Ask a host for a fresh inventory",
    Action.REQUEST_FREE: "Ask a host to free the OCR engine's resources",
    Action.APPROVE: "Approve or reject requests proposed by someone else",
    Action.RESTORE: "Propose restoring files from quarantine",
    Action.MANAGE_HOSTS: "Accept new hosts, retire old ones",
    Action.CONFIGURE: "Change schedules and retention",
}


def account(request: HttpRequest, new_key: str | None = None) -> HttpResponse:
    """Roles and what they allow, and the user's API token (made and revoked here)."""
    rows = [(WHAT[a], can(request.user, a), ", ".join(sorted(r.value for r in GRANTS[a]))) for a in Action]
    response = render(
        request,
        "models_admin/account.html",
        {
            "roles": sorted(r.value for r in roles_of(request.user)),
            "rows": rows,
            "token": ApiToken.objects.filter(user_id=request.user.pk).first() if request.user.pk else None,
            "new_key": new_key,
            "nav": "account",
        },
    )
    add_never_cache_headers(response)  # a new key is on this page once: keep it out of caches
    return response


@require_POST
def token_create(request: HttpRequest) -> HttpResponse:
    """Issue the user's API token (replacing the old one) and show its key this once."""
    with transaction.atomic():
        key = issue_token(request.user)
        AuditEvent.record(
            AuditEvent.Action.API_TOKEN_ISSUED, actor=request.user.get_username(), prefix=key[:8]
        )
    return account(request, new_key=key)


@require_POST
def token_revoke(request: HttpRequest) -> HttpResponse:
    with transaction.atomic():
        if revoke_token(request.user):
            AuditEvent.record(AuditEvent.Action.API_TOKEN_REVOKED, actor=request.user.get_username())
            messages.success(request, "API token revoked: calls with it are refused from now on.")
        else:
            messages.info(request, "You had no API token.")
    return redirect("ocrdash-account")
