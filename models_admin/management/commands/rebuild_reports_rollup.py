"""Count the reports' daily rollup again from the snapshots, in the dashboard's time zone.

Ingest keeps the rollup as it stores inventories; a rebuild is needed only after
``OCRDASH_TIME_ZONE`` changed (until then the reports count from the snapshots, slower).
"""

from __future__ import annotations

from models_admin.inventory import rollup
from models_admin.management.base import DomainCommand
from models_admin.models import DiskDay


class Command(DomainCommand):
    help = "Rebuild the reports' daily disk rollup from the snapshots (after a change of OCRDASH_TIME_ZONE)."

    def handle(self, *args, **kw):
        rollup.rebuild()
        self.stdout.write(f"{DiskDay.objects.count()} rows in {rollup.zone_name()}")
