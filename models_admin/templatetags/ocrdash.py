"""Small presentation helpers shared by every page: badges, sizes, times, the nav's counter."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from django import template
from django.conf import settings
from django.contrib.humanize.templatetags.humanize import naturaltime
from django.template.defaultfilters import filesizeformat
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.html import format_html

from ..models import Campaign, Host, PruneItem, PruneRequest
from ..security.roles import roles_of

register = template.Library()

# One colour per meaning, everywhere: green = done/fine, yellow = waits for a person,
# blue = in flight, red = went wrong, grey = over without effect.
STATE_COLOURS: dict[str, str] = {
    PruneRequest.State.PROPOSED: "warning",
    PruneRequest.State.APPROVED: "info",
    PruneRequest.State.DISPATCHED: "primary",
    PruneRequest.State.COMPLETED: "success",
    PruneRequest.State.PARTIAL: "warning",
    PruneRequest.State.FAILED: "danger",
    PruneRequest.State.REJECTED: "secondary",
    PruneRequest.State.EXPIRED: "secondary",
    PruneRequest.State.WITHDRAWN: "secondary",
    Host.Status.PENDING: "warning",
    Host.Status.ACTIVE: "success",
    Host.Status.RETIRED: "secondary",
    # Campaigns and their per-host parts (campaigns/).
    "running": "primary",
    "paused": "warning",
    "halted": "danger",
    "cancelled": "secondary",
    "planned": "secondary",
    "sent": "primary",
    "done": "success",
    "skipped": "secondary",
}
OUTCOME_COLOURS = {
    "pending": "secondary",
    "quarantined": "success",
    "deleted": "success",
    "restored": "success",
    "quarantined, restored": "success",
    "skipped_changed": "warning",
    "skipped_missing": "warning",
    "skipped_in_use": "warning",
    "refused": "danger",
    "error": "danger",
    "missing": "warning",
}


@register.simple_tag
def pending_request_count() -> int:
    """For the nav's badge: one COUNT served by the request_state_time index."""
    return PruneRequest.objects.filter(state=PruneRequest.State.PROPOSED).count()


@register.simple_tag
def pending_campaign_count() -> int:
    """For the nav's badge: campaigns waiting for an approver (a handful of rows at most)."""
    return Campaign.objects.filter(state=Campaign.State.PROPOSED).count()


@register.simple_tag
def user_roles(user) -> str:
    return ", ".join(sorted(r.value for r in roles_of(user))) or "no role"


@register.simple_tag
def state_badge(value: str, label: str = "") -> str:
    colour = STATE_COLOURS.get(value, "secondary")
    text_class = " text-dark" if colour in ("warning", "info") else ""
    return format_html(
        '<span class="badge text-bg-{}{}">{}</span>', colour, text_class, label or value.replace("_", " ")
    )


# What an outcome means, said to a person (the badge keeps the short word).
OUTCOME_WORDS = {
    "skipped_changed": ("skipped", "the file changed since the inventory"),
    "skipped_missing": ("skipped", "the file was no longer there"),
    "skipped_in_use": ("skipped", "the file was in use"),
    "refused": ("refused", "the agent would not touch this path"),
    "error": ("error", ""),
    "missing": ("missing", "no longer in quarantine when it was purged"),
    # The deletions report's and a model lifecycle's word for a prune's file moved back since
    # (``inventory.reports.deletion_row``): back in its folder, no longer in quarantine.
    "quarantined, restored": ("restored", "quarantined, then moved back"),
}


@register.filter
def outcome_badge(value: str) -> str:
    colour = OUTCOME_COLOURS.get(value, "secondary")
    word, words = OUTCOME_WORDS.get(value, (dict(PruneItem.Outcome.choices).get(value, value), ""))
    return format_html(
        '<span class="badge text-bg-{}{}">{}</span>{}',
        colour,
        " text-dark" if colour == "warning" else "",
        word.replace("_", " "),
        format_html(" <span>{}</span>", words) if words else "",
    )


_ERRNO = re.compile(r"^\[Errno \d+\] ")
_EXCEPTION = re.compile(r"^(?:[A-Za-z_][\w.]*(?:Error|Exception|Exit)): ")


@register.filter
def in_words(detail: str) -> str:
    """An agent's detail without Python's dressing: "[Errno 13] Permission denied: 'x'" and
    "PermissionError: ..." become "Permission denied: 'x'"."""
    text = (detail or "").strip()
    for _ in range(2):
        text = _EXCEPTION.sub("", _ERRNO.sub("", text))
    return text[:1].upper() + text[1:]


