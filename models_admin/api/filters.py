"""Query-string filters of the API lists (django-filter)."""

from __future__ import annotations

import django_filters as filters

from models_admin.models import AuditEvent, Host, PruneRequest, ReceivedReport


class HostFilter(filters.FilterSet):
    status = filters.ChoiceFilter(choices=Host.Status.choices)
    name = filters.CharFilter(field_name="name", lookup_expr="icontains")
    # ?label=env=prod,region=eu (approver-set labels only) and ?group=<name>.
    label = filters.CharFilter(method="filter_label")
    group = filters.CharFilter(method="filter_group")

    class Meta:
        model = Host
        fields = ["status", "name", "label", "group"]

    def filter_label(self, queryset, name, value):
        from rest_framework.exceptions import ValidationError

        from models_admin.fleet import labels

        try:
            return labels.matching(queryset, labels.parse_selector(value))
        except labels.LabelError as exc:
            raise ValidationError({"label": [str(exc)]}) from None

    def filter_group(self, queryset, name, value):
        from rest_framework.exceptions import ValidationError

        from models_admin.fleet import labels
        from models_admin.models import HostGroup

        group = HostGroup.objects.filter(name=value).first()
        if group is None:
            raise ValidationError({"group": [f"no such group: {value!r}"]})
        return labels.group_hosts(group, queryset)


class PruneRequestFilter(filters.FilterSet):
    state = filters.MultipleChoiceFilter(choices=PruneRequest.State.choices)
    kind = filters.ChoiceFilter(choices=PruneRequest.Kind.choices)
    host = filters.CharFilter(field_name="host__name")
    policy = filters.CharFilter()

    class Meta:
        model = PruneRequest
        fields = ["state", "kind", "host", "policy"]


class AuditFilter(filters.FilterSet):
    # Each of host/actor/action is the leading column of an index on (column, -at).
    host = filters.CharFilter()
    actor = filters.CharFilter()
    action = filters.MultipleChoiceFilter(choices=AuditEvent.Action.choices)
    object_id = filters.CharFilter()
    since = filters.IsoDateTimeFilter(field_name="at", lookup_expr="gte")
    until = filters.IsoDateTimeFilter(field_name="at", lookup_expr="lt")

    class Meta:
        model = AuditEvent
        fields = ["host", "actor", "action", "object_id", "since", "until"]


class ReceivedReportFilter(filters.FilterSet):
    host = filters.CharFilter(field_name="host_name")
    kind = filters.CharFilter()

    class Meta:
        model = ReceivedReport
        fields = ["host", "kind"]
