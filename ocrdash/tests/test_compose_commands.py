"""docker-compose.yml's services, run as the local processes compose would start, end to end.

No container engine runs here, so this is the nearest thing to ``docker compose up``: compose
itself (``docker-compose config``) resolves the file with a ``.env`` made from
``.env.example``, and every service's own command and health check, as the resolved file
states them, run as processes with the environment compose would give the container (the
image's ``ENV``, the service's resolved ``environment``), pointed at the test PostgreSQL (a
database of its own, dropped at the end) and the test Redis. What differs from a container is
said where it is done: the volumes and secrets are folders and files of the test, web binds a
free port of 127.0.0.1 instead of 0.0.0.0:8000, and the PostgreSQL and Redis services are the
test servers, not the official images.

Then, over HTTP through gunicorn with DEBUG off (the TLS proxy's headers added by hand), as
the README's production section says: the public key and the tokens made with ``exec web``,
the two agents enroll, an approver accepts them, an inventory arrives, an operator proposes a
prune, the approver approves it, and the file ends in the host's quarantine on disk. Every
line the long-running processes log carries time, level, logger and request or task id.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest
import yaml
from django.conf import settings
from kombu import Connection

from .test_production_server import Browser

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
WAIT = 300.0  # a loaded 2-core machine: migrate, Aspose's runtime in two agents, seven processes
AGENTS = ("agent-ocr-1", "agent-ocr-2")
HOSTS = ("ocr-compose-1", "ocr-compose-2")
PASSWORDS = {"alice": "alice-operator-pass-8", "bob": "bob-approver-pass-9"}
# The queues the services use by default: emptied before and after, on the test Redis.
QUEUES = ("ocrdash.ingest", "ocrdash.dashboard", "ocrdash.notify", *(f"ocrdash.host.{h}" for h in HOSTS))
T = TypeVar("T")
LOG_LINE = re.compile(
    r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+"
    r" (-|request=[\w.-]+|task=[\w.-]+) \S"
)
# The image runs every service as its uid 10001; CI runs this test as root, where Celery warns at
# start, before any logging is set up, that a worker runs as root. Only then, only that warning.
ROOT_ONLY = (
    {"PYTHONWARNINGS": "ignore:You're running the worker with superuser privileges"}
    if os.geteuid() == 0
    else {}
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _image_env() -> dict[str, str]:
    """The Dockerfile's ENV instructions: every container starts with them."""
    text = re.sub(r"\\\n\s*(#[^\n]*\n\s*)*", " ", (ROOT / "Dockerfile").read_text())
    found: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            for pair in shlex.split(line[4:]):
                key, _, value = pair.partition("=")
                found[key] = value
    assert "DOTNET_SYSTEM_GLOBALIZATION_INVARIANT" in found, found
    return found


class Proxied(Browser):
    """Browser of test_production_server, behind the TLS proxy .env.example describes: it sets
    X-Forwarded-Proto and appends the client to X-Forwarded-For (DJANGO_TRUSTED_PROXY_COUNT=1)."""

    def request(self, method: str, path: str, body: str = "", proxied: bool = True, **headers: str):
        headers.setdefault("X-Forwarded-For", "203.0.113.7")
        return super().request(method, path, body, proxied, **headers)

    def post_form(self, page_path: str, action: str, **fields: str):
        """Submit a form of ``page_path`` to ``action`` with its CSRF token, as a browser would."""
        _, page = self.request("GET", page_path)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        assert token, f"no form on {page_path}:\n{page[:2000]}"
        origin = f"https://127.0.0.1:{self.port}"
        body = urllib.parse.urlencode({"csrfmiddlewaretoken": token.group(1), **fields}, doseq=True)
        return self.request("POST", action, body, Origin=origin, Referer=f"{origin}{page_path}")


