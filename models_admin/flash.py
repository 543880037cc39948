"""Flash messages of a refusal: how every page, the notification settings' included, says why.

Below the pages (views/ and notifications/views.py both use it), so neither imports the other.
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.http import HttpRequest


def flash_error(request: HttpRequest, exc: Exception | str) -> None:
    text = str(exc)
    messages.error(request, text[:1].upper() + text[1:])


def flash_form_errors(request: HttpRequest, form: forms.Form) -> None:
    """Why a posted form was refused, every error of every field in one message worded as
    ``flash_error`` words a refusal (the page it redirects to shows no form to mark them on).
    Each error's closing full stop goes, so that the "; " between them reads as one sentence."""
    flash_error(request, "; ".join(str(e).rstrip(".") for errors in form.errors.values() for e in errors))
