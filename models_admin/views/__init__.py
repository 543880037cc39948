"""The dashboard's pages, one module per area. Shared helpers live here.

Every mutating view is POST only, checks ``roles.can`` (the one permission map), changes
state only through ``workflow`` (which writes the audit row) and redirects (post-redirect-get)
with a flash message. LoginRequiredMiddleware guards every page; views check roles.
"""

from __future__ import annotations

from functools import cached_property

from django import forms
from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest
from django.shortcuts import get_object_or_404

from ..models import Host
from ..security.roles import Action, require

__all__ = ["require"]  # the views' permission check lives with the roles


def get_host_for_user(request: HttpRequest, name: str, action: Action = Action.VIEW) -> Host:
    """The host named ``name`` if the user may do ``action`` on it (404 before 403: a name
    that does not exist says nothing about permissions)."""
    host = get_object_or_404(Host, name=name)
    require(request, action)
    return host


def flash_error(request: HttpRequest, exc: Exception | str) -> None:
    text = str(exc)
    messages.error(request, text[:1].upper() + text[1:])


def flash_form_errors(request: HttpRequest, form: forms.Form) -> None:
    """Why a posted form was refused, every error of every field in one message worded as
    ``flash_error`` words a refusal (the page it redirects to shows no form to mark them on).
    Each error's closing full stop goes, so that the "; " between them reads as one sentence."""
    flash_error(request, "; ".join(str(e).rstrip(".") for errors in form.errors.values() for e in errors))


class CappedPaginator(Paginator):
    """Pages of a table that only grows (the audit trail): counts at most ``cap`` rows.

    A plain Paginator runs count(*) over every matching row on every page view, which grows
    with the table forever; this one asks for ``cap + 1`` rows' worth and says "more than" past
    that. Filters narrow a search; nobody pages through 200 pages of 50.

    The count is taken without the page's order: ``ORDER BY at DESC, id DESC LIMIT 10001``
    walked the time index and sorted each second's ties by id (30 ms at 50,000 events), where
    any 10,001 matching rows, the first ones a scan meets, give the same number in 1 ms.
    """

    cap = 10_000

    @cached_property
    def count(self) -> int:
        rows: QuerySet = self.object_list  # type: ignore[assignment]  # always a QuerySet here
        return rows.order_by()[: self.cap + 1].count()

    @property
    def capped(self) -> bool:
        return self.count > self.cap