@dataclass
class Project:
    """The compose project of one run: its folder, its resolved file, its running services."""

    folder: Path
    port: int
    logs: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    resolved_secrets: dict[str, str] = field(default_factory=dict)
    last_check: str = ""

    # ------------------------------------------------------------ compose's view of the file
    def resolved(self) -> dict[str, Any]:
        done = subprocess.run(
            [
                "docker-compose",
                "--project-directory",
                str(self.folder),
                "-f",
                str(self.folder / "docker-compose.yml"),
                "config",
            ],
            cwd=self.folder,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0 and not done.stderr.strip(), done.stderr
        return yaml.safe_load(done.stdout)

    def set_env(self, **values: str) -> None:
        """Change lines of the project's .env, as the README tells the operator to."""
        env_file = self.folder / ".env"
        lines = env_file.read_text().splitlines()
        for key, value in values.items():
            lines = [line for line in lines if not line.startswith(f"{key}=")] + [f"{key}={value}"]
        env_file.write_text("\n".join(lines) + "\n")

    def local_path(self, service: dict[str, Any], path: str) -> str:
        """A path inside the container as a path of this machine: volumes and secrets."""
        mounts = {}
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2]
            mounts[target] = self.folder / "volumes" / source
        for secret in service.get("secrets", []):
            mounts[f"/run/secrets/{secret['target']}"] = Path(self.resolved_secrets[secret["source"]])
        for target, local in mounts.items():
            if path == target or path.startswith(target + "/"):
                return str(local) + path[len(target) :]
        return path

    def environment(self, service: dict[str, Any]) -> dict[str, str]:
        """What a container of ``service`` starts with: the image's ENV, then the service's own."""
        env = {
            **ROOT_ONLY,
            "PATH": f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.folder / "home"),
            "HOSTNAME": socket.gethostname(),  # docker sets it; the ingest health check names it
            "LANG": "C.UTF-8",
            **_image_env(),
        }
        for key, value in (service.get("environment") or {}).items():
            env[key] = self.local_path(service, str(value).replace("$$", "$"))
        return env

    def argv(self, args: list[str]) -> list[str]:
        """The command as compose hands it to the engine (``$$`` unescaped to ``$``, as compose
        does); only web's address is this run's free port."""
        text = [str(a).replace("$$", "$") for a in args]
        joined = " ".join(text)
        if "0.0.0.0:8000" in joined or "127.0.0.1:8000" in joined:
            text = [a.replace("0.0.0.0:8000", f"127.0.0.1:{self.port}") for a in text]
            text = [a.replace("127.0.0.1:8000", f"127.0.0.1:{self.port}") for a in text]
        return text

    # ------------------------------------------------------------ processes
    def start(self, name: str, service: dict[str, Any]) -> None:
        log = self.logs / f"{name}.log"
        with log.open("ab") as out:
            self.processes[name] = subprocess.Popen(
                self.argv(service["command"]),
                cwd=ROOT,  # the image's WORKDIR holds the project
                env=self.environment(service),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def run(self, service: dict[str, Any], *args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
        """``docker compose exec <service> args...``: a command in the service's environment."""
        done = subprocess.run(
            self.argv(list(args)),
            cwd=ROOT,
            env={**self.environment(service), **extra_env},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stderr[-3000:]}\n{self.tails()}"
        return done

    def healthy(self, service: dict[str, Any]) -> bool:
        """Run the service's own health check once, as compose would (its output kept for a
        failure's message)."""
        test = self.argv(service["healthcheck"]["test"])
        argv = ["sh", "-c", test[1]] if test[0] == "CMD-SHELL" else test[1:]
        try:
            done = subprocess.run(
                argv, cwd=ROOT, env=self.environment(service), capture_output=True, text=True, timeout=120
            )
        except subprocess.TimeoutExpired:
            self.last_check = f"{argv}: no answer within 120 s"
            return False
        self.last_check = f"{argv} exited {done.returncode}:\n{(done.stdout + done.stderr)[-2000:]}"
        return done.returncode == 0

    def wait_for(self, what: str, check: Callable[[], T | None], timeout: float = WAIT) -> T:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    pytest.fail(
                        f"{name} exited ({process.returncode}) while waiting for {what}\n{self.tails()}"
                    )
            result = check()
            if result:
                return result
            time.sleep(1)
        pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}\n{self.last_check}\n{self.tails()}")

    def tails(self) -> str:
        return "\n".join(
            f"--- {log.name}\n{log.read_text(errors='replace')[-4000:]}"
            for log in sorted(self.logs.glob("*.log"))
        )

    def stop_all(self) -> None:
        for process in self.processes.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


def _server_url(database: str) -> str:
    """The test PostgreSQL's address, with another database name."""
    db = settings.DATABASES["default"]
    auth = (db["USER"] or "postgres") + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{database}"


def _admin_sql(sql: str) -> None:
    with psycopg.connect(_server_url("postgres"), autocommit=True) as conn:
        conn.execute(sql)


def _empty_queues(broker: str) -> None:
    with Connection(broker) as conn:
        for queue in QUEUES:
            conn.SimpleQueue(queue).queue.delete()


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose is not installed (.ci/run installs Debian's package)")
    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        pytest.skip("the services need the test PostgreSQL")
    folder = tmp_path / "project"
    (folder / "secrets").mkdir(parents=True)
    (folder / "home").mkdir()
    logs = tmp_path / "logs"
    logs.mkdir()
    shutil.copyfile(ROOT / "docker-compose.yml", folder / "docker-compose.yml")
    shutil.copyfile(ROOT / ".env.example", folder / ".env")  # the operator's first step
    database = f"ocrdash_compose_{uuid.uuid4().hex[:10]}"
    broker = str(settings.CELERY_BROKER_URL)
    run = Project(folder, _free_port(), logs)
    # Where the compose project's servers would be: the test ones. A real key for the placeholder.
    run.set_env(
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        DATABASE_URL=_server_url(database),
        CELERY_BROKER_URL=broker,
        OCRDASH_BROKER_URL=broker,
        OCRDASH_CACHE_URL=broker,
        # No mail server here: a closed local port, so a send fails at once (and is recorded).
        OCRDASH_SMTP_HOST="127.0.0.1",
        OCRDASH_SMTP_PORT=str(_free_port()),
        OCRDASH_SMTP_STARTTLS="false",
        # The image collects into its own /app/staticfiles; here not into the checkout.
        DJANGO_STATIC_ROOT=str(tmp_path / "staticfiles"),
    )
    for host in HOSTS:
        token = folder / "secrets" / f"{host}.token"
        token.touch(mode=0o600)
    _admin_sql(f'CREATE DATABASE "{database}"')
    _empty_queues(broker)
    try:
        yield run
    finally:
        run.stop_all()
        _empty_queues(broker)
        _admin_sql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def _prepare_volumes(run: Project, config: dict[str, Any]) -> None:
    """Named volumes start as the image's folders: owned by its user, /keys and /state 0700."""
    for name in config.get("volumes", {}):
        (run.folder / "volumes" / name).mkdir(parents=True, exist_ok=True, mode=0o700)
    run.resolved_secrets = {name: spec["file"] for name, spec in config.get("secrets", {}).items()}


def _seed_models(folder: Path) -> None:
    (folder / "fr_ocr_v2.bin").write_bytes(os.urandom(4096))
    (folder / "old_fr_ocr_v1.bin").write_bytes(os.urandom(2048))


def test_the_compose_services_commands_run_the_whole_loop(project: Project) -> None:
    started = time.monotonic()
    config = project.resolved()
    services = config["services"]
    _prepare_volumes(project, config)
    for name in AGENTS:
        _seed_models(
            Path(project.local_path(services[name], services[name]["environment"]["OCRDASH_MODELS_DIR"]))
        )

    # web: migrate, collectstatic, gunicorn; healthy when its own health check passes.
    project.start("web", services["web"])
    project.wait_for("web's health check", lambda: project.healthy(services["web"]))
    web_ready = time.monotonic() - started

    # The README's steps: the public key into .env, a token per agent, two users.
    key = project.run(services["web"], "python", "manage.py", "signing_key").stdout.strip()
    assert re.fullmatch(r"ed25519:\S+", key), key
    project.set_env(OCRDASH_DASHBOARD_PUBLIC_KEY=key)
    for host in HOSTS:
        token = project.run(services["web"], "python", "manage.py", "create_enrollment_token", "--host", host)
        (project.folder / "secrets" / f"{host}.token").write_text(token.stdout)
    for user, role in (("alice", "operator"), ("bob", "approver")):
        project.run(
            services["web"],
            *("python", "manage.py", "create_user", user, "--role", role, "--password-env", "PW"),
            PW=PASSWORDS[user],
        )

    # `docker compose up -d` again: the rest, with the key now in their environment.
    config = project.resolved()
    services = config["services"]
    for agent in AGENTS:
        assert services[agent]["environment"]["OCRDASH_DASHBOARD_PUBLIC_KEY"] == key
    for name in ("ingest", "notify", "beat", *AGENTS):
        project.start(name, services[name])
    for name in ("ingest", "notify", *AGENTS):
        project.wait_for(f"{name}'s health check", functools.partial(project.healthy, services[name]))

    bob = Proxied(project.port)
    response, _ = bob.log_in("bob", PASSWORDS["bob"])
    assert response.status == 302, "bob could not log in"

    def pending(page: str) -> bool:
        return "Accept host" in bob.request("GET", page)[1]

    for host in HOSTS:
        # The agent enrolled with its token: the host waits for an approver, who accepts it.
        project.wait_for(f"{host} enrolled and pending", functools.partial(pending, f"/hosts/{host}/"))
        accepted, _ = bob.post_form(f"/hosts/{host}/", f"/hosts/{host}/accept/")
        assert accepted.status == 302, accepted.status
        assert "Accept host" not in bob.request("GET", f"/hosts/{host}/")[1]

    alice = Proxied(project.port)
    assert alice.log_in("alice", PASSWORDS["alice"])[0].status == 302, "alice could not log in"
    host = HOSTS[0]
    asked, _ = alice.post_form(f"/hosts/{host}/", f"/hosts/{host}/inventory/")
    assert asked.status == 302

    def old_model_box() -> str | None:
        page = alice.request("GET", f"/hosts/{host}/")[1]
        found = re.search(r'name="files" value="(\d+)" data-key="[^"]*old_fr_ocr_v1\.bin"', page)
        return found.group(1) if found else None

    file_id = project.wait_for(f"{host}'s inventory on its page", old_model_box)
    proposed, _ = alice.post_form(
        f"/hosts/{host}/", f"/hosts/{host}/propose/", files=file_id, reason="compose end to end"
    )
    assert proposed.status == 302, proposed.status
    request_path = urllib.parse.urlsplit(proposed.getheader("Location")).path
    assert re.fullmatch(r"/requests/[0-9a-f-]{36}/", request_path), request_path
    # The proposer cannot approve it herself (two-person rule); bob can.
    approved, _ = bob.post_form(request_path, f"{request_path}approve/")
    assert approved.status == 302

    models = Path(
        project.local_path(services[AGENTS[0]], services[AGENTS[0]]["environment"]["OCRDASH_MODELS_DIR"])
    )
    quarantined = project.wait_for(
        "old_fr_ocr_v1.bin moved to the quarantine on disk",
        lambda: (
            next((models / ".ocrdash-quarantine").rglob("old_fr_ocr_v1.bin"), None)
            if (models / ".ocrdash-quarantine").is_dir()
            else None
        ),
    )
    assert not (models / "old_fr_ocr_v1.bin").exists() and (models / "fr_ocr_v2.bin").exists()
    assert quarantined.parent.name == uuid.UUID(request_path.strip("/").split("/")[1]).hex, quarantined
    project.wait_for(
        "the request shown completed",
        lambda: re.search(r">\s*Completed\s*<", bob.request("GET", request_path)[1]),
    )

    # Every line of the long-running services: time, level, logger, request or task id. Web's
    # first lines are migrate's and collectstatic's command output, before gunicorn starts.
    for name in ("web", "ingest", "notify", "beat", *AGENTS):
        lines = (project.logs / f"{name}.log").read_text(errors="replace").splitlines()
        if name == "web":
            first = next(i for i, line in enumerate(lines) if "gunicorn.error - Starting gunicorn" in line)
            assert any("static files copied" in line for line in lines[:first]), lines[:first]
            lines = lines[first:]
        stray = [line for line in lines if not LOG_LINE.match(line)]
        assert lines and not stray, f"{name}: lines not in the log format:\n" + "\n".join(stray[:20])
    web = (project.logs / "web.log").read_text()
    assert "No directory at" not in web, "whitenoise serves the collected files"
    assert re.search(
        r" INFO gunicorn\.access request=\w+ 127\.0\.0\.1 \"POST /requests/[0-9a-f-]+/approve/", web
    )
    print(
        f"compose services: web healthy after {web_ready:.0f}s, whole loop {time.monotonic() - started:.0f}s"
    )
