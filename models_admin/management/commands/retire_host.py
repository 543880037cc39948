"""Retire a host: hidden from the overview, its open proposals expire, its reports are refused."""

from __future__ import annotations

from models_admin.fleet import hosts
from models_admin.management.base import DomainCommand

from .accept_host import host_and_actor


class Command(DomainCommand):
    help = "Retire a host (its history stays)."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument(
            "--by", metavar="USER", help="audit the retirement as this user (default: system)"
        )

    def handle(self, *args, name: str, by: str | None, **kw):
        host, user = host_and_actor(name, by)
        was = host.status
        host = hosts.retire_host(host, user)
        self.stdout.write(f"{host.name}: {was} -> {host.status}")
