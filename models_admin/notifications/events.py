"""The events people can be told of. Adding one is one line here and one ``notify`` call.

Nothing else lists them: the preferences page, the webhook routes page and the admin read
this enum, and the rows store its value in a free CharField, so no migration either.

The value is stored (preferences, notifications, webhook routes); the label is what the
preferences page and the webhook form show. Who receives an event is decided by the call
(``notify(..., users=..., role=...)``), not here, so one event can go to the proposer in one
place and to every approver in another.
"""

from __future__ import annotations

from django.db import models


class Event(models.TextChoices):
    REQUEST_WAITING = "request_waiting", "A request waits for your approval"
    REQUEST_APPROVED = "request_approved", "Your request was approved"
    REQUEST_REJECTED = "request_rejected", "Your request was rejected"
    REQUEST_FINISHED = "request_finished", "Your request finished"
    REQUEST_PROBLEM = "request_problem", "A request finished partially or failed"
    HOST_OFFLINE = "host_offline", "A host went offline"
    HOST_MISSING = "host_missing", "A host went missing"
    MODEL_DIR_GONE = "model_dir_gone", "A host's model folder disappeared"
    REPORT_REFUSED = "report_refused", "A forged or replayed report was refused"
    CAMPAIGN_WAITING = "campaign_waiting", "A campaign waits for your approval"
    CAMPAIGN_APPROVED = "campaign_approved", "Your campaign was approved"
    CAMPAIGN_REJECTED = "campaign_rejected", "Your campaign was rejected"
    CAMPAIGN_HALTED = "campaign_halted", "A campaign halted"
    CAMPAIGN_FINISHED = "campaign_finished", "Your campaign finished"
    FORECAST_SHORT = "forecast_short", "A host's disk forecast fell under the alert days"
    WATERMARK_PASSED = "watermark_passed", "A host's disk passed its high watermark"


# The one event that is not chosen by anyone: the digest email that carries the others.
DIGEST = "digest"
