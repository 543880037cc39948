"""URLs of the dashboard's pages (names prefixed ``ocrdash-``). Hosts by name, requests by UUID."""

from django.urls import path

from .notifications import views as notification_views
from .views import audit, auth, capacity, enrollment, fleet, history, hosts, modelpages, reports, requests

urlpatterns = [
    path("", fleet.overview, name="ocrdash-fleet"),
    path("fleet/rows/", fleet.rows, name="ocrdash-fleet-rows"),
    path("hosts/<str:name>/", hosts.detail, name="ocrdash-host"),
    path("hosts/<str:name>/diff/", hosts.diff, name="ocrdash-host-diff"),
    path("hosts/<str:name>/live/", hosts.live, name="ocrdash-host-live"),
    path("hosts/<str:name>/propose/", hosts.propose, name="ocrdash-host-propose"),
    path("hosts/<str:name>/propose-policy/", hosts.propose_by_policy, name="ocrdash-host-propose-policy"),
    path("hosts/<str:name>/inventory/", hosts.ask_inventory, name="ocrdash-host-inventory"),
    path("hosts/<str:name>/free/", hosts.ask_free, name="ocrdash-host-free"),
    path("hosts/<str:name>/plan/", capacity.plan, name="ocrdash-host-plan"),
    path("hosts/<str:name>/plan/propose/", capacity.propose_plan, name="ocrdash-host-plan-propose"),
    path("hosts/<str:name>/accept/", hosts.accept, name="ocrdash-host-accept"),
    path("hosts/<str:name>/retire/", hosts.retire, name="ocrdash-host-retire"),
    path("hosts/<str:name>/revoke-key/", enrollment.revoke_host_key, name="ocrdash-host-revoke-key"),
    path("hosts/<str:name>/accept-key/", enrollment.accept_new_key, name="ocrdash-host-accept-key"),
    path("hosts/<str:name>/reject-key/", enrollment.reject_new_key, name="ocrdash-host-reject-key"),
    path("enrollment/", enrollment.index, name="ocrdash-enrollment"),
    path("enrollment/tokens/", enrollment.create, name="ocrdash-enrollment-create"),
    path("enrollment/tokens/<uuid:token_id>/revoke/", enrollment.revoke, name="ocrdash-enrollment-revoke"),
    path("models/", modelpages.index, name="ocrdash-models"),
    path("models/<str:key>/", modelpages.detail, name="ocrdash-model"),
    path("requests/", requests.index, name="ocrdash-requests"),
    path("requests/<uuid:request_id>/", requests.detail, name="ocrdash-request"),
    path("requests/<uuid:request_id>/live/", requests.live, name="ocrdash-request-live"),
    path("requests/<uuid:request_id>/approve/", requests.approve, name="ocrdash-request-approve"),
    path("requests/<uuid:request_id>/reject/", requests.reject, name="ocrdash-request-reject"),
    path("requests/<uuid:request_id>/withdraw/", requests.withdraw, name="ocrdash-request-withdraw"),
    path("requests/<uuid:request_id>/restore/", requests.restore, name="ocrdash-request-restore"),
    path("audit/", audit.index, name="ocrdash-audit"),
    path("audit/export.csv", audit.export_csv, name="ocrdash-audit-export"),
    path("audit/rejected-reports/", audit.rejected_reports, name="ocrdash-rejected-reports"),
    path("account/", auth.account, name="ocrdash-account"),
    path("account/notifications/", notification_views.preferences, name="ocrdash-notification-preferences"),
    path("account/api-token/", auth.token_create, name="ocrdash-api-token-create"),
    path("account/api-token/revoke/", auth.token_revoke, name="ocrdash-api-token-revoke"),
    # history and reports
    path("hosts/<str:name>/timeline/", history.timeline, name="ocrdash-host-timeline"),
    path("models/<str:key>/lifecycle/", history.lifecycle, name="ocrdash-model-lifecycle"),
    path("reports/", reports.index, name="ocrdash-reports"),
    path("reports/deletions/", reports.deletions, name="ocrdash-report-deletions"),
    path(
        "reports/deletions/export.<str:fmt>",
        reports.deletions_export,
        name="ocrdash-report-deletions-export",
    ),
    path("settings/", reports.settings_page, name="ocrdash-settings"),
    path("settings/fleet/", reports.settings_fleet, name="ocrdash-settings-fleet"),
    path("settings/host/", reports.settings_host, name="ocrdash-settings-host"),
    path("settings/retention/", reports.settings_retention, name="ocrdash-settings-retention"),
]
