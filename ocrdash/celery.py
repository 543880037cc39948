"""The dashboard's Celery app: the ingest worker, the scheduler, and the sender of orders.

Agent tasks are sent by name (``workers.schema.AgentTask``), so this app never imports the
agent's task code; the router below is the one place that decides which queue a task goes to.
"""

import os
from typing import Any

from celery import Celery

from workers.schema import HOST_QUEUE_PREFIX, INGEST_QUEUE, AgentTask, host_queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ocrdash.settings")

DASHBOARD_QUEUE = "ocrdash.dashboard"
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
    return None


app.conf.task_routes = (route_task,)

__all__ = ("DASHBOARD_QUEUE", "HOST_QUEUE_PREFIX", "app")
