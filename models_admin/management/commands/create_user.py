"""Create or update a dashboard user non-interactively, so a script can set up an install.

Idempotent: running it again updates the user. When any --role is given, the user's roles
become exactly those (plus viewer); without --role they stay as they are, so the command can
also just change a password. --superuser / --no-superuser likewise change that flag only when given.
"""

from __future__ import annotations

import argparse
import os

from django.contrib.auth.models import Group, User
from django.core.management.base import CommandError
from django.db import transaction

from models_admin.api.tokens import issue_token
from models_admin.management.base import DomainCommand
from models_admin.security.roles import Role


class Command(DomainCommand):
    help = "Create or update a user with the given roles (viewer, operator, approver)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument(
            "--role",
            action="append",
            choices=[r.value for r in Role],
            default=[],
            help="repeat for several roles; viewer is implied by the others",
        )
        secret = parser.add_mutually_exclusive_group()
        secret.add_argument("--password", help="visible in the process list: prefer --password-env")
        secret.add_argument("--password-env", metavar="VAR", help="read the password from this variable")
        parser.add_argument("--email", default=None)
        parser.add_argument(
            "--superuser",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="may do everything, including the Django admin",
        )
        parser.add_argument(
            "--token",
            action="store_true",
            help="print a new API token for the user (shown once; it replaces the user's earlier token)",
        )

    def handle(
        self, *args, username: str, role: list[str], password, password_env, email, superuser, token, **kw
    ):
        if password_env:
            password = os.environ.get(password_env)
            if not password:
                raise CommandError(f"environment variable {password_env} is not set or empty")
        roles = set(role)
        if roles:
            roles.add(Role.VIEWER.value)  # someone who may approve must be able to see
        with transaction.atomic():
            user, created = User.objects.get_or_create(username=username)
            if email is not None:
                user.email = email
            if password:
                user.set_password(password)
            elif created:
                # No password given: the account can use an API token but not the login form.
                user.set_unusable_password()
            if superuser is not None:
                user.is_superuser = user.is_staff = superuser
            user.save()
            if roles:
                missing = roles - set(Group.objects.filter(name__in=roles).values_list("name", flat=True))
                if missing:
                    raise CommandError(
                        f"role groups missing (run migrate first): {', '.join(sorted(missing))}"
                    )
                user.groups.set(Group.objects.filter(name__in=roles))
        verb = "created" if created else "updated"
        current = sorted(user.groups.values_list("name", flat=True))
        shown = ", ".join(current + (["superuser"] if user.is_superuser else [])) or "no role"
        self.stderr.write(f"{verb} user {username} ({shown})")
        if token:
            self.stdout.write(issue_token(user))
