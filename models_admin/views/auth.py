"""The signed-in user's own page: who am I here, and what may I do."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from ..roles import GRANTS, Action, can, roles_of

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


def account(request: HttpRequest) -> HttpResponse:
    rows = [(WHAT[a], can(request.user, a), ", ".join(sorted(r.value for r in GRANTS[a]))) for a in Action]
    return render(
        request,
        "models_admin/account.html",
        {"roles": sorted(r.value for r in roles_of(request.user)), "rows": rows},
    )
