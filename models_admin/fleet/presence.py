"""Presence: what a heartbeat changes, and how a page says a host is away.

A heartbeat is the cheapest report there is, by design: at 10,000 hosts every 30 s ingest
takes 333 a second. Applying one is a single UPDATE of the host's row: no ReceivedReport
row, no snapshot, no audit event, no row lock held across statements. With the host's key
cached by the ingest process, that UPDATE is the beat's only statement here: it also
confirms the key. (Ingest adds the day's disk point at most hourly: capacity/usage.py.)

Idempotency without a ReceivedReport row: the UPDATE only matches while the beat's own
``sent_at`` (inside what the agent signed) is newer than the newest beat already taken. A
redelivered or replayed beat therefore changes nothing, and cannot keep a dead host looking
alive for longer than the freshness window ingest already enforces on ``sent_at``.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime

from django.db import connection
from django.db.models import Q
from django.utils import timezone

from workers.schema import HeartbeatReport

from ..models import Host, HostKey, PruneRequest

log = logging.getLogger(__name__)


def apply_heartbeat(
    report: HeartbeatReport, now: datetime | None = None, key: HostKey | None = None
) -> tuple[str, str]:
    """Record one authenticated heartbeat: one UPDATE, at most. Returns (status, reason) for
    ingest: "accepted", or "duplicate" for an older or repeated beat and a retired host's.

    ``key`` is the key that signed it: the UPDATE matches only while that key is still the
    host's active one, so a beat checked against a cached key (trust.authenticate(cached=True))
    needs no query of its own, and one whose key was revoked meanwhile changes nothing.

    A retired host's beats are dropped with a log line and not stored as rejected reports: an
    agent left running after its host was retired would otherwise add a row and an audit event
    every 30 s forever. Its presence is not shown anyway, and accepting it again takes them.
    """
    now = now or timezone.now()
    # One statement in autocommit: no BEGIN/COMMIT round trips, no row lock held past it.
    if _update(report, now, key):
        return "accepted", ""
    if Host.objects.filter(name=report.host, status=Host.Status.RETIRED).exists():
        log.info("heartbeat from retired host %s dropped", report.host)
        return "duplicate", f"host {report.host!r} is retired"
    return "duplicate", "an older or repeated heartbeat"


_HOST = Host._meta.db_table
_KEY = HostKey._meta.db_table
# Raw SQL on PostgreSQL (SQLite takes the ORM's UPDATE): this runs 333 times a second at
# 10,000 hosts, and compiling the ORM's UPDATE cost more than the round trip. The conditions
# are the idempotency rule (newer sent_at only), the retired rule, and the signing key still
# being the host's active one.
#
# The beat's own transaction commits without waiting for the WAL flush (synchronous_commit
# off for it alone, set inside the statement; PostgreSQL reads the setting at commit): a
# beat is a gauge, and a database crash can at worst forget the last fraction of a second
# of beats, which the next beat 30 s later replaces. It never leaves anything inconsistent,
# and every report (inventory, answers) still commits durably before its message is acked.
_UPDATE_SQL = f"""
UPDATE {_HOST} AS h SET last_seen = %s, last_heartbeat_at = %s, heartbeat_sent_at = %s,
    heartbeat_seconds = %s, model_dir_state = %s, disk_total = %s, disk_free = %s,
    aspose_version = %s, agent_version = %s, backlog = %s, reported_labels = %s::jsonb
FROM (SELECT set_config('synchronous_commit', 'off', true)) AS async_commit
WHERE h.name = %s AND h.status <> %s AND (h.heartbeat_sent_at IS NULL OR h.heartbeat_sent_at < %s)
  AND (%s::bigint IS NULL OR EXISTS (
      SELECT 1 FROM {_KEY} k WHERE k.id = %s AND k.host_id = h.id AND k.revoked_at IS NULL
      AND NOT k.candidate))
