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
    sort = forms.CharField(required=False)


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
