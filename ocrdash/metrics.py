"""``/metrics``: the fleet's state in Prometheus text, computed at scrape time.

prometheus_client directly (not django-prometheus: its middleware pair would wrap ours and the
CSP one, and nothing here needs per-view latency histograms). A custom collector builds the
gauges from a fixed number of queries, whatever the fleet's size, so a scrape every 15 s
costs the same at 10 hosts as at 10,000.

Allowed for a logged-in superuser or with ``Authorization: Bearer <OCRDASH_METRICS_TOKEN>``
(compared in constant time); 401 without credentials, 403 for a user who is not a superuser
or a wrong token. No token set: only superusers.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from datetime import datetime

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db.models import Count, Max, Q, Sum
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from models_admin.inventory.reports import restored
from models_admin.models import Host, PruneItem, PruneRequest, ReceivedReport

PRESENCES = ("online", "offline", "missing", "never", "pending", "retired")


def presence_of(status: str, last_seen: datetime | None, heartbeat_seconds: int | None, now: datetime) -> str:
    """Host.presence for a row's values, plus pending and retired (which ``presence`` ignores)."""
    if status == Host.Status.PENDING:
        return "pending"
    if status == Host.Status.RETIRED:
        return "retired"
    return Host(last_seen=last_seen, heartbeat_seconds=heartbeat_seconds).presence(now)


class FleetCollector(Collector):
    """Gauges read from the database on each scrape: five queries, any fleet size."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = timezone.now()
        counts = dict.fromkeys(PRESENCES, 0)
        # One query; presence depends on each host's own heartbeat interval, so it is decided
        # here with Host.presence (the one rule) rather than copied into SQL.
        for status, last_seen, beat in Host.objects.values_list("status", "last_seen", "heartbeat_seconds"):
            counts[presence_of(status, last_seen, beat, now)] += 1
        hosts = GaugeMetricFamily("ocrdash_hosts", "Hosts by presence", labels=["presence"])
        for presence, n in counts.items():
            hosts.add_metric([presence], n)
        yield hosts

        yield GaugeMetricFamily(
            "ocrdash_pending_approvals",
            "Prune and restore requests waiting for an approver",
            value=PruneRequest.objects.filter(state=PruneRequest.State.PROPOSED).count(),
        )

        reports = ReceivedReport.objects.aggregate(
            rejected=Count("id", filter=Q(status=ReceivedReport.Status.REJECTED)),
            newest=Max("received_at"),
        )
        yield GaugeMetricFamily(
            "ocrdash_rejected_reports", "Reports ingest refused (all kept)", value=reports["rejected"]
        )
        newest = reports["newest"]
        yield GaugeMetricFamily(
            "ocrdash_ingest_last_report_age_seconds",
            "Seconds since ingest last recorded a report (heartbeats excluded); -1 if never",
            value=(now - newest).total_seconds() if newest else -1,
        )

        # Quarantined, not moved back by a restore of the same file (same store, same path:
        # reports.restored, the one rule), and not purged since (a purge ends the item
        # ``purged``: its bytes are freed on disk, no longer in quarantine).
        quarantined = (
            PruneItem.objects.filter(outcome=PruneItem.Outcome.QUARANTINED)
            .exclude(restored())
            .aggregate(b=Sum("bytes_reclaimed"))["b"]
        )
        yield GaugeMetricFamily(
            "ocrdash_quarantine_bytes",
            "Bytes in the hosts' quarantines: moved out of the model folders, not restored, not purged",
            value=quarantined or 0,
        )
        yield from _queue_gauges()


def _queue_gauges() -> Iterator[GaugeMetricFamily]:
    """The ingest queue's length; absent (not zero) when the broker cannot be read."""
    from ocrdash.health import ingest_queue_length

    try:
        waiting = ingest_queue_length()
    except Exception:  # the transport's own errors; /healthz names the failure
        return
    yield GaugeMetricFamily(
        "ocrdash_ingest_queue_length", "Reports waiting on the ingest queue", value=waiting
    )


def _allowed(request: HttpRequest) -> int:
    """200, 401 or 403 for this request (see the module docstring)."""
    user = request.user
    if user.is_authenticated:
        return 200 if user.is_active and user.is_superuser else 403
    header = request.headers.get("Authorization", "")
    if not header:
        return 401
    scheme, _, given = header.partition(" ")
    token = str(settings.OCRDASH["METRICS_TOKEN"])
    if scheme.lower() != "bearer" or not token:
        return 403
    return 200 if hmac.compare_digest(given.strip().encode(), token.encode()) else 403


@login_not_required
@never_cache
def metrics_view(request: HttpRequest) -> HttpResponse:
    status = _allowed(request)
    if status != 200:
        response = HttpResponse(
            "metrics need a superuser's login or the scrape token\n", status=status, content_type="text/plain"
        )
        if status == 401:
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FleetCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
