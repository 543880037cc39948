"""Accept a pending host so orders may be sent to it (the same transition as the page's button)."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.core.management.base import CommandError

from models_admin.fleet import hosts
from models_admin.management.base import DomainCommand
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


class Command(DomainCommand):
    help = "Accept a pending (or retired) host, or (--new-key) the new key it enrolled."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument(
            "--by", metavar="USER", help="audit the acceptance as this user (default: system)"
        )
        parser.add_argument(
            "--new-key",
            action="store_true",
            help="accept the host's new key (compare its fingerprint first); the old key stops working",
        )

    def handle(self, *args, name: str, by: str | None, new_key: bool = False, **kw):
        host, user = host_and_actor(name, by)
        if new_key:
            key = hosts.accept_new_key(host, by or "system")
            self.stdout.write(f"{host.name}: new key {key.fingerprint} accepted")
            return
        was = host.status
        host = hosts.accept_host(host, user)
        self.stdout.write(f"{host.name}: {was} -> {host.status}")
