"""Print the dashboard's public key, the text every agent pins (the key is made on first use)."""

from __future__ import annotations

from django.core.management.base import CommandError

from models_admin.fleet import trust
from models_admin.management.base import DomainCommand
from workers.signing.errors import SignatureError


class Command(DomainCommand):
    help = "Print the dashboard's public signing key (OCRDASH_DASHBOARD_PUBLIC_KEY for agents)."

    def add_arguments(self, parser):
        parser.add_argument("--fingerprint", action="store_true", help="also print its fingerprint on stderr")

    def handle(self, *args, fingerprint: bool, **kw):
        try:
            public = trust.dashboard_public_key()
        except SignatureError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(public)
        if fingerprint:
            self.stderr.write(f"fingerprint {trust.dashboard_fingerprint()}")
