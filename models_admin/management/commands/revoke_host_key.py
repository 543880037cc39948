"""Revoke a host's key (the same as the host page's button): its messages are refused."""

from __future__ import annotations

from django.core.management.base import CommandError

from models_admin.fleet import hosts
from models_admin.management.base import DomainCommand
from models_admin.models import Host


class Command(DomainCommand):
    help = "Revoke a host's enrolled key; it must enroll a new key with a new token."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--by", default="system", metavar="USER", help="audit it as done by this name")

    def handle(self, *args, name: str, by: str, **kw):
        host = Host.objects.filter(name=name).first()
        if host is None:
            raise CommandError(f"no host named {name!r}")
        key = hosts.revoke_key(host, by)
        host.refresh_from_db()
        self.stdout.write(f"{host.name}: key {key.fingerprint} revoked; host is {host.status}")