"""


def _update(report: HeartbeatReport, now: datetime, key: HostKey | None) -> int:
    key_id = key.pk if key is not None else None
    if connection.vendor != "postgresql":
        hosts = Host.objects.filter(name=report.host).exclude(status=Host.Status.RETIRED)
        if key_id is not None:
            hosts = hosts.filter(keys__id=key_id, keys__revoked_at__isnull=True, keys__candidate=False)
        return hosts.filter(
            Q(heartbeat_sent_at__isnull=True) | Q(heartbeat_sent_at__lt=report.sent_at)
        ).update(
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
    with connection.cursor() as cursor:
        cursor.execute(
            _UPDATE_SQL,
            [
                *(now, now, report.sent_at, report.interval_seconds, report.model_dir_state.value),
                *(report.disk_total, report.disk_free, report.aspose_version, report.agent_version),
                *(report.backlog, json.dumps(report.labels), report.host, Host.Status.RETIRED.value),
                *(report.sent_at, key_id, key_id),
            ],
        )
        return cursor.rowcount


def apply_heartbeats(
    beats: list[tuple[HeartbeatReport, HostKey | None]], now: datetime | None = None
) -> list[bool]:
    """Record authenticated heartbeats of distinct hosts in one UPDATE; per beat, whether it
    was taken (the same rules as ``apply_heartbeat``: a newer ``sent_at``, not retired, the
    signing key still the host's active one).

    A worker takes reports off the queue in batches (models_admin/tasks.py): at 10,000 hosts
    every 30 s, one statement per beat was the database's round trip 333 times a second, and
    one per batch is one per 50. A beat not taken here is not judged here: ingest sends it
    the single way (``apply_heartbeat``), which tells a retired host from an older beat.

    Hosts must be distinct: PostgreSQL updates a row once per statement, from whichever
    matching source row it meets first, so ingest keeps each host's newest beat of a batch.
    """
    if not beats:
        return []
    names = [report.host for report, _ in beats]
    if len(set(names)) != len(names):
        raise ValueError("apply_heartbeats takes one beat per host")
    now = now or timezone.now()
    if connection.vendor != "postgresql":
        return [bool(_update(report, now, key)) for report, key in beats]
    with connection.cursor() as cursor:
        cursor.execute(
            _UPDATE_MANY_SQL,
            [
                now,
                Host.Status.RETIRED.value,
                names,
                [r.sent_at for r, _ in beats],
                [r.interval_seconds for r, _ in beats],
                [r.model_dir_state.value for r, _ in beats],
                [r.disk_total for r, _ in beats],
                [r.disk_free for r, _ in beats],
                [r.aspose_version for r, _ in beats],
                [r.agent_version for r, _ in beats],
                [r.backlog for r, _ in beats],
                [json.dumps(r.labels) for r, _ in beats],
                [key.pk if key is not None else None for _, key in beats],
            ],
        )
        taken = {row[0] for row in cursor.fetchall()}
    return [name in taken for name in names]


# The same UPDATE as _UPDATE_SQL over many hosts, the beats' columns sent as arrays.
_UPDATE_MANY_SQL = f"""
UPDATE {_HOST} AS h SET last_seen = n.now, last_heartbeat_at = n.now, heartbeat_sent_at = b.sent_at,
    heartbeat_seconds = b.seconds, model_dir_state = b.dir_state, disk_total = b.disk_total,
    disk_free = b.disk_free, aspose_version = b.aspose, agent_version = b.agent, backlog = b.backlog,
    reported_labels = b.labels
FROM (SELECT %s::timestamptz AS now, %s::text AS retired,
             set_config('synchronous_commit', 'off', true) AS async_commit) AS n,
     unnest(%s::text[], %s::timestamptz[], %s::integer[], %s::text[], %s::bigint[], %s::bigint[],
            %s::text[], %s::text[], %s::integer[], %s::jsonb[], %s::bigint[])
       AS b(name, sent_at, seconds, dir_state, disk_total, disk_free, aspose, agent, backlog, labels, key_id)
WHERE h.name = b.name AND h.status <> n.retired
  AND (h.heartbeat_sent_at IS NULL OR h.heartbeat_sent_at < b.sent_at)
  AND (b.key_id IS NULL OR EXISTS (
      SELECT 1 FROM {_KEY} k WHERE k.id = b.key_id AND k.host_id = h.id AND k.revoked_at IS NULL
      AND NOT k.candidate))
RETURNING h.name
"""


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
