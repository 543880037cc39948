"""Tell people when a host's disk forecast falls under N days, or its disk passes its high mark.

Checked when an inventory records the day's disk sample (``usage.record_disk``), inside the
report's transaction and under the host's row lock, so two reports of one host cannot both
tell the same crossing. Each alert is told on the crossing only, not at every report: a flag on
the host says it was told, and is cleared once the condition no longer holds:

* forecast: told when days until full drops under ``OCRDASH_FORECAST_ALERT_DAYS``; cleared when
  the forecast says N days or more, or "not filling" ("too noisy" or "not enough data" say
  nothing either way and keep the flag);
* watermark: told when use passes the high mark of the host's watermark (``watermarks``);
  cleared only once use is under the low mark, so a disk hovering at the high mark is told once.

Both go through ``notify`` (per-user choice, webhook routes by the host's groups and labels) to
whoever may manage hosts.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.template.defaultfilters import filesizeformat
from django.urls import reverse

from ..models import Host
from ..notifications import Event, notify
from ..security import roles
from . import forecast, watermarks


def check(host: Host, disk_free: int, disk_total: int, forecast_fields: dict[str, Any]) -> dict[str, Any]:
    """The alert flags to store on ``host`` (which still holds the previous report's values)."""
    fields: dict[str, Any] = {}
    days = forecast_fields.get("forecast_days")
    note = forecast_fields.get("forecast_note", "")
    limit = float(settings.OCRDASH["FORECAST_ALERT_DAYS"])
    page = reverse("ocrdash-host", args=[host.name])
    free = f"{filesizeformat(disk_free)} free of {filesizeformat(disk_total)}"
    if days is not None and days < limit:
        if not host.forecast_alerted:
            notify(
                Event.FORECAST_SHORT,
                f"{host.name}: disk full in about {days:g} days",
                path=page,
                host=host.name,
                lines=[
                    f"At the rate of the last {forecast.WINDOW_DAYS} days the disk is full in about "
                    f"{days:g} days (alert under {limit:g} days).",
                    f"Now: {free}.",
                ],
                role=roles.Action.MANAGE_HOSTS,
            )
            fields["forecast_alerted"] = True
    elif host.forecast_alerted and (days is not None or note == forecast.NOT_FILLING):
        fields["forecast_alerted"] = False

    used = disk_total - disk_free
    marks = watermarks.marks_for(host)
    if marks.over(used, disk_total):
        if not host.watermark_alerted:
            notify(
                Event.WATERMARK_PASSED,
                f"{host.name}: disk {used * 100 // disk_total} % used, over its high mark of {marks.high} %",
                path=page,
                host=host.name,
                lines=[
                    f"Now: {free}. The watermark of {marks.source}: high {marks.high} %, low {marks.low} %.",
                    "Plan what to free on the host's page, or let its watermark policy propose it.",
                ],
                role=roles.Action.MANAGE_HOSTS,
            )
            fields["watermark_alerted"] = True
    elif host.watermark_alerted and marks.under_low(used, disk_total):
        fields["watermark_alerted"] = False
    return fields
