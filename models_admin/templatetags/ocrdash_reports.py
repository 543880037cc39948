"""Presentation helpers of the reports and settings pages."""

from __future__ import annotations

from django import template

register = template.Library()


@register.filter
def minutes(value: int | None) -> str:
    """An interval in the largest whole unit: 90 -> '90 minutes', 120 -> '2 hours', 1440 -> 'day'."""
    if not value:
        return "never"
    for size, unit in ((7 * 24 * 60, "week"), (24 * 60, "day"), (60, "hour"), (1, "minute")):
        if value % size == 0:
            n = value // size
            return unit if n == 1 else f"{n} {unit}s"
    return f"{value} minutes"
