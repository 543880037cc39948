"""The JSON API for scripts: the same permissions as the pages (security/roles.py).

URL names are prefixed ``api-``.
"""

from django.urls import path

from . import campaigns, docs, views

urlpatterns = [
    path("", docs.ApiRoot.as_view(), name="api-root"),
    path("schema/", docs.ApiSchema.as_view(), name="api-schema"),
    path("docs/", docs.ApiDocs.as_view(), name="api-docs"),
    path("hosts/", views.HostList.as_view(), name="api-hosts"),
    path("hosts/<str:name>/", views.HostDetail.as_view(), name="api-host"),
    path("hosts/<str:name>/inventory/", views.HostInventory.as_view(), name="api-host-inventory"),
    path(
        "hosts/<str:name>/actions/inventory/", views.HostAskInventory.as_view(), name="api-host-ask-inventory"
    ),
    path("hosts/<str:name>/actions/free/", views.HostAskFree.as_view(), name="api-host-ask-free"),
    path("hosts/<str:name>/accept/", views.HostAccept.as_view(), name="api-host-accept"),
    path("hosts/<str:name>/retire/", views.HostRetire.as_view(), name="api-host-retire"),
    path("hosts/<str:name>/revoke-key/", views.HostRevokeKey.as_view(), name="api-host-revoke-key"),
    path("enrollment-tokens/", views.EnrollmentTokenCreate.as_view(), name="api-enrollment-tokens"),
    path("hosts/<str:name>/prune-requests/", views.HostPropose.as_view(), name="api-host-propose"),
    path("hosts/<str:name>/policies/<str:policy>/", views.HostRunPolicy.as_view(), name="api-host-policy"),
    path("policies/", views.PolicyList.as_view(), name="api-policies"),
    path("prune-requests/", views.RequestList.as_view(), name="api-requests"),
    path("prune-requests/<uuid:request_id>/", views.RequestDetail.as_view(), name="api-request"),
    path(
        "prune-requests/<uuid:request_id>/approve/",
        views.RequestApprove.as_view(),
        name="api-request-approve",
    ),
    path(
        "prune-requests/<uuid:request_id>/reject/", views.RequestReject.as_view(), name="api-request-reject"
    ),
    path(
        "prune-requests/<uuid:request_id>/restore/",
        views.RequestRestore.as_view(),
        name="api-request-restore",
    ),
    path("hosts/<str:name>/labels/", campaigns.HostLabels.as_view(), name="api-host-labels"),
    path("groups/", campaigns.GroupList.as_view(), name="api-groups"),
    path("groups/<str:name>/", campaigns.GroupDetail.as_view(), name="api-group"),
    path("campaigns/", campaigns.CampaignList.as_view(), name="api-campaigns"),
    path("campaigns/preview/", campaigns.CampaignPreview.as_view(), name="api-campaign-preview"),
    path("campaigns/<uuid:campaign_id>/", campaigns.CampaignDetail.as_view(), name="api-campaign"),
    path(
        "campaigns/<uuid:campaign_id>/<str:verb>/",
        campaigns.CampaignAction.as_view(),
        name="api-campaign-action",
    ),
    path("audit/", views.AuditList.as_view(), name="api-audit"),
    path("reports/rejected/", views.RejectedReportList.as_view(), name="api-rejected-reports"),
]
