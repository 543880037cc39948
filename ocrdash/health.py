"""``/healthz``: may this dashboard take traffic, and are the processes behind it doing their work?

Built on django-health-check. Load balancers and compose ask without a login, so a check says
only which part failed, never a URL, a password or a row. Our own checks:

- ``Broker``: the Celery broker of the settings answers (with the demo's ``filesystem://``
  broker: its folder exists and is writable).
- ``BeatRecent``: the scheduler ran a periodic task within ``HEALTH_BEAT_MAX_MINUTES``
  (django-celery-beat's ``PeriodicTask.last_run_at``): a dead beat stops every sweep silently.
- ``IngestQueue``: fewer than ``HEALTH_INGEST_QUEUE_MAX`` reports wait on the ingest queue: a
  backed-up queue means hosts' answers arrive late and pages show old facts.

Two views: ``/healthz`` runs all of them; ``/healthz/web`` only what the web process itself
needs (database, broker). Compose's ``web`` health check uses the latter, since the ingest and
beat services wait for ``web`` to be healthy and could never start if it waited on them.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import re
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db import connections
from django.utils import timezone
from django.utils.decorators import method_decorator
from health_check.base import HealthCheck
from health_check.checks import Database as LibraryDatabase
from health_check.exceptions import ServiceUnavailable
from health_check.views import HealthCheckView

from workers.schema import INGEST_QUEUE


def _connection_timeout() -> int:
    return max(1, round(settings.OCRDASH["HEALTH_TIMEOUT_SECONDS"]))


def ingest_queue_length() -> int:
    """Messages waiting on the ingest queue, through kombu so Redis and the demo's folder
    broker both answer (Redis keeps one list per priority; kombu's ``_size`` adds them up)."""
    from ocrdash.celery import app

    with app.connection_for_read(url=str(settings.CELERY_BROKER_URL)) as conn:
        conn.ensure_connection(
            max_retries=1, interval_start=0, interval_step=0, timeout=_connection_timeout()
        )
        return int(conn.default_channel._size(INGEST_QUEUE))  # type: ignore[attr-defined]


# What a driver's message says, as a phrase that names no host, user or database.
_REASONS = (
    (re.compile(r"connection refused", re.I), "connection refused"),
    (re.compile(r'database ".*" does not exist'), "no such database"),
    (re.compile(r'role ".*" does not exist'), "no such role"),
    (re.compile(r"password authentication failed|no password supplied", re.I), "authentication failed"),
    (re.compile(r"timeout expired|timed out", re.I), "timed out"),
    (re.compile(r"could not translate host name|name or service not known", re.I), "host name not found"),
    (re.compile(r"too many (connections|clients)|remaining connection slots", re.I), "too many connections"),
    (re.compile(r"starting up|shutting down|in recovery mode", re.I), "server starting or stopping"),
)


def failure_line(what: str, error: BaseException) -> str:
    """One line for /healthz saying what failed and why: ``database connection failed:
    connection refused (OperationalError)``. Public (no login): a phrase, never the error's text,
    which names hosts, users and databases."""
    text = str(error)
    reason = next((phrase for pattern, phrase in _REASONS if pattern.search(text)), None)
    kind = type(error).__name__
    return f"{what}: {reason} ({kind})" if reason else f"{what} ({kind})"


@dataclasses.dataclass
class Database(LibraryDatabase):
    """django-health-check's ``SELECT 1``, failing with a message that says what failed.

    The library's message is the driver's text cut at its first colon, "connection failed",
    the same for a server that is down, a database that does not exist and a wrong password.
    """

    def run(self) -> None:
        try:
            super().run()
        except ServiceUnavailable as e:
            if e.__cause__ is None:
                raise
            raise ServiceUnavailable(failure_line("database connection failed", e.__cause__)) from e.__cause__


@dataclasses.dataclass
class Broker(HealthCheck):
    """The Celery broker from the settings accepts a connection."""

    def run(self) -> None:
        from ocrdash.celery import app

        url = str(settings.CELERY_BROKER_URL)
        if url.startswith("filesystem://"):
            folder = settings.BROKER_FOLDER
            if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
                raise ServiceUnavailable("broker folder missing or not writable")
            return
        try:
            with app.connection_for_write(url=url) as conn:
                conn.ensure_connection(
                    max_retries=1, interval_start=0, interval_step=0, timeout=_connection_timeout()
                )
        except Exception as e:  # kombu raises the transport's own errors: any of them means down
            raise ServiceUnavailable(failure_line("broker unreachable", e)) from e


@dataclasses.dataclass
class BeatRecent(HealthCheck):
    """Beat ran a periodic task lately (the newest ``last_run_at`` of the enabled tasks)."""

    def run(self) -> None:
        from django.db.models import Max
        from django_celery_beat.models import PeriodicTask

        try:
            newest = PeriodicTask.objects.filter(enabled=True).aggregate(m=Max("last_run_at"))["m"]
        finally:
            # A worker thread of the view's executor: do not leave its connection open.
            connections.close_all()
        limit = datetime.timedelta(minutes=float(settings.OCRDASH["HEALTH_BEAT_MAX_MINUTES"]))
        if newest is None:
            raise ServiceUnavailable("beat has never run a periodic task")
        age = timezone.now() - newest
        if age > limit:
            raise ServiceUnavailable(f"beat last ran {int(age.total_seconds() // 60)} minutes ago")


@dataclasses.dataclass
class IngestQueue(HealthCheck):
    """The ingest queue holds fewer messages than ``HEALTH_INGEST_QUEUE_MAX``."""

    def run(self) -> None:
        try:
            waiting = ingest_queue_length()
        except Exception as e:  # as Broker: the transport's own errors
            raise ServiceUnavailable(failure_line("ingest queue unreadable", e)) from e
        limit = int(settings.OCRDASH["HEALTH_INGEST_QUEUE_MAX"])
        if waiting >= limit:
            raise ServiceUnavailable(f"{waiting} reports waiting on the ingest queue (limit {limit})")


@method_decorator(login_not_required, name="dispatch")
class HealthzView(HealthCheckView):
    """django-health-check's view, answering 503 (not 500) when a check fails: a load balancer
    reads 503 as "send elsewhere", and a 500 would look like a bug of this view."""

    checks: tuple[type[HealthCheck], ...] = (Database, Broker, BeatRecent, IngestQueue)

    async def get(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        response = await super().get(request, *args, **kwargs)
        if response.status_code == 500:
            response.status_code = 503
        return response


class WebHealthzView(HealthzView):
    """What the web process itself needs (see the module docstring for why compose asks this)."""

    checks = (Database, Broker)
