"""Presence: what a heartbeat changes, and how a page says a host is away.

A heartbeat is the cheapest report there is, by design: at 10,000 hosts every 30 s ingest
takes 333 a second. Applying one is a single UPDATE of the host's row: no ReceivedReport
row, no snapshot, no audit event, no row lock held across statements.

Idempotency without a ReceivedReport row: the UPDATE only matches while the beat's own
``sent_at`` (inside what the agent signed) is newer than the newest beat already taken. A
redelivered or replayed beat therefore changes nothing, and cannot keep a dead host looking
alive for longer than the freshness window ingest already enforces on ``sent_at``.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.db.models import Q
from django.utils import timezone

from workers.schema import HeartbeatReport

from ..models import Host, PruneRequest

log = logging.getLogger(__name__)


def apply_heartbeat(report: HeartbeatReport, now: datetime | None = None) -> tuple[str, str]:
    """Record one authenticated heartbeat: one UPDATE, at most. Returns (status, reason) for
    ingest: "accepted", or "duplicate" for an older or repeated beat and a retired host's.

    A retired host's beats are dropped with a log line and not stored as rejected reports: an
    agent left running after its host was retired would otherwise add a row and an audit event
    every 30 s forever. Its presence is not shown anyway, and accepting it again takes them.
    """
    now = now or timezone.now()
    # One statement in autocommit: no BEGIN/COMMIT round trips, no row lock held past it.
    if _update(report, now):
        return "accepted", ""
    if Host.objects.filter(name=report.host, status=Host.Status.RETIRED).exists():
        log.info("heartbeat from retired host %s dropped", report.host)
        return "duplicate", f"host {report.host!r} is retired"
    return "duplicate", "an older or repeated heartbeat"


def _update(report: HeartbeatReport, now: datetime) -> int:
    return (
        Host.objects.filter(name=report.host)
        .exclude(status=Host.Status.RETIRED)
        .filter(Q(heartbeat_sent_at__isnull=True) | Q(heartbeat_sent_at__lt=report.sent_at))
        .update(
            last_seen=now,
            last_heartbeat_at=now,
            heartbeat_sent_at=report.sent_at,
            heartbeat_seconds=report.interval_seconds,
            model_dir_state=report.model_dir_state.value,
            disk_total=report.disk_total,
            disk_free=report.disk_free,
            aspose_version=report.aspose_version,
            agent_version=report.agent_version,
            backlog=report.backlog,
            reported_labels=report.labels,
        )
    )


def waiting_note(request: PruneRequest, now: datetime | None = None) -> str:
    """ "waiting for ocr-7, offline since 14:02" for a sent request whose host is away, else "".

    "Since" is when the host was last heard: that is the moment it went quiet.
    """
    if request.state not in (PruneRequest.State.APPROVED, PruneRequest.State.DISPATCHED):
        return ""
    host = request.host
    presence = host.presence(now)
    if presence not in ("offline", "missing", "never"):
        return ""
    if host.last_seen is None:
        return f"waiting for {host.name}, which has never reported"
    since = timezone.localtime(host.last_seen)
    stamp = f"{since:%H:%M}" if since.date() == timezone.localtime(now).date() else f"{since:%Y-%m-%d %H:%M}"
    return f"waiting for {host.name}, {presence} since {stamp}"
