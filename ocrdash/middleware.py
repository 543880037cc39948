"""Wiring that every request passes through."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

from django.core.signals import request_finished, request_started
from django.http import HttpRequest, HttpResponse

from workers.logs import current_context, set_context, set_idle

# A proxy's id is kept when it looks like one; anything else (a forged line, a huge header)
# gets a fresh id instead.
_GIVEN_ID = re.compile(r"[A-Za-z0-9._-]{8,64}")
_PREFIX = "request="


def _started(environ: dict[str, Any] | None = None, **kwargs: Any) -> None:
    """From the first line of a request to its last: Django logs a 4xx or 5xx after the
    middleware returned, so the id is set here, when the handler starts, not in the middleware."""
    given = (environ or {}).get("HTTP_X_REQUEST_ID", "")
    set_context("request", given if _GIVEN_ID.fullmatch(given) else uuid.uuid4().hex[:16])


def _finished(**kwargs: Any) -> None:
    set_idle()


request_started.connect(_started, dispatch_uid="ocrdash-request-id-start")
request_finished.connect(_finished, dispatch_uid="ocrdash-request-id-end")


class RequestIdMiddleware:
    """Names the request's id (on every log line written while it runs) in the response's
    ``X-Request-ID`` header, so a user's report of an error finds its lines."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        context = current_context()
        if context.startswith(_PREFIX):
            response["X-Request-ID"] = context.removeprefix(_PREFIX)
        return response
