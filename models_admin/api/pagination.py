"""The API's pages: a capped size, and a 400 for a limit or offset that is not a page.

The append-only lists (the audit, rejected reports) page by cursor instead: the next page
starts after the last row seen, so a page is an index range scan with no COUNT(*) of a table
that only grows, and rows written meanwhile neither shift nor repeat what a script walks.

DRF's LimitOffsetPagination had no ``max_limit`` (``?limit=1000000`` returned everything) and
passes any integer to the database (``?limit=10**23`` was a 500: bigint out of range). A
limit above the cap is lowered to it (the ``next`` link carries on); a limit or offset that is
not a whole number in range answers 400 with the rule.
"""

from __future__ import annotations

from django.conf import settings
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import CursorPagination, LimitOffsetPagination

from models_admin.security.params import MAX_OFFSET


def _whole(request, name: str, low: int, high: int | None) -> int | None:
    """The query parameter ``name`` as an int in [low, high], None if absent; else a 400 with the rule."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or value < low or (high is not None and value > high):
        rule = f"a whole number from {low}" + (f" to {high}" if high is not None else " up")
        raise ValidationError({name: [f"{name} must be {rule}"]})
    return value


class CappedLimitOffsetPagination(LimitOffsetPagination):
    @property
    def max_limit(self) -> int:  # type: ignore[override]
        return settings.OCRDASH["API_MAX_PAGE_SIZE"]

    def _whole(self, request, name: str, low: int, high: int | None) -> int | None:
        return _whole(request, name, low, high)

    def get_limit(self, request) -> int | None:
        limit = self._whole(request, self.limit_query_param, 1, MAX_OFFSET)
        return self.default_limit if limit is None else min(limit, self.max_limit)

    def get_offset(self, request) -> int:
        return self._whole(request, self.offset_query_param, 0, MAX_OFFSET) or 0


class _AppendOnlyCursorPagination(CursorPagination):
    """``?limit=`` as on the other lists (capped the same way), then ``next`` holds the cursor."""

    page_size_query_param = "limit"

    @property
    def max_page_size(self) -> int:  # type: ignore[override]
        return settings.OCRDASH["API_MAX_PAGE_SIZE"]

    def get_page_size(self, request) -> int | None:
        limit = _whole(request, self.page_size_query_param, 1, MAX_OFFSET)
        return self.page_size if limit is None else min(limit, self.max_page_size)

    def paginate_queryset(self, queryset, request, view=None):
        if "offset" in request.query_params:
            # Silently ignoring it would hand a script the first page again and again.
            raise ValidationError({"offset": ["this list pages by cursor: follow the next link, not offset"]})
        return super().paginate_queryset(queryset, request, view)


class AuditCursorPagination(_AppendOnlyCursorPagination):
    ordering = ("-at", "-id")


class RejectedReportCursorPagination(_AppendOnlyCursorPagination):
    ordering = ("-received_at", "-id")
