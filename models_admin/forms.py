"""Forms and filters of the dashboard's pages."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import django_filters
from django import forms

from .models import AuditEvent, Host, PruneRequest

_UNITS = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "kb": 10**3,
    "m": 10**6,
    "mb": 10**6,
    "g": 10**9,
    "gb": 10**9,
    "t": 10**12,
    "tb": 10**12,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """'1.5G' -> 1500000000. Decimal units, like filesizeformat's readers expect on disks."""
    match = _SIZE.match(text or "")
    if not match or match.group(2).lower() not in _UNITS:
        raise forms.ValidationError("a size like 500M, 2G or 1000000")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


class SizeField(forms.CharField):
    def to_python(self, value):
        value = super().to_python(value)
        return parse_size(value) if value else None


class FleetFilterForm(forms.Form):
    q = forms.CharField(required=False, label="Name")
    status = forms.ChoiceField(required=False, choices=[("", "Any status"), *Host.Status.choices])
    # The form metaclass moves declared fields into base_fields, so this does not hide
    # Form.errors; the name is the page's query parameter.
    errors = forms.BooleanField(required=False, label="Only with errors")  # type: ignore[assignment]
    min_size = SizeField(required=False, label="Min. size")
    retired = forms.BooleanField(required=False, label="Show retired")
    label = forms.CharField(required=False, max_length=2000, label="Labels")
    group = forms.CharField(required=False, max_length=64, label="Group")
    sort = forms.CharField(required=False)

    def clean_label(self) -> dict[str, str]:
        return _selector_field(self.cleaned_data["label"], "labels")

    def clean_group(self):
        from .models import HostGroup

        name = self.cleaned_data["group"].strip()
        if not name:
            return None
        group = HostGroup.objects.filter(name=name).first()
        if group is None:
            raise forms.ValidationError(f"no such group: {name!r}")
        return group


