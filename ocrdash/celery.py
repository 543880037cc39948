"""The dashboard's Celery app: the ingest worker, the scheduler, and the sender of orders.

Agent tasks are sent by name (``workers.schema.AgentTask``), so this app never imports the
agent's task code; the router below is the one place that decides which queue a task goes to.
"""

import os
from typing import Any

from celery import Celery, signals

from workers.logs import install_celery_hooks
from workers.schema import HOST_QUEUE_PREFIX, INGEST_QUEUE, AgentTask, host_queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ocrdash.settings")

DASHBOARD_QUEUE = "ocrdash.dashboard"
# Notifications have a queue of their own: a slow or dead mail server never delays ingest.
NOTIFY_QUEUE = "ocrdash.notify"
_AGENT_TASKS = frozenset(t.value for t in AgentTask)

app = Celery("ocrdash")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def route_task(name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **kw: Any) -> dict | None:
    """Agent orders go to their host's queue (the order names the host); ingest to ingest.

    An explicit ``queue=`` given to ``send_task`` still wins, which tests use.
    """
    if name in _AGENT_TASKS:
        order = args[0] if args else {}
        return {"queue": host_queue(order["host"])}
    if name.startswith("ocrdash.ingest."):
        return {"queue": INGEST_QUEUE}
    if name.startswith("ocrdash.dashboard."):
        return {"queue": DASHBOARD_QUEUE}
    if name.startswith("ocrdash.notify."):
        return {"queue": NOTIFY_QUEUE}
    return None


app.conf.task_routes = (route_task,)


def _configure_logging() -> None:
    """The worker's and beat's lines in the web's format (settings.LOGGING, workers.logs)."""
    import logging.config

    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)


install_celery_hooks(_configure_logging)


@signals.task_prerun.connect
@signals.task_postrun.connect
def _close_old_connections(sender: Any = None, **kwargs: Any) -> None:
    """Between tasks, what Django does between requests: drop a connection that is broken
    (its task failed on it) or older than CONN_MAX_AGE, and health-check the rest on reuse.

    Celery's fixup would close every connection around every task (one new PostgreSQL
    session per report); CELERY_DB_REUSE_MAX turns that off and this keeps a restarted
    database from leaving the worker with a dead connection. Not for eager calls (tests),
    which run inside the caller's transaction.
    """
    if getattr(getattr(sender, "request", None), "is_eager", False):
        return
    from django.db import close_old_connections

    close_old_connections()


__all__ = ("DASHBOARD_QUEUE", "HOST_QUEUE_PREFIX", "NOTIFY_QUEUE", "app")
