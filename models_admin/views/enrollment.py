"""Enrollment: the tokens that let a host join, the dashboard's public key, and key revocation.

The page that shows a new token is the one exception to post-redirect-get: the token exists
only in the response to the POST that made it (never in the database, the session, a flash
message or the audit trail), so a redirect would have nowhere to take it from. The response
is marked no-store so the browser does not keep it either.
"""

from __future__ import annotations

from collections.abc import Callable

from django import forms
from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_POST

from workers.schema import HOST_NAME_PATTERN

from ..errors import DomainError
from ..fleet import hosts, trust
from ..models import EnrollmentToken, Host, HostKey
from ..security.roles import Action
from . import flash_error, get_host_for_user, require

LISTED_TOKENS = 50


class TokenForm(forms.Form):
    label = forms.CharField(max_length=200, required=False)
    host_name = forms.RegexField(regex=HOST_NAME_PATTERN, max_length=128, required=False)
    hours = forms.FloatField(min_value=0.1, max_value=24 * 365, required=False)


def _page(request: HttpRequest, form: TokenForm, **extra) -> HttpResponse:
    now = timezone.now()
    tokens = EnrollmentToken.objects.select_related("used_by_host")[:LISTED_TOKENS]
    # (token, its state now) pairs: the state is worked out here, not hung on the instance.
    rows = [(token, token.state(now)) for token in tokens]
    response = render(
        request,
        "models_admin/enrollment.html",
        {
            "form": form,
            "tokens": rows,
            "public_key": trust.dashboard_public_key(),
            "fingerprint": trust.dashboard_fingerprint(),
            "default_hours": settings.OCRDASH["ENROLLMENT_TOKEN_HOURS"],
            "nav": "enrollment",
            **extra,
        },
    )
    add_never_cache_headers(response)
    return response


def index(request: HttpRequest) -> HttpResponse:
    require(request, Action.MANAGE_HOSTS)
    return _page(request, TokenForm())


@require_POST
def create(request: HttpRequest) -> HttpResponse:
    require(request, Action.MANAGE_HOSTS)
    form = TokenForm(request.POST)
    if not form.is_valid():
        return _page(request, form)
    row, token = trust.create_token(
        request.user.get_username(),
        label=form.cleaned_data["label"],
        host_name=form.cleaned_data["host_name"],
        hours=form.cleaned_data["hours"],
    )
    return _page(request, TokenForm(), created=row, token=token)


@require_POST
def revoke(request: HttpRequest, token_id) -> HttpResponse:
    require(request, Action.MANAGE_HOSTS)
    if not EnrollmentToken.objects.filter(id=token_id).exists():
        raise Http404("no such token")
    try:
        row = trust.revoke_token(token_id, request.user.get_username())
    except DomainError as exc:
        flash_error(request, exc)
    else:
        messages.success(request, f"Token {row.fingerprint} revoked: no host can enroll with it.")
    return redirect("ocrdash-enrollment")


def _key_decision(
    request: HttpRequest, name: str, decide: Callable[[Host, str], HostKey], done: str
) -> HttpResponse:
    """Revoke, accept or refuse a host's key: the same permission, error handling and
    redirect. ``done`` is the success message, with ``{key}`` (the fingerprint of the key the
    decision was about) and ``{host}``."""
    host = get_host_for_user(request, name, Action.MANAGE_HOSTS)
    try:
        key = decide(host, request.user.get_username())
    except DomainError as exc:
        flash_error(request, exc)
    else:
        messages.success(request, done.format(key=key.fingerprint, host=host.name))
    return redirect("ocrdash-host", name=host.name)


@require_POST
def revoke_host_key(request: HttpRequest, name: str) -> HttpResponse:
    return _key_decision(
        request,
        name,
        hosts.revoke_key,
        "Key {key} of {host} revoked: its messages are refused until it enrolls a new key with a new token.",
    )


@require_POST
def accept_new_key(request: HttpRequest, name: str) -> HttpResponse:
    return _key_decision(
        request,
        name,
        hosts.accept_new_key,
        "New key {key} of {host} accepted: its old key is no longer valid.",
    )


@require_POST
def reject_new_key(request: HttpRequest, name: str) -> HttpResponse:
    return _key_decision(
        request, name, hosts.reject_new_key, "New key {key} of {host} refused: the old key stays."
    )
