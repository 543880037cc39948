"""The one kind of error the dashboard shows its users: ``DomainError`` and its families.

A refused transition (approving one's own request, accepting a host without a key, revoking
a key that is not there) raises a DomainError whose ``str()`` is one sentence fit for a page,
an API answer or a command's one-line error. Pages flash it, the API answers it as JSON
(``api/errors.py``: NotAllowed → 403, WrongState → 409, the rest → 400), and management
commands print it without a traceback (``management/base.py``). Anything else that escapes
(ValueError, TypeError, ...) is a programming error and is left to fail loudly.

Two kinds cut across the families, so callers can map them without knowing which family:
``NotAllowed`` (this actor may not do this, whatever the state) and ``WrongState`` (the thing
is not in a state that allows it; retrying will not help until the state changes).
"""

from __future__ import annotations


class DomainError(Exception):
    """A refusal fit to show the user: ``str()`` is the message."""


class NotAllowed(DomainError):
    """The actor may not do this (a permission, the two-person rule, a host without a key)."""


class WrongState(DomainError):
    """The object is not in a state that allows this transition."""


class HostError(DomainError):
    """A Host transition refused (fleet/hosts.py): accept, retire, the host's keys."""


class HostNotAllowed(HostError, NotAllowed):
    pass


class HostWrongState(HostError, WrongState):
    pass


class TokenError(DomainError):
    """An enrollment token that cannot be made or revoked as asked (fleet/trust.py)."""
