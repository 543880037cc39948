"""The dashboard starts the way production starts it: DEBUG off, static files collected.

With DEBUG off the static files go through whitenoise's manifest storage, which rewrites every
``url(...)`` and ``sourceMappingURL`` in the stylesheets and refuses one that names a missing
file, so a vendored asset that points at something not vendored stops the web service at
``collectstatic``, before gunicorn ever starts.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def production_env(**extra: str) -> dict[str, str]:
    """The environment of a production process: DEBUG off, a real key, nothing from the tests."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "OCRDASH_TEST_"))}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "ocrdash.settings",
            "DJANGO_DEBUG": "false",
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        }
    )
    env.update(extra)
    return env


def manage(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_collectstatic_with_debug_off_fills_a_fresh_folder(tmp_path):
    target = tmp_path / "static"
    done = manage("collectstatic", "--noinput", env=production_env(DJANGO_STATIC_ROOT=str(target)))
    assert done.returncode == 0, done.stderr[-3000:]
    manifest = json.loads((target / "staticfiles.json").read_text())["paths"]
    # Every stylesheet and script the pages link, under a hashed name whitenoise can serve forever.
    for name in (
        "models_admin/vendor/bootstrap/bootstrap.min.css",
        "models_admin/vendor/bootstrap/bootstrap.min.css.map",
        "models_admin/vendor/chartjs/chart.umd.min.js",
        "models_admin/ocrdash.css",
        "admin/css/base.css",
    ):
        assert name in manifest, name
        assert (target / manifest[name]).is_file(), manifest[name]
    css = (target / manifest["models_admin/vendor/bootstrap/bootstrap.min.css"]).read_text()
    hashed_map = Path(manifest["models_admin/vendor/bootstrap/bootstrap.min.css.map"]).name
    assert f"sourceMappingURL={hashed_map}" in css


def _env_example_key() -> str:
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.startswith("DJANGO_SECRET_KEY="):
            return line.partition("=")[2].strip()
    raise AssertionError(".env.example sets no DJANGO_SECRET_KEY")


def _settings(env: dict[str, str], expression: str) -> subprocess.CompletedProcess[str]:
    code = f"import django; django.setup(); from django.conf import settings; print({expression})"
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_debug_is_off_unless_asked_for():
    env = production_env()
    del env["DJANGO_DEBUG"]
    done = _settings(env, "settings.DEBUG, settings.SECURE_SSL_REDIRECT, settings.SESSION_COOKIE_SECURE")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["False", "True", "True"]


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        (None, "is not set"),
        ("", "is not set"),
        ("placeholder", "placeholder"),
        ("insecure-development-key-do-not-use-in-production", "placeholder"),
        ("short-but-random-9f8e7d6c", "too short"),
        ("a" * 60, "too short or too simple"),
    ],
)
@pytest.mark.parametrize("debug", ["false", "true"])
def test_a_missing_placeholder_or_short_secret_key_refuses_to_start(key, problem, debug):
    env = production_env(DJANGO_DEBUG=debug)
    if key is None:
        del env["DJANGO_SECRET_KEY"]
    else:
        env["DJANGO_SECRET_KEY"] = _env_example_key() if key == "placeholder" else key
    done = manage("check", env=env, timeout=120)
    assert done.returncode != 0
    message = done.stderr.strip().splitlines()[-1]
    assert "DJANGO_SECRET_KEY" in message and problem in message, message


def test_a_real_secret_key_starts():
    done = manage("check", env=production_env(), timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
