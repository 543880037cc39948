"""The one place where the agent hands a report to the broker.

Reports go to the dashboard's ingest task by name, so the agent never imports dashboard
code. Anything that must apply to every report on its way out (signing, later) belongs here.
"""

from __future__ import annotations

from celery import Celery

from workers.schema import (
    INGEST_QUEUE,
    INGEST_TASK,
    ErrorReport,
    FreeReport,
    InventoryReport,
    PruneReport,
    PurgeReport,
    RestoreReport,
)

AnyReport = InventoryReport | PruneReport | RestoreReport | PurgeReport | FreeReport | ErrorReport


def send_report(app: Celery, report: AnyReport, queue: str = INGEST_QUEUE) -> None:
    app.send_task(INGEST_TASK, args=[report.to_json()], queue=queue)
