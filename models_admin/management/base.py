"""The base of ocrdash's management commands: a refusal ends as one line, never a traceback.

A command run by an admin at a shell is a user interface: ``accept_host`` on a host without a
key once ended in a traceback of ``workflow.NotAllowed``. Every domain refusal (a DomainError:
a request's or a host's transition, a token), a key file problem (the signing family's
SignatureError, from the Django-free side) and a database that is not there become Django's
CommandError, which ``manage.py`` prints as one line with exit status 1. Anything else is a
programming error and keeps its traceback.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from models_admin.errors import DomainError
from workers.signing.errors import SignatureError


class DomainCommand(BaseCommand):
    def execute(self, *args: Any, **options: Any) -> Any:
        try:
            return super().execute(*args, **options)
        except CommandError:
            raise
        except (DomainError, SignatureError) as exc:
            raise CommandError(one_line(exc)) from None
        except DatabaseError as exc:
            raise CommandError(f"the database refused or is unavailable: {one_line(exc)}") from None


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:500]
