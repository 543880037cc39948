"""The dashboard's Celery task names, in one module below everything that schedules them.

Names are fixed strings: beat rows in the database and the router (``ocrdash/celery.py``)
refer to tasks by name, so a rename needs a migration. ``tasks.py`` registers the tasks;
``schedules.py`` and ``capacity/scheduled.py`` write beat rows for them without importing
the tasks (which import ingest, workflow and the rest of the app).
"""

EXPIRE_TASK = "ocrdash.dashboard.expire_stale"
RESEND_TASK = "ocrdash.dashboard.resend_unanswered"
FLEET_INVENTORY_TASK = "ocrdash.dashboard.fleet_inventory"
HOST_INVENTORY_TASK = "ocrdash.dashboard.host_inventory"
COMPACT_TASK = "ocrdash.dashboard.compact_snapshots"
CAMPAIGNS_TASK = "ocrdash.dashboard.advance_campaigns"
PURGE_TASK = "ocrdash.dashboard.purge_quarantine"
# A capacity policy run on a schedule (capacity/scheduled.py): one beat row per host or group.
POLICY_TASK = "ocrdash.dashboard.scheduled_policy"


def policy_schedule_name(policy: str, *, host: str = "", group: str = "") -> str:
    """The beat row's name of ``policy`` scheduled on one host or one group."""
    return (
        f"ocrdash: policy {policy} on host {host}" if host else f"ocrdash: policy {policy} on group {group}"
    )
