"""Accept a pending host so orders may be sent to it (the same transition as the page's button)."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError

from models_admin import workflow
from models_admin.models import Host


def host_and_actor(name: str, by: str | None) -> tuple[Host, User | None]:
    try:
        host = Host.objects.get(name=name)
    except Host.DoesNotExist:
        raise CommandError(f"no host named {name!r}: it registers itself with its first inventory") from None
    if by is None:
        return host, None  # audited as "system"
    try:
        return host, User.objects.get(username=by)
    except User.DoesNotExist:
        raise CommandError(f"no user named {by!r}") from None


class Command(BaseCommand):
    help = "Accept a pending (or retired) host."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument(
            "--by", metavar="USER", help="audit the acceptance as this user (default: system)"
        )

    def handle(self, *args, name: str, by: str | None, **kw):
        host, user = host_and_actor(name, by)
        was = host.status
        host = workflow.accept_host(host, user)
        self.stdout.write(f"{host.name}: {was} -> {host.status}")
