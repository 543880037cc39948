"""docker-compose.yml must be runnable as written, though no Docker engine runs the tests.

Each check here stands for a way the file rots silently: a command renamed in the code, a
variable the file uses but .env.example never defines, a service started before the one it
needs is healthy, an agent handed the database's password.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import json
import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import tomllib
import types
import warnings
from pathlib import Path
from typing import Any

import pytest
import yaml

from ocrdash.celery import DASHBOARD_QUEUE, NOTIFY_QUEUE
from workers.config import load_config
from workers.schema import HOST_NAME_PATTERN, INGEST_QUEUE
from workers.signing.enrollment import new_enrollment_token

ROOT = Path(__file__).resolve().parents[2]
AGENTS = ("agent-ocr-1", "agent-ocr-2")
DASHBOARD = ("web", "ingest", "notify", "beat")
# What an OCR host must never be given: it talks to the broker only, and the dashboard's
# private key would let it sign orders for every host.
DATABASE_SECRETS = re.compile(
    r"^(DATABASE_URL|POSTGRES_\w+|DJANGO_SECRET_KEY|PG\w+|OCRDASH_SIGNING_KEY_FILE)$"
)
INTERPOLATION = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:[:?-][^}]*)?\}|(?<!\$)\$([A-Za-z_]\w*)")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    values = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f".env.example: not KEY=VALUE: {line!r}"
            values[key.strip()] = value.strip()
    return values


def _argv(command: str | list[str]) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else [str(a) for a in command]


def _shell_steps(script: str) -> list[list[str]]:
    steps = []
    for part in re.split(r"&&|;|\|\|", script):
        argv = shlex.split(part)
        if argv and argv[0] == "exec":
            argv = argv[1:]
        if argv:
            steps.append(argv)
    return steps


def _check_python_code(code: str) -> None:
    """Everything a ``python -c`` snippet imports must exist under that name."""
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                assert importlib.util.find_spec(alias.name), f"python -c imports missing {alias.name}"
        elif isinstance(node, ast.ImportFrom):
            module = importlib.import_module(node.module or "")
            for alias in node.names:
                assert hasattr(module, alias.name), f"{node.module} has no {alias.name}"


def check_gunicorn_config(module: Any) -> None:
    """Every public name of a gunicorn settings module is one of gunicorn's settings (a typo
    would be ignored silently), and its logging config loads."""
    import logging.config

    from gunicorn.config import Config

    known = set(Config().settings)
    names = {
        n
        for n, v in vars(module).items()
        if not n.startswith("_") and n.islower() and not callable(v) and not isinstance(v, types.ModuleType)
    }
    names -= {"annotations"}
    assert names <= known, f"{module.__name__}: not gunicorn settings: {sorted(names - known)}"
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        logging.config.dictConfig(module.logconfig_dict)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def check_command(argv: list[str]) -> None:
    """Fail unless what ``argv`` starts exists in this project (or is a known program)."""
    from django.core.management import get_commands

    program = os.path.basename(argv[0])
    if program in ("sh", "bash"):
        assert argv[1] == "-c", argv
        for step in _shell_steps(argv[2]):
            check_command(step)
    elif program.startswith("python"):
        if argv[1] == "-m":
            spec = importlib.util.find_spec(argv[2])
            assert spec is not None, f"python -m {argv[2]}: no such module"
            if spec.submodule_search_locations:  # a package runs its __main__
                assert importlib.util.find_spec(f"{argv[2]}.__main__"), f"{argv[2]} has no __main__"
        elif argv[1] == "-c":
            _check_python_code(argv[2])
        elif argv[1] == "manage.py":
            assert (ROOT / "manage.py").exists()
            assert argv[2] in get_commands(), f"manage.py has no command {argv[2]!r}"
        else:
            pytest.fail(f"unexpected python invocation {argv}")
    elif program == "celery":
        app_name = argv[argv.index("-A") + 1]
        module = importlib.import_module(f"{app_name}.celery")
        assert module.app.main == app_name
        if "-Q" in argv:
            queues = set(argv[argv.index("-Q") + 1].split(","))
            # The ingest worker takes ingest and the sweeps; the notify worker notifications only.
            assert queues in ({INGEST_QUEUE, DASHBOARD_QUEUE}, {NOTIFY_QUEUE}), queues
        if "-S" in argv:
            module_name, _, attr = argv[argv.index("-S") + 1].partition(":")
            assert hasattr(importlib.import_module(module_name), attr), argv
    elif program == "gunicorn":
        argv = list(argv)
        if argv[1] == "-c":
            # Its settings module (ocrdash/gunicorn_conf.py): importable, and every name gunicorn knows.
            config = argv[2].removeprefix("python:")
            assert argv[2].startswith("python:"), f"gunicorn -c {argv[2]}: expected python:<module>"
            check_gunicorn_config(importlib.import_module(config))
            del argv[1:3]
        module_name, _, attr = argv[1].partition(":")
        with warnings.catch_warnings():
            # whitenoise notes the missing staticfiles/ (collectstatic runs in the container).
            warnings.filterwarnings("ignore", message="No directory at", category=UserWarning)
            module = importlib.import_module(module_name)
        assert callable(getattr(module, attr or "application"))
    elif program in ("pg_isready", "redis-cli", "redis-server"):
        pass  # shipped in the official postgres / redis images
    else:
        pytest.fail(f"unknown program in docker-compose.yml: {argv}")


def test_it_has_every_service(compose):
    assert set(compose["services"]) == {"postgres", "redis", *DASHBOARD, *AGENTS}
    assert {"pgdata"} <= set(compose["volumes"])


def test_every_command_exists_in_the_project(compose):
    for name, service in compose["services"].items():
        if "command" in service:
            check_command(_argv(service["command"]))
        test = service.get("healthcheck", {}).get("test")
        if test:
            argv = _argv(test)
            if argv[0] == "CMD-SHELL":
                for step in _shell_steps(argv[1]):
                    check_command(step)
            else:
                assert argv[0] == "CMD", f"{name}: healthcheck must start with CMD or CMD-SHELL"
                check_command(argv[1:])


def test_it_refuses_a_command_that_does_not_exist():
    # The checker itself must be able to fail, or the test above proves nothing.
    for argv in (
        ["python", "-m", "workers.no_such_module"],
        ["python", "manage.py", "no_such_command"],
        ["gunicorn", "ocrdash.no_wsgi:application"],
        ["gunicorn", "-c", "python:ocrdash.no_such_conf", "ocrdash.wsgi:application"],
        ["sh", "-c", "python manage.py migrate && python manage.py nope"],
    ):
        with pytest.raises((AssertionError, ImportError)):
            check_command(argv)


def test_web_migrates_and_collects_static_before_serving(compose):
    steps = _shell_steps(_argv(compose["services"]["web"]["command"])[2])
    names = [" ".join(s[:3]) for s in steps]
    assert names[:2] == ["python manage.py migrate", "python manage.py collectstatic"]
    assert steps[-1][0] == "gunicorn"


def test_it_uses_only_variables_defined_in_env_example(compose, env_example):
    text = (ROOT / "docker-compose.yml").read_text()
    used = {a or b for a, b in INTERPOLATION.findall(text)}
    assert used, "the agents are expected to take the broker's address from .env"
    assert used <= set(env_example), f"not in .env.example: {sorted(used - set(env_example))}"
    for name, service in compose["services"].items():
        if "env_file" in service:
            # .env is the operator's copy of .env.example (see the file's header).
            assert service["env_file"] == ".env", name


def test_dependencies_wait_for_health(compose):
    services = compose["services"]
    for name, service in services.items():
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on needs conditions, not a list"
        for other, spec in depends.items():
            assert spec["condition"] in ("service_healthy", "service_completed_successfully"), (name, other)
            if spec["condition"] == "service_healthy":
                assert "healthcheck" in services[other], f"{name} waits for {other}, which has no healthcheck"
    for name in DASHBOARD:
        assert set(services[name]["depends_on"]) >= {"redis"}
    for name in ("ingest", "notify", "beat"):
        # They need the schema that web's migrate creates.
        assert services[name]["depends_on"]["web"]["condition"] == "service_healthy"
    for name in ("postgres", "redis", "web", "ingest", "notify", *AGENTS):
        assert "healthcheck" in services[name], name


def test_agents_get_no_database_credentials(compose, env_example):
    hosts = set()
    for name in AGENTS:
        agent = compose["services"][name]
        assert "env_file" not in agent, f"{name} would receive every secret of .env"
        environment = agent["environment"]
        leaked = [k for k in environment if DATABASE_SECRETS.match(k)]
        assert not leaked, f"{name} gets {leaked}"
        assert "postgres" not in agent.get("depends_on", {})
        assert not any("postgres" in str(v) for v in environment.values())
        hosts.add(environment["OCRDASH_HOST_NAME"])
        assert re.fullmatch(HOST_NAME_PATTERN, environment["OCRDASH_HOST_NAME"])
        mounts = {v.split(":")[1] for v in agent["volumes"]}
        assert {environment["OCRDASH_MODELS_DIR"], environment["OCRDASH_STATE_DIR"]} <= mounts
        for volume in agent["volumes"]:
            assert volume.split(":")[0] in compose["volumes"], volume
    assert len(hosts) == len(AGENTS), "two agents with one name would share a queue"


def test_agent_settings_from_env_example_load(compose, env_example, tmp_path):
    for name in AGENTS:
        environment = {
            k: re.sub(r"\$\{(\w+)\}", lambda m: env_example[m.group(1)], str(v))
            for k, v in compose["services"][name]["environment"].items()
        }
        # The token file is a compose secret: stand in for it with one holding a real token.
        token_file = tmp_path / f"{name}.token"
        token_file.write_text(new_enrollment_token() + "\n")
        environment["OCRDASH_ENROLLMENT_TOKEN_FILE"] = str(token_file)
        config = load_config(environment)
        assert config.enrollment_token == token_file.read_text().strip()
        assert config.broker_url == env_example["CELERY_BROKER_URL"], (
            "agents and dashboard must share a broker"
        )
        assert str(config.models_dir) == environment["OCRDASH_MODELS_DIR"]


def test_dashboard_settings_from_env_example_pass_djangos_deploy_checks(env_example):
    # A fresh process: these settings must load with DEBUG off, as the containers run them, and
    # pass every deploy check, warnings included, once the placeholder key is replaced.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "OCRDASH_", "CELERY_"))}
    env.update(env_example)
    env["DJANGO_SECRET_KEY"] = secrets.token_urlsafe(50)
    env["DJANGO_SETTINGS_MODULE"] = "ocrdash.settings"
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


def test_dockerfile_builds_one_image_for_every_service():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim$", dockerfile, re.M)
    assert "pip install --no-deps -e .\n" in dockerfile
    assert "DOTNET_SYSTEM_GLOBALIZATION_INVARIANT=1" in dockerfile
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".uv", ".env", "var/"} <= set(ignored)


def test_agents_get_neither_the_dashboards_secrets_nor_its_key_volume(compose):
    keys_volume = {v.split(":")[0] for v in compose["services"]["web"]["volumes"]}
    for name in AGENTS:
        agent = compose["services"][name]
        environment = agent["environment"]
        for secret in ("DATABASE_URL", "DJANGO_SECRET_KEY", "OCRDASH_SIGNING_KEY_FILE"):
            assert secret not in environment, f"{name} gets {secret}"
        assert not keys_volume & {v.split(":")[0] for v in agent["volumes"]}, f"{name} mounts the signing key"
        assert "OCRDASH_ENROLLMENT_TOKEN" not in environment, "a token in the environment shows in ps"


def test_dashboard_processes_share_one_signing_key(compose):
    services = compose["services"]
    paths = {services[name]["environment"]["OCRDASH_SIGNING_KEY_FILE"] for name in DASHBOARD}
    assert len(paths) == 1, paths
    folder = str(Path(paths.pop()).parent)
    volumes = set()
    for name in DASHBOARD:
        mounts = {v.split(":")[1]: v.split(":")[0] for v in services[name]["volumes"]}  # target: source
        assert folder in mounts, f"{name} does not mount {folder}"
        volumes.add(mounts[folder])
    assert len(volumes) == 1 and volumes <= set(compose["volumes"]), "one named volume holds the key"


def test_agents_pin_the_dashboard_key_and_read_their_token_from_a_secret(compose, env_example):
    for name in AGENTS:
        agent = compose["services"][name]
        environment = agent["environment"]
        assert environment["OCRDASH_DASHBOARD_PUBLIC_KEY"] == "${OCRDASH_DASHBOARD_PUBLIC_KEY}"
        assert "OCRDASH_DASHBOARD_PUBLIC_KEY" in env_example
        targets = {s["target"]: s["source"] for s in agent["secrets"]}
        token_path = Path(environment["OCRDASH_ENROLLMENT_TOKEN_FILE"])
        assert token_path.parent == Path("/run/secrets") and token_path.name in targets
        assert targets[token_path.name] in compose["secrets"]
    sources = {compose["services"][n]["secrets"][0]["source"] for n in AGENTS}
    assert len(sources) == len(AGENTS), "each host needs its own token"


def test_agent_health_check_needs_no_remote_control(compose):
    # Agents run with remote control off: a ping or inspect would never be answered.
    for name in AGENTS:
        test = " ".join(_argv(compose["services"][name]["healthcheck"]["test"]))
        assert not re.search(r"\.control\.|inspect|\bping\b", test), test


# ---------------------------------------------------------------- compose's own parser
CHECK_SCRIPT = ROOT / "scripts" / "check_compose.py"


def _check_compose(compose_file: Path) -> subprocess.CompletedProcess[str]:
    """scripts/check_compose.py, as .ci/run runs it (docker-compose config -q, any warning fails)."""
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose is not installed (.ci/run installs Debian's package)")
    return subprocess.run(
        [sys.executable, str(CHECK_SCRIPT), "--file", str(compose_file)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_docker_compose_itself_accepts_the_file():
    done = _check_compose(ROOT / "docker-compose.yml")
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("old", "new", "said"),
    [
        # A key compose does not know (a typo of a real one).
        ("    restart: unless-stopped\n", "    restrat: unless-stopped\n", "restrat"),
        # A variable .env.example does not define: compose would only warn and pass "".
        ("${OCRDASH_MAX_ATTEMPTS}", "${OCRDASH_MAX_ATEMPTS}", "OCRDASH_MAX_ATEMPTS"),
        # A dependency on a service that is not there (a renamed one).
        (
            "      web:\n        condition: service_healthy",
            "      webb:\n        condition: service_healthy",
            "webb",
        ),
    ],
)
def test_the_compose_check_fails_on_an_invalid_file(tmp_path, old, new, said):
    text = (ROOT / "docker-compose.yml").read_text()
    assert old in text
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(text.replace(old, new, 1))
    done = _check_compose(broken)
    assert done.returncode == 1 and said in done.stderr, (done.returncode, done.stderr)


def test_ci_installs_docker_compose_and_validates_the_file_before_the_suite():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "command -v docker-compose >/dev/null || missing+=(docker-compose)" in ci
    assert ci.index("python3 scripts/check_compose.py") < ci.index("make test")


# ------------------------------------------ compose, .env.example, the settings and the image agree
def _strings_in(*modules: str) -> set[str]:
    """Every string literal of these source files: the variable names they can read."""
    found = set()
    for module in modules:
        tree = ast.parse((ROOT / module).read_text())
        found |= {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    return found


DASHBOARD_READS = ("ocrdash/settings.py", "workers/logs.py")
AGENT_READS = ("workers/config.py", "workers/logs.py")


def test_every_variable_compose_names_is_read_by_the_process_it_is_given_to(compose, env_example):
    dashboard, agent = _strings_in(*DASHBOARD_READS), _strings_in(*AGENT_READS)
    services = compose["services"]
    for name in DASHBOARD:
        unread = set(services[name]["environment"]) - dashboard
        assert not unread, f"{name} is given {sorted(unread)}, which ocrdash/settings.py never reads"
    for name in AGENTS:
        unread = set(services[name]["environment"]) - agent
        assert not unread, f"{name} is given {sorted(unread)}, which workers/config.py never reads"
    # .env.example reaches web, ingest, notify and beat whole (env_file), and the agents and the
    # postgres image through the ${...} they name: each line must mean something to one of them.
    passed_to_agents = {
        m.group(1)
        for name in AGENTS
        for v in services[name]["environment"].values()
        for m in [INTERPOLATION.search(str(v))]
        if m
    }
    for variable in env_example:
        read = (
            variable in dashboard
            or (variable in passed_to_agents and variable in agent)
            or (variable.startswith("POSTGRES_") and services["postgres"].get("env_file") == ".env")
        )
        assert read, f".env.example sets {variable}, which no service reads"


def test_the_variable_check_catches_a_typo():
    assert "DJANGO_SECURE_HSTS_SECONDS" in _strings_in(*DASHBOARD_READS)
    assert "DJANGO_SECURE_HSTS_SECOND" not in _strings_in(*DASHBOARD_READS)
    assert "OCRDASH_MODELS_DIR" in _strings_in(*AGENT_READS) and "DATABASE_URL" not in _strings_in(
        *AGENT_READS
    )


def _dockerfile() -> str:
    # One logical line per instruction: the continuation lines joined.
    return re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())


def test_the_image_prepares_every_folder_compose_mounts(compose):
    dockerfile = _dockerfile()
    uid = re.search(r"useradd .*--uid (\d+)", dockerfile).group(1)
    made = set(re.search(r"mkdir -p ([^&]+)", dockerfile).group(1).split())
    owned = set(
        re.search(rf"chown -R {uid}:{uid} ([^&]+)|chown -R ocrdash:ocrdash ([^&]+)", dockerfile)
        .group(2)
        .split()
    )
    private = set(re.search(r"chmod 0700 ([^&\n]+)", dockerfile).group(1).split())
    assert re.search(r"^USER ocrdash$", dockerfile, re.M)
    for name, service in compose["services"].items():
        if service.get("image") != "ocrdash:latest":
            continue
        # Named volumes copy the image folder's owner and mode on first use.
        for volume in service.get("volumes", []):
            target = volume.split(":")[1]
            assert target in made and target in owned, (
                f"{name} mounts {target}, which the image does not prepare"
            )
        if "user" in service:
            assert service["user"] == f"{uid}:{uid}", (
                f"{name} runs as {service['user']}, the image's user is {uid}"
            )
    # The dashboard's signing key and the agents' keys live in folders only their owner opens.
    key_folder = str(Path(compose["x-dashboard"]["environment"]["OCRDASH_SIGNING_KEY_FILE"]).parent)
    state_folders = {compose["services"][n]["environment"]["OCRDASH_STATE_DIR"] for n in AGENTS}
    assert {key_folder, *state_folders} <= private


def test_the_image_prepares_the_static_folder_the_settings_collect_into(settings):
    # settings.STATIC_ROOT's default is beside manage.py, which is WORKDIR in the image.
    assert "DJANGO_STATIC_ROOT" not in os.environ
    dockerfile = _dockerfile()
    workdir = Path(re.search(r"^WORKDIR (\S+)$", dockerfile, re.M).group(1))
    static_root = str(workdir / Path(settings.STATIC_ROOT).relative_to(settings.BASE_DIR))
    assert re.search(r"^COPY \. \.$", dockerfile, re.M)
    assert static_root in re.search(r"mkdir -p ([^&]+)", dockerfile).group(1).split()
    assert static_root in re.search(r"chown -R ocrdash:ocrdash ([^&]+)", dockerfile).group(1).split()


def test_the_images_programs_and_port_are_the_ones_compose_uses(compose):
    dockerfile = _dockerfile()
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", dockerfile, re.M).group(1))
    check_command(cmd)
    # gunicorn and celery come from the locked dependencies the image installs (--extra dashboard).
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "uv export --frozen --extra dashboard" in dockerfile
    names = {
        re.split(r"[<>=~!\[ ;]", d, maxsplit=1)[0].lower()
        for d in [*project["dependencies"], *project["optional-dependencies"]["dashboard"]]
    }
    assert {"gunicorn", "celery"} <= names
    port = re.search(r"^EXPOSE (\d+)$", dockerfile, re.M).group(1)
    web = compose["services"]["web"]
    assert f"--bind 0.0.0.0:{port}" in " ".join(_argv(web["command"]))
    assert web["ports"] == [f"{port}:{port}"]
    assert f"http://127.0.0.1:{port}/healthz/web" in " ".join(_argv(web["healthcheck"]["test"]))
