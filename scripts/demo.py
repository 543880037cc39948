#!/usr/bin/env python
"""Run the whole of ocrdash on one machine: ``make demo`` (or ``python scripts/demo.py``).

It needs nothing but the project's virtualenv: the database is an SQLite file and the broker
is kombu's filesystem transport, a folder every process points at (CELERY_BROKER_URL may name
a Redis server instead; the agents then get the same URL). Everything lives under one folder
(``var/demo`` by default):

    ocrdash.sqlite3     the dashboard's database
    keys/dashboard.key  the dashboard's private signing key, shared by web, ingest and beat
    broker/             the filesystem broker's messages and bindings
    hosts/<name>/       one fake OCR host: models/ (its model folder) and state/ (its agent's
                        key, records and, until it enrolled, its one-time token file)
    logs/<process>.log  what each process printed
    mail.log            every email the dashboard sent, caught by the demo's mail sink

Started: the web server, the ingest worker, the notification worker, the scheduler, a local
mail sink (``scripts/mailsink.py``: the dashboard's SMTP server, which only writes what it is
sent to ``mail.log``; the runner prints a line for each mail) and one agent per demo host. An
agent that dies is started again (a real host's service manager would do the same); any
other process dying stops the demo. Every
child runs in its own process group (its own session), so a terminal's Ctrl-C reaches only
this runner, which then stops each group as a whole: a Celery worker's pool processes go
with their parent and nothing is left running. Running it again reuses the folder (the
database, the accounts, the hosts and what happened to their files); ``--reset`` starts over.

Trust is set up the way an admin would: every agent pins the dashboard's public key, and a
host whose agent holds no enrolled key yet gets a one-time enrollment token in a 0600 file of
its state folder (not in its environment, which ``ps e`` would show). The token is deleted
once the host enrolled; a rerun gives a token only to a host that needs one.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_VAR = ROOT / "var" / "demo"
KIB, MIB = 1024, 1024 * 1024
TOKEN_FILE = "enrollment.token"
TOKEN_LABEL = "demo"

# Fixed demo accounts: printed at start, so nobody has to guess them. Demo only.
ACCOUNTS: list[tuple[str, str, str]] = [
    # (username, password, role); "admin" is a superuser, the others are plain role members.
    ("admin", "demo-admin-pass", "admin"),
    ("operator", "demo-operator-pass", "operator"),
    ("approver", "demo-approver-pass", "approver"),
]

ASPOSE_DEFAULT_MODEL = "Llama-3.2-3B-Instruct-Q4_K_M.gguf"
# Written once after the hosts were accepted and inventoried at once: its first hashing shows
# as a moving progress bar on the host's page (and later runs find it in the hash cache, so
# their start is not slowed). Sparse: no disk space is used.
LARGE_MODEL = ("ocr-west-1", "llm/Qwen2.5-0.5B-Instruct-Q4_K_M.gguf", 512 * 1024**2)
# Agents report progress this often in the demo (2 s in production), so the bar visibly moves.
DEMO_PROGRESS_SECONDS = "0.5"
# The host the banner's "Freeze" line names (the README says the same).
FREEZE_EXAMPLE = "ocr-west-3"
# How long Ctrl-C waits for every process before SIGKILL. An agent's warm shutdown waits up
# to 5 s for its heartbeat thread (which may be in the middle of a beat) and 5 s for its
# outbox thread, after its pool: 10 s was not always enough on a busy machine.
STOP_GRACE_SECONDS = 25.0
# An agent that died is restarted, at most this many times in a row within a minute.
AGENT_RESTARTS_PER_MINUTE = 3


@dataclass(frozen=True)
class DemoHost:
    name: str
    # relative path -> (size, content seed). The same seed on two hosts gives the same bytes,
    # hence the same sha256: the model page then shows one model held by several hosts.
    files: dict[str, tuple[int, str]] = field(default_factory=dict)
    # False: the agent is pointed at a folder that does not exist ("model folder missing").
    has_model_dir: bool = True
    # A file rewritten once the host's first inventory arrived, so its history shows a change.
    changes_after_first_scan: str | None = None
    # The OCR engine's own recognition models (aspose.ocr.Resources), the host's second store.
    ocr_files: dict[str, tuple[int, str]] = field(default_factory=dict)
    # A model a stand-in OCR engine process keeps memory-mapped, so "in use now" shows.
    held_open: str | None = None
    # Labels an approver sets (what groups and campaigns target), and what the agent itself
    # reports from OCRDASH_HOST_LABELS (shown apart, never targeted).
    labels: dict[str, str] = field(default_factory=dict)
    reported: str = ""


HOSTS: list[DemoHost] = [
    DemoHost(
        "ocr-east-1",
        {
            "en_ocr_v2.gguf": (2 * MIB, "en-v2"),
            "old_en_ocr_v1.gguf": (int(1.5 * MIB), "en-v1"),
            "old_fr_ocr_v1.bin": (3 * MIB, "fr-v1"),
            ASPOSE_DEFAULT_MODEL: (512 * KIB, "llama-3.2-3b"),
            "layout/table_detector_v3.onnx": (256 * KIB, "table-v3"),
        },
        changes_after_first_scan="layout/table_detector_v3.onnx",
        ocr_files={"english.OCR": (384 * KIB, "ocr-en"), "old_latin.OCR": (640 * KIB, "ocr-latin-v1")},
        held_open="en_ocr_v2.gguf",
        labels={"env": "prod", "region": "east"},
        reported="rack=e1",
    ),
    DemoHost(
        "ocr-west-1",
        {
            "en_ocr_v2.gguf": (2 * MIB, "en-v2"),
            "fr_ocr_v2.bin": (3 * MIB, "fr-v2"),
            "old_fr_ocr_v1.bin": (3 * MIB, "fr-v1"),
            "old_de_ocr_v1.onnx": (768 * KIB, "de-v1"),
            # One folder down: Aspose still finds its default model there.
            f"llm/{ASPOSE_DEFAULT_MODEL}": (512 * KIB, "llama-3.2-3b"),
        },
        ocr_files={"english.OCR": (384 * KIB, "ocr-en"), "arabic.OCR": (512 * KIB, "ocr-ar")},
        labels={"env": "prod", "region": "west"},
        reported="rack=w1",
    ),
    DemoHost("ocr-lab", has_model_dir=False, labels={"env": "lab"}),
    DemoHost(
        "ocr-east-2",
        {"en_ocr_v2.gguf": (2 * MIB, "en-v2"), "old_fr_ocr_v1.bin": (3 * MIB, "fr-v1")},
        labels={"env": "prod", "region": "east"},
        reported="rack=e2",
    ),
    DemoHost(
        "ocr-west-2",
        {
            "en_ocr_v2.gguf": (2 * MIB, "en-v2"),
            "fr_ocr_v2.bin": (3 * MIB, "fr-v2"),
            "old_fr_ocr_v1.bin": (3 * MIB, "fr-v1"),
        },
        labels={"env": "prod", "region": "west"},
        reported="rack=w2",
    ),
    DemoHost(
        "ocr-west-3",
        {"fr_ocr_v2.bin": (3 * MIB, "fr-v2"), "old_fr_ocr_v1.bin": (3 * MIB, "fr-v1")},
        labels={"env": "prod", "region": "west"},
        reported="rack=w3",
    ),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


HOLD_MODEL = (
    "import mmap, sys, time\n"
    "f = open(sys.argv[1], 'rb')\n"
    "m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)\n"
    "while True: time.sleep(3600)\n"
)


class DemoError(RuntimeError):
    """Something the person running the demo has to know about; printed without a traceback."""


class Stop(Exception):
    """Raised by the signal handlers: SIGINT, SIGTERM or SIGHUP asked the demo to stop."""


# ---------------------------------------------------------------- the fake hosts' files


def _content(seed: str, size: int) -> bytes:
    # Deterministic bytes: reruns and other hosts produce the very same file for a seed.
    return random.Random(seed).randbytes(size)


def seed_host(var: Path, host: DemoHost) -> Path:
    """Create a host's folders and model files; leave whatever exists alone (reruns reuse)."""
    base = var / "hosts" / host.name
    state = base / "state"
    state.mkdir(parents=True, exist_ok=True)
    # The agent refuses a key folder others could write to (they could swap its key); a
    # folder made by an older demo with the umask's 0755 is tightened here too.
    state.chmod(0o700)
    models = base / "models"
    if not host.has_model_dir:
        return models
    if (base / ".seeded").exists():
        # Files that were pruned or restored since are part of the demo's history: keep them.
        return models
    now = time.time()
    seeded = [(models / rel, size, seed) for rel, (size, seed) in host.files.items()]
    seeded += [(base / "aspose_data" / rel, size, seed) for rel, (size, seed) in host.ocr_files.items()]
    for path, size, seed in seeded:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(_content(seed, size))
        # Back-dated, so the age policy and the "modified" column have something to show.
        age_days = 210 if path.name.startswith("old_") else 30
        os.utime(path, (now - age_days * 86400, now - age_days * 86400))
    (base / ".seeded").write_text("model files written by scripts/demo.py\n")
    return models


