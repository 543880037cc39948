"""The JSON API for scripts: the same permissions as the pages (security/roles.py).

URL names are prefixed ``api-``. Routes below one object (a host, a request, a campaign) are
grouped under its path, so each prefix and its converter are written once. ``/api/`` lists
``routes`` (handed to its view here, so the listing is of exactly what is served).
"""

from django.urls import include, path

from . import campaigns, docs, views

host = [
    path("", views.HostDetail.as_view(), name="api-host"),
    path("inventory/", views.HostInventory.as_view(), name="api-host-inventory"),
    path("actions/inventory/", views.HostAskInventory.as_view(), name="api-host-ask-inventory"),
    path("actions/free/", views.HostAskFree.as_view(), name="api-host-ask-free"),
    path("accept/", views.HostAccept.as_view(), name="api-host-accept"),
    path("retire/", views.HostRetire.as_view(), name="api-host-retire"),
    path("revoke-key/", views.HostRevokeKey.as_view(), name="api-host-revoke-key"),
    path("prune-requests/", views.HostPropose.as_view(), name="api-host-propose"),
    path("policies/<str:policy>/", views.HostRunPolicy.as_view(), name="api-host-policy"),
    path("labels/", campaigns.HostLabels.as_view(), name="api-host-labels"),
]

prune_request = [
    path("", views.RequestDetail.as_view(), name="api-request"),
    path("approve/", views.RequestApprove.as_view(), name="api-request-approve"),
    path("reject/", views.RequestReject.as_view(), name="api-request-reject"),
    path("restore/", views.RequestRestore.as_view(), name="api-request-restore"),
]

campaign = [
    path("", campaigns.CampaignDetail.as_view(), name="api-campaign"),
    path("<str:verb>/", campaigns.CampaignAction.as_view(), name="api-campaign-action"),
]

routes = [
    path("schema/", docs.ApiSchema.as_view(), name="api-schema"),
    path("docs/", docs.ApiDocs.as_view(), name="api-docs"),
    path("hosts/", views.HostList.as_view(), name="api-hosts"),
    path("hosts/<str:name>/", include(host)),
    path("enrollment-tokens/", views.EnrollmentTokenCreate.as_view(), name="api-enrollment-tokens"),
    path("policies/", views.PolicyList.as_view(), name="api-policies"),
    path("prune-requests/", views.RequestList.as_view(), name="api-requests"),
    path("prune-requests/<uuid:request_id>/", include(prune_request)),
    path("groups/", campaigns.GroupList.as_view(), name="api-groups"),
    path("groups/<str:name>/", campaigns.GroupDetail.as_view(), name="api-group"),
    path("campaigns/", campaigns.CampaignList.as_view(), name="api-campaigns"),
    path("campaigns/preview/", campaigns.CampaignPreview.as_view(), name="api-campaign-preview"),
    path("campaigns/<uuid:campaign_id>/", include(campaign)),
    path("audit/", views.AuditList.as_view(), name="api-audit"),
    path("reports/rejected/", views.RejectedReportList.as_view(), name="api-rejected-reports"),
]

urlpatterns = [path("", docs.ApiRoot.as_view(routes=routes), name="api-root"), *routes]