class ProposeForm(forms.Form):
    """Files picked by hand on a host page. ``files`` are ModelFile ids of its current snapshot."""

    # As FleetFilterForm.errors: a declared field, not Form.files (uploads), once the class is built.
    files = forms.TypedMultipleChoiceField(  # type: ignore[assignment]
        coerce=int, choices=(), error_messages={"required": "select at least one file"}
    )
    reason = forms.CharField(max_length=2000, error_messages={"required": "a request needs a reason"})

    def __init__(self, *args: Any, file_ids: Sequence[int] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["files"]
        assert isinstance(field, forms.ChoiceField)
        field.choices = [(i, i) for i in file_ids]


class PolicyProposeForm(forms.Form):
    policy = forms.ChoiceField(choices=())
    reason = forms.CharField(required=False, max_length=2000)

    def __init__(self, *args: Any, policies: Sequence[tuple[str, str]] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["policy"]
        assert isinstance(field, forms.ChoiceField)
        field.choices = list(policies)


class DecisionForm(forms.Form):
    comment = forms.CharField(required=False, max_length=2000)


class RestoreForm(forms.Form):
    reason = forms.CharField(required=False, max_length=2000)


class RequestFilterForm(forms.Form):
    state = forms.ChoiceField(required=False, choices=[("", "Any state"), *PruneRequest.State.choices])
    host = forms.CharField(required=False)


class DiffForm(forms.Form):
    a = forms.IntegerField()
    b = forms.IntegerField()


class AuditFilter(django_filters.FilterSet):
    """The audit page's and the CSV export's filters (the same ones, so an export is the page)."""

    host = django_filters.CharFilter(field_name="host", lookup_expr="exact", label="Host")
    actor = django_filters.CharFilter(field_name="actor", lookup_expr="exact", label="User")
    action = django_filters.ChoiceFilter(choices=AuditEvent.Action.choices, empty_label="Any action")
    since = django_filters.DateFilter(field_name="at", lookup_expr="date__gte", label="From")
    until = django_filters.DateFilter(field_name="at", lookup_expr="date__lte", label="To")

    class Meta:
        model = AuditEvent
        fields = ["host", "actor", "action", "since", "until"]


# ---------------------------------------------------------------- labels, groups, campaigns


def _selector_field(value: str, what: str) -> dict[str, str]:
    from .fleet.labels import LabelError, parse_selector

    try:
        return parse_selector(value, what=what)
    except LabelError as exc:
        raise forms.ValidationError(str(exc)) from None


class LabelsForm(forms.Form):
    labels = forms.CharField(required=False, max_length=2000, label="Labels")

    def clean_labels(self) -> dict[str, str]:
        return _selector_field(self.cleaned_data["labels"], "labels")


class GroupForm(forms.Form):
    name = forms.CharField(max_length=64)
    description = forms.CharField(required=False, max_length=200)
    selector = forms.CharField(required=False, max_length=2000, help_text="env=prod,region=eu")
    hosts = forms.CharField(
        required=False, max_length=20_000, help_text="host names, comma or space separated"
    )

    def clean_selector(self) -> dict[str, str]:
        return _selector_field(self.cleaned_data["selector"], "selector")

    def clean_hosts(self) -> list[str]:
        return [h for h in self.cleaned_data["hosts"].replace(",", " ").split() if h]


class CampaignForm(forms.Form):
    """Target, rule and waves of a campaign (the preview and the proposal read the same form)."""

    from .models import Campaign as _Campaign

    target_kind = forms.ChoiceField(choices=_Campaign.Target.choices, initial=_Campaign.Target.GROUP)
    group = forms.CharField(required=False, max_length=64)
    selector = forms.CharField(required=False, max_length=2000)
    rule_kind = forms.ChoiceField(choices=_Campaign.Rule.choices, initial=_Campaign.Rule.POLICY)
    policy = forms.CharField(required=False, max_length=64, initial="prefix")
    # Not "prefix": a form's prefix attribute names its fields' HTML prefix.
    name_prefix = forms.CharField(required=False, max_length=200)
    days = forms.IntegerField(required=False, min_value=0)
    keep = forms.IntegerField(required=False, min_value=1)
    model_name = forms.CharField(required=False, max_length=255)
    model_sha256 = forms.CharField(required=False, max_length=64)
    canary_size = forms.IntegerField(min_value=1, initial=1)
    wave_size = forms.IntegerField(required=False, min_value=1)
    wave_percent = forms.IntegerField(required=False, min_value=1, max_value=100)
    failure_threshold = forms.IntegerField(
        min_value=0, max_value=99, initial=0, help_text="percent of a wave's hosts that may fail"
    )
    reason = forms.CharField(required=False, max_length=2000)
    del _Campaign

    def clean_selector(self) -> dict[str, str]:
        return _selector_field(self.cleaned_data["selector"], "selector")

    def spec(self):
        """The plan.Spec this form asks for; raises ValidationError for an unknown group."""
        from .campaigns.plan import Spec
        from .models import Campaign, HostGroup

        data = self.cleaned_data
        group = None
        if data["target_kind"] == Campaign.Target.GROUP:
            group = HostGroup.objects.filter(name=data["group"].strip()).first()
            if group is None:
                raise forms.ValidationError(f"no such group: {data['group']!r}")
        from .capacity import policies

        policy = policies.REGISTRY.get(data["policy"].strip())
        # The form has a field for every policy's parameter; only the chosen policy's count.
        names = {p.name for p in policy.params} if policy else set()
        given: dict[str, Any] = {"prefix": data["name_prefix"], "days": data["days"], "keep": data["keep"]}
        params: dict[str, Any] = {k: v for k, v in given.items() if k in names and v not in (None, "")}
        return Spec(
            target_kind=data["target_kind"],
            rule_kind=data["rule_kind"],
            group=group,
            selector=data["selector"],
            model_sha256=data["model_sha256"].strip().lower(),
            model_name=data["model_name"].strip(),
            policy=data["policy"].strip(),
            policy_params=params,
            canary_size=data["canary_size"],
            wave_size=data["wave_size"],
            wave_percent=data["wave_percent"],
            failure_threshold=(data["failure_threshold"] or 0) / 100,
        )


class CampaignDecisionForm(forms.Form):
    comment = forms.CharField(required=False, max_length=2000)
    allow_last_copy = forms.BooleanField(required=False)
