"""DRF's side of security/roles.py: a view names the action each HTTP method needs, ``can()`` decides."""

from __future__ import annotations

from rest_framework.permissions import SAFE_METHODS, BasePermission

from models_admin.security.roles import Action, can

from .throttling import AddressThrottle


class RolePermission(BasePermission):
    """Reads need Action.VIEW; a write needs the view's ``action`` (required on every write view).

    Anonymous callers get 401 (DRF asks for credentials before it checks the role), a user
    without the role 403.
    """

    message = "your role does not allow this"

    def has_permission(self, request, view) -> bool:
        if not request.user.is_authenticated:
            # DRF's throttles would run only after this refusal: count anonymous calls here.
            AddressThrottle().refuse_if_over(request, view)
        needed: Action | None
        if request.method in SAFE_METHODS:
            needed = Action.VIEW
        else:
            needed = getattr(view, "action_required", None)
            if needed is None:
                return False  # a write view that forgot to say what it needs is closed
        return can(request.user, needed)
