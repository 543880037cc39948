"""The one place where the agent hands a report to the broker.

Reports go to the dashboard's ingest task by name, so the agent never imports dashboard
code. Every report leaves signed by this host's key (``AgentTrust.sign_report``): the
dashboard takes no unsigned report.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from celery import Celery

from workers.schema import (
    INGEST_QUEUE,
    INGEST_TASK,
    ErrorReport,
    FreeReport,
    HeartbeatReport,
    InventoryReport,
    ProgressReport,
    PruneReport,
    PurgeReport,
    RestoreReport,
)

if TYPE_CHECKING:
    from workers.trust import AgentTrust

AnyReport = (
    InventoryReport
    | PruneReport
    | RestoreReport
    | PurgeReport
    | FreeReport
    | HeartbeatReport
    | ProgressReport
    | ErrorReport
)


def send_report(app: Celery, report: AnyReport, trust: AgentTrust, queue: str = INGEST_QUEUE) -> None:
    app.send_task(INGEST_TASK, args=[trust.sign_report(report)], queue=queue)
