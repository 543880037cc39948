from django.http import HttpRequest

from .security.roles import Action, can


def roles(request: HttpRequest) -> dict:
    """``perms_ocrdash.approve`` etc. in templates, so buttons show only to who may press them."""
    user = getattr(request, "user", None)
    if user is None:
        return {}
    return {"perms_ocrdash": {a.value: can(user, a) for a in Action}}
