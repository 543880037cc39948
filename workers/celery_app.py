"""The agent's Celery app: JSON only, late acks, one task at a time, on the host's own queue.

Delivery is at-least-once by design: a task is acknowledged only after it ran, and a
worker killed mid-task gives its message back. The broker's visibility timeout must
therefore exceed the longest task (else Redis hands a running task to a second worker), and
the hard time limit stays below it. Duplicates are made harmless by the tasks themselves
(idempotent per request id), not by the transport.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from workers.broker import filesystem_transport_options
from workers.config import AgentConfig

# A full re-hash of a host's models (tens of GB) must fit in the time limit.
TASK_TIME_LIMIT = 3 * 3600
TASK_SOFT_TIME_LIMIT = TASK_TIME_LIMIT - 300
VISIBILITY_TIMEOUT = 4 * 3600


def transport_options(config: AgentConfig) -> dict[str, Any]:
    options: dict[str, Any] = {"visibility_timeout": VISIBILITY_TIMEOUT}
    if config.broker_url.startswith("filesystem://"):
        assert config.broker_folder is not None  # load_config guarantees it
        options.update(filesystem_transport_options(config.broker_folder))
    return options


def create_app(config: AgentConfig) -> Celery:
    """A Celery app with the agent's tasks registered; importing this module starts nothing."""
    app = Celery(f"ocrdash-agent-{config.host_name}", broker=config.broker_url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        result_backend=None,
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_time_limit=TASK_TIME_LIMIT,
        task_soft_time_limit=TASK_SOFT_TIME_LIMIT,
        broker_transport_options=transport_options(config),
        broker_connection_retry_on_startup=True,
        task_default_queue=config.queue,
        worker_hijack_root_logger=False,
        # No remote control: its broadcast queue would let anyone who can publish on the
        # broker shut agents down, and a per-host Redis ACL user then needs no pidbox keys.
        worker_enable_remote_control=False,
    )
    from workers.tasks import register_tasks

    register_tasks(app, config)
    return app
