"""Host labels and groups: the dashboard's way to name sets of hosts.

``Host.labels`` are set by approvers (pages) and the API, and are the only labels a selector
matches. ``Host.reported_labels`` come from the host's own heartbeat (OCRDASH_HOST_LABELS):
shown apart as "reported by the host", never matched, so an agent cannot put itself into a
group or a campaign's target by its configuration alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TypeVar

from django.db import transaction
from django.db.models import CharField, QuerySet
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast

from workers.schema import LABEL_KEY_PATTERN, LABEL_VALUE_PATTERN, MAX_LABELS

from ..errors import DomainError
from ..models import AuditEvent, Host, HostGroup

Action = AuditEvent.Action
_H = TypeVar("_H", bound=Host)  # a Host queryset, annotated or not, keeps its type through a filter
GROUP_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"


class LabelError(DomainError):
    """A label, selector or group that cannot be taken; ``str()`` is fit to show the user."""


def parse_selector(text: str, *, what: str = "selector") -> dict[str, str]:
    """``env=prod, region=eu`` as {"env": "prod", "region": "eu"}; raises LabelError."""
    labels: dict[str, str] = {}
    for part in (p.strip() for p in (text or "").replace("\n", ",").split(",")):
        if not part:
            continue
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep:
            raise LabelError(f"{what}: {part!r} is not key=value")
        if not re.fullmatch(LABEL_KEY_PATTERN, key):
            raise LabelError(
                f"{what}: key {key!r} must start with a lower-case letter, then lower-case letters, "
                "digits, '.', '_' or '-'"
            )
        if not re.fullmatch(LABEL_VALUE_PATTERN, value):
            raise LabelError(f"{what}: value {value!r} of {key!r} must be letters, digits, '.', '_' or '-'")
        if key in labels and labels[key] != value:
            raise LabelError(f"{what}: {key!r} is given twice")
        labels[key] = value
    if len(labels) > MAX_LABELS:
        raise LabelError(f"{what}: at most {MAX_LABELS} labels")
    return labels


def format_selector(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def matching(hosts: QuerySet[_H], selector: Mapping[str, str]) -> QuerySet[_H]:
    """``hosts`` narrowed to those whose approver-set labels include every pair of ``selector``.

    The key's text cast to a string rather than ``labels__<key>``: a key may contain ``__``,
    and a compared JSON value would be encoded differently by SQLite (the demo) and PostgreSQL.
    """
    for i, (key, value) in enumerate(sorted(selector.items())):
        alias = f"_label_{i}"
        text = Cast(KeyTextTransform(key, "labels"), output_field=CharField())
        hosts = hosts.alias(**{alias: text}).filter(**{alias: value})
    return hosts


def group_hosts(group: HostGroup, hosts: QuerySet[_H]) -> QuerySet[_H]:
    """The hosts of ``group`` among ``hosts`` (retired ones included: callers decide what they skip)."""
    if group.is_selector:
        return matching(hosts, group.selector)
    return hosts.filter(explicit_groups=group)


def set_labels(host: Host, labels: Mapping[str, str], user) -> Host:
    """Replace ``host``'s labels (checked like a selector), under its row lock, with an audit event.

    Race: two approvers editing one host's labels at once each replace the whole set; the lock
    makes one change follow the other, and the audit trail keeps both with before and after.
    """
    cleaned = parse_selector(format_selector(labels), what="labels")
    with transaction.atomic():
        locked = Host.objects.select_for_update().get(pk=host.pk)
        before = dict(locked.labels or {})
        if before == cleaned:
            return locked
        Host.objects.filter(pk=locked.pk).update(labels=cleaned)
        locked.labels = cleaned
        AuditEvent.record(
            Action.HOST_LABELED,
            actor=_actor(user),
            host=locked.name,
            obj=locked,
            before=before,
            after=cleaned,
        )
    return locked


def save_group(
    name: str,
    *,
    user,
    selector: Mapping[str, str] | None = None,
    hosts: Iterable[str] = (),
    description: str = "",
) -> HostGroup:
    """Create or replace the group ``name``: a selector, or else an explicit list of host names."""
    name = (name or "").strip().lower()
    if not re.fullmatch(GROUP_NAME_PATTERN, name):
        raise LabelError("group name: lower-case letters, digits, '-' or '_', at most 64")
    selector = parse_selector(format_selector(selector or {}))
    names = sorted({h.strip() for h in hosts if h.strip()})
    if selector and names:
        raise LabelError("a group is a selector or a list of hosts, not both")
    if not selector and not names:
        raise LabelError("give a selector (env=prod,region=eu) or at least one host")
    found = list(Host.objects.filter(name__in=names))
    if missing := sorted(set(names) - {h.name for h in found}):
        raise LabelError(f"no such host: {', '.join(missing[:5])}")
    with transaction.atomic():
        group, created = HostGroup.objects.select_for_update().get_or_create(
            name=name, defaults={"created_by": _actor(user), "selector": selector}
        )
        group.selector = selector
        group.description = description.strip()[:200]
        group.save(update_fields=["selector", "description"])
        group.hosts.set(found)
        AuditEvent.record(
            Action.GROUP_SAVED,
            actor=_actor(user),
            obj=group,
            name=name,
            created=created,
            selector=format_selector(selector),
            hosts=names[:100],
        )
    return group


def delete_group(group: HostGroup, user) -> None:
    with transaction.atomic():
        AuditEvent.record(Action.GROUP_DELETED, actor=_actor(user), obj=group, name=group.name)
        group.delete()


def _actor(user) -> str:
    return user.get_username() if user is not None else "system"
