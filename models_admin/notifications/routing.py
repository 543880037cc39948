"""Which webhooks hear of an event: routes per event and per group, label selector or "the rest".

An event is about a host (``host offline``: that host), about a campaign (its target: a group
or a selector), or about nothing in particular. For one event:

- an ``all`` route always takes it;
- a ``group`` route takes it when the host is in the group, or the campaign targets that group;
- a ``labels`` route takes it when the host's approver-set labels include the route's selector,
  or the campaign's selector (its own, or its target group's) does, so every host it may
  touch carries those labels;
- a ``rest`` route takes it only when no ``group`` or ``labels`` route of the same event did.

So "host offline for group prod-eu to the EU channel, the rest to the general one" is two
routes. A webhook several routes match gets the message once. As everywhere else, only the
labels approvers set count, never the labels a host reports about itself: an agent cannot
move its own alerts to another channel.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ..fleet import labels
from ..models import Campaign, Host, HostGroup, WebhookChannel, WebhookRoute

Scope = WebhookRoute.Scope


@dataclass(frozen=True)
class About:
    """What an event is about, as far as routing cares: a host's labels and groups, or a
    campaign's target. Both empty for an event about nothing in particular."""

    labels: Mapping[str, str] = field(default_factory=dict)
    group_ids: frozenset[int] = frozenset()

    @classmethod
    def host(cls, name: str) -> About:
        host = Host.objects.filter(name=name).first() if name else None
        if host is None:  # a refused report may name a host that never enrolled
            return cls()
        one = Host.objects.filter(pk=host.pk)
        groups = frozenset(g.pk for g in HostGroup.objects.all() if labels.group_hosts(g, one).exists())
        return cls(labels=dict(host.labels or {}), group_ids=groups)

    @classmethod
    def campaign(cls, campaign: Campaign) -> About:
        group = campaign.target_group
        if group is not None:
            return cls(labels=dict(group.selector or {}), group_ids=frozenset({group.pk}))
        return cls(labels=dict(campaign.target_selector or {}))


def _takes(route: WebhookRoute, about: About) -> bool:
    if route.scope == Scope.ALL:
        return True
    if route.scope == Scope.GROUP:
        return route.group_id in about.group_ids
    if route.scope == Scope.LABELS:
        wanted = route.selector or {}
        return bool(wanted) and all(about.labels.get(k) == v for k, v in wanted.items())
    return False  # REST: decided by the caller, after the scoped routes


def webhooks_for(event: str, about: About) -> list[WebhookChannel]:
    """The enabled webhooks routed ``event`` about ``about``, each once, in name order."""
    routes = list(WebhookRoute.objects.filter(event=event, webhook__enabled=True).select_related("webhook"))
    taken = [r for r in routes if _takes(r, about)]
    if not any(r.scope in (Scope.GROUP, Scope.LABELS) for r in taken):
        taken += [r for r in routes if r.scope == Scope.REST]
    hooks = {r.webhook.pk: r.webhook for r in taken}
    return sorted(hooks.values(), key=lambda h: h.name)


def describe(route: WebhookRoute) -> str:
    """The route's scope in words, for the settings page and the audit trail."""
    if route.scope == Scope.GROUP:
        return f"hosts of group {route.group.name if route.group else '(deleted)'}"
    if route.scope == Scope.LABELS:
        return f"hosts with labels {labels.format_selector(route.selector or {})}"
    if route.scope == Scope.REST:
        return "the rest"
    return "every host"
