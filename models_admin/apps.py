from django.apps import AppConfig


class ModelsAdminConfig(AppConfig):
    name = "models_admin"
    verbose_name = "ocrdash"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Connect the domain signals' receivers (models_admin/signals.py says why signals).

        The order is the order they run in: a retired host's proposals expire, its files leave
        the models pages, then its campaigns look again (after commit).
        """
        from . import signals  # also the audit of failed logins
        from .approvals import workflow
        from .campaigns import rollout
        from .inventory import summary

        signals.host_retired.connect(workflow.expire_for_retired_host, dispatch_uid="workflow.expire")
        signals.host_retired.connect(summary.on_host_retired, dispatch_uid="summary.host_left")
        signals.host_retired.connect(rollout.on_host_retired, dispatch_uid="rollout.host_retired")
        signals.host_returned.connect(summary.on_host_returned, dispatch_uid="summary.host_returned")
        signals.request_finished.connect(rollout.on_request_finished, dispatch_uid="rollout.request")
