"""Make a one-time enrollment token for a host (the same as the Enrollment page's form).

The token is printed once, on stdout, and stored nowhere: pipe it straight into the agent's
token file. With ``--env`` the output is the agent's trust settings, one per line.
"""

from __future__ import annotations

from models_admin.fleet import trust
from models_admin.management.base import DomainCommand


class Command(DomainCommand):
    help = "Create a one-time enrollment token and print it (once)."

    def add_arguments(self, parser):
        parser.add_argument("--label", default="", help="what the token is for (shown in the list)")
        parser.add_argument("--host", default="", metavar="NAME", help="only this host may use the token")
        parser.add_argument("--hours", type=float, default=None, help="validity (default: the setting)")
        parser.add_argument("--by", default="system", metavar="USER", help="audit it as made by this name")
        parser.add_argument(
            "--env",
            action="store_true",
            help="print OCRDASH_DASHBOARD_PUBLIC_KEY=... and OCRDASH_ENROLLMENT_TOKEN=... lines",
        )

    def handle(self, *args, label: str, host: str, hours: float | None, by: str, env: bool, **kw):
        row, token = trust.create_token(by, label=label, host_name=host, hours=hours)
        if env:
            self.stdout.write(f"OCRDASH_DASHBOARD_PUBLIC_KEY={trust.dashboard_public_key()}")
            self.stdout.write(f"OCRDASH_ENROLLMENT_TOKEN={token}")
        else:
            self.stdout.write(token)
        self.stderr.write(f"token {row.fingerprint}, valid until {row.expires_at:%Y-%m-%d %H:%M %Z}")