@register.filter
def reltime(value: datetime | None, empty: str = "never") -> str:
    """'3 minutes ago' with the exact time on hover: readable at a glance, exact when needed.

    The one way pages show a relative time: tests/test_absolute_times.py visits every page and
    fails on a relative time that has no absolute one around it."""
    if value is None:
        return format_html('<span class="text-body-secondary">{}</span>', empty)
    exact = timezone.localtime(value).strftime("%Y-%m-%d %H:%M:%S %Z")
    return format_html(
        '<time datetime="{}" title="{}">{}</time>', value.isoformat(), exact, naturaltime(value)
    )


@register.filter
def size(value: int | None) -> str:
    """Human size with the exact byte count on hover."""
    if value is None:
        return format_html('<span class="text-body-secondary">{}</span>', "\N{EN DASH}")
    return format_html('<span title="{} bytes">{}</span>', f"{value:,}", filesizeformat(value))


@register.filter
def short_sha(value: str) -> str:
    if not value:
        return format_html('<span class="text-body-secondary">{}</span>', "not hashed")
    return format_html('<code class="sha" title="{}">{}</code>', value, value[:12])


@register.filter
def is_stale_name(name: str) -> bool:
    return name.startswith(settings.OCRDASH["STALE_PREFIX"])


@register.filter
def used_percent(host: Host) -> int | None:
    if not host.disk_total or host.disk_free is None:
        return None
    return round(100 * (host.disk_total - host.disk_free) / host.disk_total)


@register.filter
def bar_colour(percent: int | None) -> str:
    if percent is None:
        return "secondary"
    return "danger" if percent >= 90 else "warning" if percent >= 75 else "success"


@register.simple_tag(takes_context=True)
def sort_header(context, field: str, label: str, numeric: bool = False) -> str:
    """A column header that sorts by ``field``; a second click reverses. Keeps the filters."""
    request = context["request"]
    current = context.get("sort") or "name"
    query = request.GET.copy()
    query.pop("page", None)  # a new order starts on its first page
    query["sort"] = f"-{field}" if current == field else field
    arrow = " ▲" if current == field else " ▼" if current == f"-{field}" else ""
    return format_html(
        '<th class="{}" scope="col"><a href="?{}" class="{}">{}{}</a></th>',
        "num" if numeric else "",
        query.urlencode(),
        "sorted" if arrow else "",
        label,
        arrow,
    )


@register.simple_tag(takes_context=True)
def page_url(context, number: int) -> str:
    query = context["request"].GET.copy()
    query["page"] = number
    return "?" + query.urlencode()


@register.filter
def pairs(mapping: dict | None) -> list:
    """``mapping.items()`` for templates: ``{{ d.items }}`` looks up a key named "items" first,
    and audit details do carry one (a request's item count)."""
    return list(mapping.items()) if mapping else []


@register.filter
def get_item(mapping: dict, key):
    return mapping.get(key) if mapping else None


@register.filter
def timedelta_days(value) -> str:
    """A file's age in words an approver reads at once: '3 days', '14 months'."""
    if value is None:
        return "\N{EN DASH}"
    days = value.days
    if days < 1:
        return "today"
    if days < 31:
        return f"{days} day{'s' if days != 1 else ''}"
    if days < 730:
        return f"{max(days // 30, 1)} month{'s' if days >= 60 else ''}"
    return f"{days // 365} years"


@register.filter
def signed_size(value: int) -> str:
    sign = "+" if value >= 0 else "\N{MINUS SIGN}"
    return f"{sign}{filesizeformat(abs(value))}"


@register.filter
def duration_words(value) -> str:
    """A timedelta as "15 minutes" / "2 hours" (the login lockout page)."""
    seconds = int(value.total_seconds()) if hasattr(value, "total_seconds") else int(value or 0)
    if seconds % 3600 == 0 and seconds >= 3600:
        hours = seconds // 3600
        return f"{hours} hour{'s' if hours != 1 else ''}"
    minutes = max(1, round(seconds / 60))
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


@register.filter
def eta(seconds: float | None) -> str:
    """Seconds left, rounded the way people say it: '40 s', '3 min', '1 h 20 min'."""
    if seconds is None:
        return ""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes = (seconds + 30) // 60
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min"


@register.filter
def audit_words(event) -> str:
    """An audit event's details as a sentence (audit_words.py); "" when only the pairs can say it."""
    from ..audit_words import in_words as sentence

    return sentence(event)


@register.filter
def url_or_blank(value: Any, url_name: str) -> str:
    """The URL of ``url_name`` for ``value``, or "" when ``value`` cannot be in such a URL.

    For strings a host may have sent (a forged report's host name with a "/", an old
    inventory's empty file name): the page shows them as text instead of failing on
    NoReverseMatch, which once made /audit/ answer 500 for good.
    """
    if value in (None, ""):
        return ""
    try:
        return reverse(url_name, args=[value])
    except NoReverseMatch:
        return ""
