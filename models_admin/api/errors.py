"""Every API error is JSON of one shape: ``{"error": "<message>", "detail": ...}``.

``error`` is one sentence a script can print; ``detail`` carries the structure when there is
one (a validation error's fields), else null. Domain refusals (``models_admin/errors.py``)
map to HTTP like this: WrongState → 409 (retrying will not help until the state changes),
NotAllowed → 403 (this user may never do this, e.g. approving their own request), any other
DomainError → 400.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from models_admin.errors import DomainError, NotAllowed, WrongState


def exception_handler(exc: Exception, context: dict) -> Response | None:
    if isinstance(exc, DomainError):
        code = (
            status.HTTP_409_CONFLICT
            if isinstance(exc, WrongState)
            else status.HTTP_403_FORBIDDEN
            if isinstance(exc, NotAllowed)
            else status.HTTP_400_BAD_REQUEST
        )
        return Response({"error": str(exc), "detail": None}, status=code)
    if isinstance(exc, DjangoValidationError):
        exc = ValidationError(exc.messages)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # a bug: let Django log it and answer 500
    if isinstance(exc, ValidationError):
        response.data = {"error": _first_message(response.data), "detail": response.data}
    else:
        detail = response.data.get("detail") if isinstance(response.data, dict) else response.data
        response.data = {"error": str(detail), "detail": None}
    return response


def _first_message(data: Any, prefix: str = "") -> str:
    """The first leaf message of a DRF error structure, named by its field."""
    if isinstance(data, dict):
        for key, value in data.items():
            name = "" if key == "non_field_errors" else f"{prefix}{key}"
            return _first_message(value, f"{name}." if name else "")
    if isinstance(data, list) and data:
        if isinstance(data[0], str):
            return f"{prefix.rstrip('.')}: {data[0]}" if prefix else str(data[0])
        return _first_message(data[0], prefix)
    return f"{prefix.rstrip('.')}: {data}" if prefix else str(data or "invalid request")
