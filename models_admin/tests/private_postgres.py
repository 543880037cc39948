"""A PostgreSQL server of a test's own, to stop and restart without hurting anyone else.

``initdb`` into a temporary folder and ``pg_ctl`` on a free port; the dashboard's worker is
pointed at it with the production settings (``dashboard_env``) and ``enroll_host`` migrates it
and enrols one host, as an installed dashboard would have.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings

from workers.signing.keys import key_fingerprint, public_key_text

from .processes import ROOT

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_postgres(argv: list[str]) -> list[str]:
    # initdb refuses to run as root; the server's files then belong to the postgres user.
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


class PrivatePostgres:
    def __init__(self, folder: Path) -> None:
        self.folder, self.port = folder, _free_port()
        self.data, self.log = folder / "data", folder / "server.log"
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/ocrdash"

    def ctl(self, *args: str) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        argv = [str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", *args]
        subprocess.run(_as_postgres(argv), check=True, capture_output=True)

    def create(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres")
        subprocess.run(
            _as_postgres([str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust"]),
            check=True,
            capture_output=True,
        )
        self.ctl("start")
        with psycopg.connect(f"postgres://postgres@127.0.0.1:{self.port}/postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE ocrdash")


@contextmanager
def private_postgres_server() -> Iterator[PrivatePostgres]:
    if not (PG_BIN / "initdb").exists():
        pytest.skip("needs PostgreSQL 15's initdb to start a private server")
    # Not under pytest's tmp folder: the postgres user must be able to reach it.
    server = PrivatePostgres(Path(tempfile.mkdtemp(prefix="ocrdash-pg-")))
    try:
        server.create()
        yield server
    finally:
        if (server.data / "postmaster.pid").exists():
            server.ctl("stop", "-m", "immediate")
        shutil.rmtree(server.folder, ignore_errors=True)


def dashboard_env(database_url: str, **more: str) -> dict[str, str]:
    """The environment of a dashboard process on ``database_url`` (production settings)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OCRDASH_", "CELERY_", "DJANGO_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="ocrdash.settings",
        DJANGO_SECRET_KEY=settings.SECRET_KEY,
        DATABASE_URL=database_url,
        CELERY_BROKER_URL=settings.CELERY_BROKER_URL,
        OCRDASH_SIGNING_KEY_FILE=str(settings.OCRDASH_SIGNING_KEY_FILE),
        **more,
    )
    return env


_SETUP = """
import django, sys
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from models_admin.models import Host, HostKey
host = Host.objects.create(name=sys.argv[1], status=Host.Status.ACTIVE)
HostKey.objects.create(host=host, public_key=sys.argv[2], fingerprint=sys.argv[3])
"""


def enroll_host(env: dict[str, str], host: str, key: Ed25519PrivateKey) -> None:
    """Migrate the database of ``env`` and enrol ``host`` with ``key`` (an active host)."""
    subprocess.run(
        [sys.executable, "-c", _SETUP, host, public_key_text(key), key_fingerprint(key)],
        cwd=ROOT,
        env=env,
        check=True,
    )
