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