def add_large_model(var: Path) -> str | None:
    """Once per demo folder: give a host a multi-gigabyte model (sparse), for a long first hashing."""
    name, rel, size = LARGE_MODEL
    base = var / "hosts" / name
    marker = base / ".large"
    path = base / "models" / rel
    if marker.exists() or not (base / "models").is_dir():
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        f.truncate(size)
    marker.write_text(f"{rel} written as a large sparse file\n")
    return name


def change_after_first_scan(var: Path, host: DemoHost) -> bool:
    """Rewrite the host's chosen file once (size and hash change); False if done before."""
    if host.changes_after_first_scan is None:
        return False
    base = var / "hosts" / host.name
    marker = base / ".changed"
    path = base / "models" / host.changes_after_first_scan
    if marker.exists() or not path.exists():
        return False
    with path.open("ab") as f:
        f.write(_content(f"{host.name}-retrained", 64 * KIB))
    marker.write_text(f"{host.changes_after_first_scan} grew after the first inventory\n")
    return True


# ---------------------------------------------------------------- child processes


@dataclass
class Child:
    """One started process and its process group (its pid: it leads its own session)."""

    name: str
    proc: subprocess.Popen
    log_path: Path
    log_file: IO[bytes]
    env: dict[str, str] = field(default_factory=dict, repr=False)
    cwd: Path = Path(".")

    @property
    def pgid(self) -> int:
        return self.proc.pid

    def group_alive(self) -> bool:
        self.proc.poll()  # reap the leader, or its zombie would count as a member
        try:
            os.killpg(self.pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pgid, sig)

    def tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class Supervisor:
    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.children: list[Child] = []

    def start(self, name: str, argv: list[str], env: dict[str, str], cwd: Path) -> Child:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        log_file = log_path.open("ab")
        log_file.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(argv)}\n".encode())
        log_file.flush()
        proc = subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            # Its own session and process group: a terminal's Ctrl-C does not reach it (the
            # runner decides the order of shutdown), and killpg() reaches its pool processes.
            start_new_session=True,
        )
        # <name>.pid beside its log: the process group to freeze (kill -STOP -PID) or resume.
        (self.log_dir / f"{name}.pid").write_text(f"{proc.pid}\n")
        child = Child(name, proc, log_path, log_file, env, cwd)
        self.children.append(child)
        return child

    def dead(self) -> Child | None:
        for child in self.children:
            if child.proc.poll() is not None:
                return child
        return None

    def restart(self, child: Child) -> Child:
        """Start ``child``'s command again in its place (same name, log, environment)."""
        child.log_file.close()
        args = child.proc.args
        argv = [str(a) for a in args] if isinstance(args, list | tuple) else [str(args)]
        self.children.remove(child)
        return self.start(child.name, argv, child.env, child.cwd)

    def stop_all(self, grace: float = 10.0) -> list[str]:
        """SIGTERM every group, wait up to ``grace`` seconds, SIGKILL what is left.

        Returns the names of groups that needed SIGKILL. After it returns no process of any
        started group is alive.
        """
        for child in reversed(self.children):
            child.signal_group(signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(c.group_alive() for c in self.children):
            time.sleep(0.1)
        killed = []
        for child in self.children:
            if child.group_alive():
                killed.append(child.name)
                child.signal_group(signal.SIGKILL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(c.group_alive() for c in self.children):
            time.sleep(0.05)
        for child in self.children:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.proc.wait(timeout=1)
            child.log_file.close()
        return killed


# ---------------------------------------------------------------- the dashboard side


def private_file(path: Path) -> Path:
    """Make ``path`` (if missing) and leave it 0600: the demo's database and secrets are nobody else's."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600))
    path.chmod(0o600)
    return path


def demo_secret_key(var: Path) -> str:
    """The demo's own DJANGO_SECRET_KEY, made once per demo folder (0600) and reused by reruns.

    The settings refuse to start without a real key; a random one per folder keeps the demo's
    sessions valid across reruns without a key anybody else knows.
    """
    path = var / "keys" / "django-secret-key"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    private_file(path)
    key = path.read_text().strip()
    if not key:
        key = secrets.token_urlsafe(50)
        path.write_text(key + "\n")
    return key


def base_env(var: Path, port: int = 8000, smtp_port: int = 8025) -> dict[str, str]:
    """Environment shared by every process: one database, one broker, one secret key, one mail sink."""
    env = dict(os.environ)
    broker = os.environ.get("CELERY_BROKER_URL", "").strip() or "filesystem://"
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "ocrdash.settings",
            "DATABASE_URL": f"sqlite:///{var / 'ocrdash.sqlite3'}",
            "CELERY_BROKER_URL": broker,
            "OCRDASH_BROKER_URL": broker,
            "OCRDASH_BROKER_FOLDER": str(var / "broker"),
            # One key for web, ingest, beat and this runner: an order signed by any of them
            # must verify against the one public key the agents pinned.
            "OCRDASH_SIGNING_KEY_FILE": str(var / "keys" / "dashboard.key"),
            # The demo is a development server on 127.0.0.1 over plain HTTP: asked for here,
            # never a default (the settings fail closed without it).
            "DJANGO_DEBUG": "true",
            "DJANGO_SECRET_KEY": demo_secret_key(var),
            # Notifications go to the demo's mail sink and link to the demo's web server.
            "OCRDASH_SMTP_HOST": "127.0.0.1",
            "OCRDASH_SMTP_PORT": str(smtp_port),
            "OCRDASH_BASE_URL": f"http://127.0.0.1:{port}",
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p),
        }
    )
    return env


def setup_django(env: dict[str, str]) -> None:
    """Use the demo's database in this process too (accounts, accepting hosts, polling)."""
    for key in (
        "DJANGO_SETTINGS_MODULE",
        "DATABASE_URL",
        "CELERY_BROKER_URL",
        "OCRDASH_BROKER_FOLDER",
        "OCRDASH_SIGNING_KEY_FILE",
        "DJANGO_SECRET_KEY",
        "DJANGO_DEBUG",
        "OCRDASH_SMTP_HOST",
        "OCRDASH_SMTP_PORT",
        "OCRDASH_BASE_URL",
    ):
        os.environ[key] = env[key]
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    # kombu warns on every connection that filesystem:// names no host; it needs none.
    logging.getLogger("kombu.connection").setLevel(logging.ERROR)


def migrate() -> None:
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)


def ensure_accounts() -> None:
    """Create the demo accounts, or reset their passwords to the printed ones."""
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    for username, password, role in ACCOUNTS:
        options = {"superuser": True} if role == "admin" else {"role": [role]}
        call_command("create_user", username, password=password, stderr=io.StringIO(), **options)
        # An address, so notifications reach them (in the demo's mail sink).
        get_user_model().objects.filter(username=username).update(email=demo_address(username))


def demo_address(username: str) -> str:
    return f"{username}@ocrdash.demo"


def _agent_public_key(state: Path) -> str | None:
    """The public key of the agent's own key file, or None if the agent never started."""
    from workers.signing.keys import load_private_key, public_key_text
    from workers.trust import AGENT_KEY_FILE

    path = state / AGENT_KEY_FILE
    if not path.exists():
        return None
    return public_key_text(load_private_key(path))


def prepare_trust(var: Path) -> tuple[str, dict[str, Path]]:
    """The dashboard's public key, and a fresh token file for every host that must enroll.

    A host needs a token unless its agent's key is the one the dashboard has enrolled for
    it: on a rerun the enrolled agents keep their key and get none (tokens are single-use,
    and an unused one would only wait to expire). Earlier demo tokens still open for the
    host are revoked first, so at most one exists per host.
    """
    from models_admin.fleet import trust
    from models_admin.models import HostKey

    public = trust.dashboard_public_key()
    token_files: dict[str, Path] = {}
    for host in HOSTS:
        state = var / "hosts" / host.name / "state"
        token_file = state / TOKEN_FILE
        token_file.unlink(missing_ok=True)
        agent_key = _agent_public_key(state)
        active = HostKey.objects.filter(host__name=host.name, revoked_at__isnull=True)
        if agent_key is not None and active.filter(public_key=agent_key).exists():
            continue
        for old in trust.open_tokens().filter(host_name=host.name, label=TOKEN_LABEL):
            trust.revoke_token(old.id, ACCOUNTS[0][0])
        _, token = trust.create_token(ACCOUNTS[0][0], label=TOKEN_LABEL, host_name=host.name)
        # Created 0600 before the secret is written: never readable by others, not even briefly.
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(token + "\n")
        token_files[host.name] = token_file
        print(f"  {host.name}: one-time enrollment token written for its agent")
    return public, token_files


def forget_used_tokens(token_files: dict[str, Path]) -> None:
    """Delete the token files of hosts that enrolled: the agent read its token at start."""
    from models_admin.models import HostKey

    for name, path in token_files.items():
        if HostKey.objects.filter(host__name=name, revoked_at__isnull=True).exists():
            path.unlink(missing_ok=True)


def host_states(names: list[str], since=None) -> dict[str, str]:
    """name -> status for the demo hosts that have reported (since ``since``, if given)."""
    from django.db import close_old_connections

    from models_admin.models import Host

    close_old_connections()
    hosts = Host.objects.filter(name__in=names)
    if since is not None:
        hosts = hosts.filter(last_seen__gte=since)
    return dict(hosts.values_list("name", "status"))


def wait_for_hosts(sup: Supervisor, names: list[str], timeout: float) -> None:
    """Until every host reported in this run: on a rerun the database already knows them all."""
    from django.utils import timezone

    started = timezone.now()
    deadline = time.monotonic() + timeout
    seen: set[str] = set()
    while True:
        states = host_states(names, since=started)
        for name in sorted(set(states) - seen):
            print(f"  {name} reported")
        seen = set(states)
        if seen == set(names):
            return
        if (dead := sup.dead()) is not None:
            raise DemoError(f"{dead.name} stopped early:\n{dead.tail()}")
        if time.monotonic() > deadline:
            missing = ", ".join(sorted(set(names) - seen))
            raise DemoError(f"no report from {missing} after {timeout:.0f}s; see {sup.log_dir}")
        time.sleep(0.5)


def wait_for_web(sup: Supervisor, port: int, timeout: float) -> None:
    """Until the login page answers, so the printed address works when it is printed."""
    url = f"http://127.0.0.1:{port}/accounts/login/"
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if (dead := sup.dead()) is not None:
            raise DemoError(f"{dead.name} stopped early (is port {port} free? try PORT=...):\n{dead.tail()}")
        if time.monotonic() > deadline:
            raise DemoError(f"the web server did not answer on {url} after {timeout:.0f}s")
        time.sleep(0.3)


def accept_hosts(names: list[str]) -> None:
    from django.core.management import call_command

    from models_admin.models import Host

    for name, status in host_states(names).items():
        if status == Host.Status.PENDING:
            call_command("accept_host", name, by=ACCOUNTS[0][0], stdout=io.StringIO())
            print(f"  {name} accepted")


def propose_first_request(var: Path) -> str | None:
    """Once per demo folder: the operator proposes pruning a host's ``old_`` models, so the
    approver finds a request waiting (the two-person rule, ready to try)."""
    from django.contrib.auth import get_user_model

    from models_admin.capacity import policies
    from models_admin.models import Host

    marker = var / ".proposed"
    if marker.exists():
        return None
    host = Host.objects.get(name=HOSTS[1].name)
    operator = get_user_model().objects.get(username=ACCOUNTS[1][0])
    run = policies.run_policy(host, "prefix", user=operator, reason="demo: replaced by the v2 models")
    marker.write_text("the demo proposed its first request\n")
    return host.name if run.request is not None else None


def label_hosts() -> None:
    """The approver labels the hosts (once: an approver's later changes are kept) and saves the
    two region groups the campaign pages offer."""
    from django.contrib.auth import get_user_model

    from models_admin.fleet import labels
    from models_admin.models import Host, HostGroup

    approver = get_user_model().objects.get(username=ACCOUNTS[2][0])
    for host in HOSTS:
        row = Host.objects.get(name=host.name)
        if host.labels and not row.labels:
            labels.set_labels(row, host.labels, approver)
    for region in ("east", "west"):
        if not HostGroup.objects.filter(name=f"prod-{region}").exists():
            labels.save_group(
                f"prod-{region}",
                selector={"env": "prod", "region": region},
                user=approver,
                description=f"production hosts in the {region}",
            )


def propose_first_campaign(var: Path) -> str | None:
    """Once per demo folder: the operator proposes removing the old French model from every
    production host, canary first, so the approver finds a campaign waiting."""
    from django.contrib.auth import get_user_model

    from models_admin.campaigns import plan, rollout
    from models_admin.models import Campaign, ModelFile

    marker = var / ".campaign"
    if marker.exists():
        return None
    old = ModelFile.objects.filter(name="old_fr_ocr_v1.bin").exclude(sha256="").first()
    if old is None:
        return None
    operator = get_user_model().objects.get(username=ACCOUNTS[1][0])
    spec = plan.Spec(
        target_kind=Campaign.Target.SELECTOR,
        selector={"env": "prod"},
        rule_kind=Campaign.Rule.IDENTITY,
        model_name=old.name,
        model_sha256=old.sha256,
        canary_size=1,
        wave_size=2,
    )
    try:
        reason = "demo: the French v2 model replaced v1 everywhere"
        campaign = rollout.propose(spec, user=operator, reason=reason)
    except rollout.CampaignError as exc:
        print(f"  (no demo campaign: {exc})")
        return None
    marker.write_text("the demo proposed its first campaign\n")
    return campaign.short_id


FILLING_HOST = "ocr-east-2"
FILLING_GROUP = "disk-watch"


def fill_one_disk(var: Path) -> str | None:
    """Once per demo folder: give one host a disk that has been filling for two weeks, and a
    watermark it has just passed, so its page charts the fall with a forecast of the days until
    full and the approver is told the watermark was passed (in the mail sink).

    The demo hosts all report this machine's real disk, which does not fill in a demo's minutes:
    the host's past 13 days of free space are written as they would have been reported (falling
    at a steady rate towards what it reports now), and an explicit group holding only it gets a
    high mark just under the disk's real use. Its next inventory (asked by the caller) refits the
    forecast and crosses the mark, as a real filling disk would.
    """
    from datetime import timedelta

    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from models_admin.capacity import scheduled
    from models_admin.fleet import labels
    from models_admin.models import DiskSample, Host

    marker = var / ".disk-filling"
    host = Host.objects.filter(name=FILLING_HOST).first()
    if marker.exists() or host is None or not host.disk_total or host.disk_free is None:
        return None
    total, free = host.disk_total, host.disk_free
    used_pct = (total - free) * 100 // total
    # Full in about 10 days at this rate, or later when the real disk is too empty for 13
    # days of that fall to fit on it.
    full_in = max(10, -(-13 * free // max(total - free, 1)) + 1)
    per_day = free // full_in
    today = timezone.localdate()
    DiskSample.objects.bulk_create(
        [
            DiskSample(
                host=host,
                day=today - timedelta(days=back),
                disk_free=min(total, free + per_day * back),
                disk_total=total,
                at=timezone.now() - timedelta(days=back),
            )
            for back in range(13, 0, -1)
        ],
        ignore_conflicts=True,
    )
    approver = get_user_model().objects.get(username=ACCOUNTS[2][0])
    group = labels.save_group(
        FILLING_GROUP, user=approver, hosts=[FILLING_HOST], description="the demo's filling disk"
    )
    high = max(used_pct - 1, 1)
    scheduled.set_group_marks(group, high, max(high - 5, 0), approver)
    marker.write_text("the demo filled one disk\n")
    return (
        f"{FILLING_HOST}: its disk has been filling for 13 days; watermark of group {FILLING_GROUP}: {high} %"
    )


def ask_inventory(name: str) -> None:
    from django.contrib.auth import get_user_model

    from models_admin.approvals import workflow
    from models_admin.models import Host

    admin = get_user_model().objects.get(username=ACCOUNTS[0][0])
    workflow.ask_inventory(Host.objects.get(name=name), admin)


# ---------------------------------------------------------------- the runner


def start_processes(
    sup: Supervisor,
    var: Path,
    env: dict[str, str],
    port: int,
    dashboard_public_key: str,
    token_files: dict[str, Path],
) -> None:
    py = sys.executable
    sup.start(
        "mailsink",
        [
            py,
            str(ROOT / "scripts" / "mailsink.py"),
            "--port",
            env["OCRDASH_SMTP_PORT"],
            "--log",
            str(var / "mail.log"),
        ],
        env,
        var,
    )
    sup.start(
        "web",
        [py, str(ROOT / "manage.py"), "runserver", f"127.0.0.1:{port}", "--noreload"],
        env,
        var,
    )
    sup.start(
        "ingest",
        [
            *(py, "-m", "celery", "-A", "ocrdash", "worker", "-Q", "ocrdash.ingest,ocrdash.dashboard"),
            *("-c", "1", "-n", "ingest@demo", "--without-gossip", "--without-mingle", "-l", "INFO"),
        ],
        env,
        var,
    )
    sup.start(
        "notify",
        [
            *(py, "-m", "celery", "-A", "ocrdash", "worker", "-Q", "ocrdash.notify"),
            *("-c", "1", "-n", "notify@demo", "--without-gossip", "--without-mingle", "-l", "INFO"),
        ],
        env,
        var,
    )
    sup.start(
        "beat",
        [
            *(py, "-m", "celery", "-A", "ocrdash", "beat", "-l", "INFO"),
            *("-S", "django_celery_beat.schedulers:DatabaseScheduler", "--pidfile", str(var / "beat.pid")),
        ],
        env,
        var,
    )
    for host in HOSTS:
        base = var / "hosts" / host.name
        agent_env = dict(env)
        agent_env.update(
            {
                "OCRDASH_HOST_NAME": host.name,
                "OCRDASH_MODELS_DIR": str(base / "models"),
                "OCRDASH_OCR_RESOURCES_DIR": str(base / "aspose_data"),
                "OCRDASH_STATE_DIR": str(base / "state"),
                "OCRDASH_DASHBOARD_PUBLIC_KEY": dashboard_public_key,
                "OCRDASH_PROGRESS_SECONDS": DEMO_PROGRESS_SECONDS,
            }
        )
        if host.name in token_files:
            agent_env["OCRDASH_ENROLLMENT_TOKEN_FILE"] = str(token_files[host.name])
        if host.reported:
            agent_env["OCRDASH_HOST_LABELS"] = host.reported
        # The agent is a plain Python program on its host: it must not see the dashboard's
        # database or its private key (in production it has no such setting at all), nor a
        # token from the environment the demo was started in.
        for key in (
            "DATABASE_URL",
            "DJANGO_SETTINGS_MODULE",
            "DJANGO_DEBUG",
            "DJANGO_SECRET_KEY",
            "OCRDASH_SIGNING_KEY_FILE",
            "OCRDASH_ENROLLMENT_TOKEN",
        ):
            agent_env.pop(key, None)
        sup.start(f"agent-{host.name}", [py, "-m", "workers", "agent"], agent_env, base)
        if host.held_open and (base / "models" / host.held_open).exists():
            # A stand-in for the OCR engine: it memory-maps one model and keeps it, as llama.cpp does.
            sup.start(
                f"engine-{host.name}", [py, "-c", HOLD_MODEL, host.held_open], {**agent_env}, base / "models"
            )


def banner(port: int, var: Path, broker: str) -> str:
    width = max(len(u) for u, _, _ in ACCOUNTS)
    lines = [
        "",
        "ocrdash demo is running.",
        f"  Open      http://127.0.0.1:{port}/",
        "  Accounts  (demo passwords; every start resets them to these)",
    ]
    lines += [f"    {u:<{width}}  {p:<20} {r}" for u, p, r in ACCOUNTS]
    lines += [
        f"  Hosts     {', '.join(h.name for h in HOSTS)} (model folders in {var / 'hosts'})",
        f"  Broker    {broker}",
        f"  Logs      {var / 'logs'} (and <process>.pid: its process group)",
        f"  Freeze    kill -STOP -$(cat {var / 'logs' / f'agent-{FREEZE_EXAMPLE}.pid'}):"
        f" {FREEZE_EXAMPLE} shows offline on the fleet page within 90 s; kill -CONT brings it back",
        f"  Mail      every email the dashboard sends lands in {var / 'mail.log'}; a line for each below",
        "Press Ctrl-C to stop everything.",
        "",
    ]
    return "\n".join(lines)


class MailLog:
    """The new ``MAIL ...`` header lines of the mail sink's log since the last look."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0

    def new(self) -> list[str]:
        try:
            with self.path.open("rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        complete = data[: data.rfind(b"\n") + 1]
        self.offset += len(complete)
        lines = complete.decode("utf-8", errors="replace").splitlines()
        return [line[len("MAIL ") :] for line in lines if line.startswith("MAIL ")]


def announce_finished(follow: list[str]) -> None:
    """Print how the inventory last asked of each followed host ended, once it did."""
    if not follow:
        return
    from django.db import close_old_connections

    from models_admin.models import HostAction

    close_old_connections()
    for name in list(follow):
        action = HostAction.objects.filter(host__name=name).order_by("-asked_at").first()
        if action is not None and action.state in (HostAction.State.DONE, HostAction.State.FAILED):
            print(f"  {name}: inventory {action.get_state_display().lower()}: {action.result}", flush=True)
            follow.remove(name)


def watch(sup: Supervisor, mail_log: Path | MailLog, follow: list[str] | None = None) -> None:
    """Until a signal: print a line per email caught, restart an agent that died, and say
    when a followed host's inventory (the large model's first hashing) finished.

    Any other process dying ends the demo (the dashboard is not usable without it); an agent
    that keeps dying (more than AGENT_RESTARTS_PER_MINUTE times within a minute) too. Given a
    ``MailLog`` made before the processes started, it prints the mails sent while the demo was
    being prepared too (not those of an earlier run).
    """
    mails = mail_log if isinstance(mail_log, MailLog) else MailLog(mail_log)
    restarts: dict[str, list[float]] = {}
    while True:
        for line in mails.new():
            print(f"  mail {line}", flush=True)
        announce_finished(follow or [])
        dead = sup.dead()
        if dead is None:
            time.sleep(0.5)
            continue
        code = dead.proc.returncode
        if not dead.name.startswith("agent-"):
            raise DemoError(f"{dead.name} stopped (exit code {code}):\n{dead.tail()}")
        now = time.monotonic()
        recent = [t for t in restarts.get(dead.name, []) if now - t < 60] + [now]
        restarts[dead.name] = recent
        if len(recent) > AGENT_RESTARTS_PER_MINUTE:
            raise DemoError(f"{dead.name} keeps stopping (exit code {code}):\n{dead.tail()}")
        token = dead.env.get("OCRDASH_ENROLLMENT_TOKEN_FILE")
        if token and not Path(token).exists():
            dead.env.pop("OCRDASH_ENROLLMENT_TOKEN_FILE")  # enrolled since: its one-time token is gone
        print(f"  {dead.name} stopped (exit code {code}); starting it again", flush=True)
        sup.restart(dead)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    def handler(signum: int, frame: object) -> None:
        raise Stop(signal.Signals(signum).name)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def run(args: argparse.Namespace) -> int:
    var = Path(args.var_dir).resolve()
    if args.reset and var.exists():
        import shutil

        shutil.rmtree(var)
    var.mkdir(parents=True, exist_ok=True)
    for host in HOSTS:
        seed_host(var, host)
    env = base_env(var, args.port, free_port())
    follow: list[str] = []  # hosts whose latest asked inventory the runner reports on
    # SQLite gives its -wal and -shm files the database file's mode: 0600 for all three.
    private_file(var / "ocrdash.sqlite3")
    names = [h.name for h in HOSTS]
    sup = Supervisor(var / "logs")
    code = 0
    with stop_on_signals():
        try:
            print(f"Preparing the demo in {var}")
            setup_django(env)
            migrate()
            ensure_accounts()
            public_key, token_files = prepare_trust(var)
            print(
                "Starting the web server, the ingest and notification workers, the scheduler,"
                f" the mail sink and {len(HOSTS)} agents ..."
            )
            mails = MailLog(var / "mail.log")  # from here on: what this run's dashboard sent
            start_processes(sup, var, env, args.port, public_key, token_files)
            wait_for_hosts(sup, names, args.host_timeout)
            forget_used_tokens(token_files)
            wait_for_web(sup, args.port, args.host_timeout)
            accept_hosts(names)
            for host in HOSTS:
                if change_after_first_scan(var, host):
                    print(f"  {host.name}: {host.changes_after_first_scan} changed, asking for an inventory")
                    ask_inventory(host.name)
            if (proposed_on := propose_first_request(var)) is not None:
                print(f"  {proposed_on}: the operator proposed pruning its old_ models; approver may decide")
            if (large_on := add_large_model(var)) is not None:
                size = LARGE_MODEL[2] // 1024**2
                print(f"  {large_on}: a {size} MB model appeared; its page shows its first hashing")
                ask_inventory(large_on)
                follow.append(large_on)
            label_hosts()
            if (filling := fill_one_disk(var)) is not None:
                print(f"  {filling}, asking for an inventory")
                ask_inventory(FILLING_HOST)
            if (campaign := propose_first_campaign(var)) is not None:
                print(f"  campaign {campaign}: the operator proposed removing old_fr_ocr_v1.bin from prod")
            print(banner(args.port, var, env["CELERY_BROKER_URL"]), flush=True)
            watch(sup, mails, follow)
        except Stop as stop:
            print(f"\n{stop} received, stopping ...", flush=True)
        except DemoError as exc:
            print(f"\nerror: {exc}", file=sys.stderr, flush=True)
            code = 1
        finally:
            # Signals during shutdown must not interrupt it half-way.
            for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                signal.signal(s, signal.SIG_IGN)
            killed = sup.stop_all(grace=STOP_GRACE_SECONDS)
            if killed:
                print(f"(forced to kill: {', '.join(killed)})")
            print("All demo processes stopped.", flush=True)
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument("--var-dir", default=str(DEFAULT_VAR), help="where the demo keeps its state")
    parser.add_argument("--reset", action="store_true", help="forget the previous demo's state first")
    parser.add_argument(
        "--host-timeout", type=float, default=120, help="seconds to wait for the hosts' first reports"
    )
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
