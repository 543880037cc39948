"""Who may do what: the one place that maps groups to actions.

Groups: viewer (read), operator (propose, ask for an inventory or a free), approver
(approve, reject, restore, accept and retire hosts, ask for an inventory). Superusers may do
everything. Roles are
cumulative in practice: the setup command puts an approver in viewer too, but every check
here looks only at the group that grants the action.
"""

from enum import StrEnum

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, PermissionsMixin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest


class Role(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    APPROVER = "approver"


class Action(StrEnum):
    VIEW = "view"
    PROPOSE = "propose"
    REQUEST_INVENTORY = "request_inventory"
    REQUEST_FREE = "request_free"
    APPROVE = "approve"  # approve or reject a request
    RESTORE = "restore"
    MANAGE_HOSTS = "manage_hosts"  # accept, retire
    CONFIGURE = "configure"  # schedules and retention


GRANTS: dict[Action, frozenset[Role]] = {
    Action.VIEW: frozenset(Role),
    Action.PROPOSE: frozenset({Role.OPERATOR}),
    # An approver may want current facts before deciding; an inventory changes nothing on disk.
    Action.REQUEST_INVENTORY: frozenset({Role.OPERATOR, Role.APPROVER}),
    Action.REQUEST_FREE: frozenset({Role.OPERATOR}),
    Action.APPROVE: frozenset({Role.APPROVER}),
    Action.RESTORE: frozenset({Role.APPROVER}),
    Action.MANAGE_HOSTS: frozenset({Role.APPROVER}),
    Action.CONFIGURE: frozenset({Role.APPROVER}),
}


def roles_of(user: AbstractBaseUser | AnonymousUser) -> frozenset[Role]:
    # PermissionsMixin: the user model has groups and is_superuser (django.contrib.auth's User).
    if not user.is_authenticated or not user.is_active or not isinstance(user, PermissionsMixin):
        return frozenset()
    if user.is_superuser:
        return frozenset(Role)
    # Cached on the user object: a page asks several times per request.
    cached = getattr(user, "_ocrdash_roles", None)
    if cached is None:
        names = set(user.groups.values_list("name", flat=True))
        cached = frozenset(r for r in Role if r.value in names)
        # The user object lives for one request, so the cache does too.
        setattr(user, "_ocrdash_roles", cached)  # noqa: B010
    return cached


def can(user: AbstractBaseUser | AnonymousUser, action: Action) -> bool:
    return bool(roles_of(user) & GRANTS[action])


def require(request: HttpRequest, action: Action) -> None:
    """Refuse (403) a request whose user may not do ``action``: the check every view makes."""
    if not can(request.user, action):
        raise PermissionDenied(f"your account may not {action.value.replace('_', ' ')}")


def actor_name(user) -> str:
    """The name an audit event gives the actor: the user's, or "system" for beat and commands."""
    return user.get_username() if user is not None else "system"
