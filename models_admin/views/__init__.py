"""The dashboard's pages, one module per area. Shared helpers live here.

Every mutating view is POST only, checks ``roles.can`` (the one permission map), changes
state only through ``workflow`` (which writes the audit row) and redirects (post-redirect-get)
with a flash message. LoginRequiredMiddleware guards every page; views check roles.
"""

from __future__ import annotations

from functools import cached_property

from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest
from django.shortcuts import get_object_or_404

from ..flash import flash_error, flash_form_errors
from ..models import Host
from ..security.roles import Action, require

# The views' permission check lives with the roles, their flash messages in flash.py (the
# notification settings pages show them too).
__all__ = ["flash_error", "flash_form_errors", "require"]


def get_host_for_user(request: HttpRequest, name: str, action: Action = Action.VIEW) -> Host:
    """The host named ``name`` if the user may do ``action`` on it (404 before 403: a name
    that does not exist says nothing about permissions)."""
    host = get_object_or_404(Host, name=name)
    require(request, action)
    return host


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
